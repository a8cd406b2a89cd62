"""The checks of the ``arrays`` task's arrays, alone and across splits (see `arrays`).

Every problem is a one-line `ArrayError` that names the split, where the first bad value
sits (example, step, feature) and what to change.
"""

import numpy as np


class ArrayError(ValueError):
  """Arrays that cannot form a task (the one-line message says what to change)."""


def _first(mask: np.ndarray) -> str:
  """Where the first True of ``mask`` is, e.g. ``example 3, step 5``."""
  index = np.unravel_index(int(np.argmax(mask)), mask.shape)
  names = ("example", "step", "feature")
  return ", ".join(f"{n} {i}" for n, i in zip(names, index))


def _check_split(split: str, f: dict[str, np.ndarray]) -> None:
  """Shapes, dtypes and values that do not depend on the other splits."""
  if "inputs" not in f or "labels" not in f:
    raise ArrayError(f"{split}: needs 'inputs' and 'labels'")
  x, y = f["inputs"], f["labels"]
  if x.ndim == 0 or len(x) == 0:
    raise ArrayError(
      f"the {split} split is empty: give it examples"
      + (", or leave val out to hold out data.val_fraction of train" if split == "val" else "")
    )
  kind = x.dtype.kind
  if kind in "iub" and x.ndim != 2:
    raise ArrayError(
      f"{split} inputs: integers of shape {x.shape}; tokens must be (N, L), "
      "features (N, L, F) floats (cast them with .astype(np.float32))"
    )
  if kind == "f" and x.ndim not in (2, 3):
    raise ArrayError(f"{split} inputs: shape {x.shape}; features must be (N, L, F) or (N, L)")
  if kind not in "iubf":
    raise ArrayError(
      f"{split} inputs: dtype {x.dtype}; give integer tokens (N, L) or float features (N, L, F)"
    )
  if kind == "f" and not np.isfinite(x).all():
    bad = ~np.isfinite(x)
    raise ArrayError(
      f"{split} inputs hold {int(bad.sum())} NaN or infinite values (first at "
      f"{_first(bad)}): clean or impute them first"
    )
  if kind in "iu" and x.min() < 0:
    raise ArrayError(
      f"{split} inputs: token id {int(x.min())} at {_first(x < 0)}; ids must be 0..V-1"
    )
  sizes = {k: len(v) if v.ndim else 0 for k, v in f.items()}
  if len(set(sizes.values())) > 1:
    raise ArrayError(
      f"{split}: "
      + ", ".join(f"{n} {k}" for k, n in sizes.items())
      + "; every array of a split needs one row per example"
    )
  if y.ndim != 1 or y.dtype.kind not in "iu":
    raise ArrayError(
      f"{split} labels: shape {y.shape}, dtype {y.dtype}; expected (N,) "
      "integers 0..C-1 (e.g. y.astype(np.int32), class ids not one-hot)"
    )
  if y.min() < 0:
    raise ArrayError(f"{split} labels: {int(y.min())} at {_first(y < 0)}; labels must be 0..C-1")
  if "lengths" in f:
    n, L = f["lengths"], x.shape[1]
    if n.ndim != 1 or n.dtype.kind not in "iu":
      raise ArrayError(f"{split} lengths: shape {n.shape}, dtype {n.dtype}; expected (N,) integers")
    if n.min() < 1 or n.max() > L:
      bad = (n < 1) | (n > L)
      raise ArrayError(
        f"{split} lengths: {int(n[bad][0])} at {_first(bad)}; each length "
        f"must be in 1..{L} (L, the inputs' second axis)"
      )


def _shape(f: dict[str, np.ndarray]) -> tuple[str, int, int]:
  """``(kind, L, F)``: kind ``tokens`` (F = 1) or ``features``."""
  x = f["inputs"]
  if x.dtype.kind in "iub":
    return "tokens", x.shape[1], 1
  return "features", x.shape[1], x.shape[2] if x.ndim == 3 else 1


def check(
  splits: dict[str, dict[str, np.ndarray]],
  *,
  n_classes: int | None = None,
  vocab_size: int | None = None,
  seq_len: int | None = None,
) -> dict:
  """Checks every split and the splits against each other; returns what they imply.

  Returns ``{"kind", "seq_len", "in_dim", "n_classes", "vocab_size"}`` (vocab
  None for features). Raises `ArrayError` (one line) on the first problem.
  """
  for split in ("train", "test"):
    if split not in splits:
      raise ArrayError(f"no {split} split: give train and test (val is optional)")
  for split, f in splits.items():
    _check_split(split, f)
  kind, L, F = _shape(splits["train"])
  for split, f in splits.items():
    k, l, d = _shape(f)
    if k != kind:
      raise ArrayError(
        f"{split} inputs are {k} ({f['inputs'].dtype}) but train inputs are "
        f"{kind} ({splits['train']['inputs'].dtype}): use one kind in all splits"
      )
    if l != L or d != F:
      raise ArrayError(
        f"{split} inputs have L={l}"
        + (f", F={d}" if kind == "features" else "")
        + f" but train has L={L}"
        + (f", F={F}" if kind == "features" else "")
        + ": pad or cut every split to one length (lengths mark the padding)"
      )
  if seq_len is not None and seq_len != L:
    raise ArrayError(
      f"data.seq_len={seq_len} but the arrays have L={L}: leave data.seq_len "
      "unset (it is inferred) or pad the arrays"
    )
  if n_classes is None:
    classes = int(splits["train"]["labels"].max()) + 1
    source = f"0..{classes - 1} inferred from train"
  else:
    classes, source = n_classes, f"data.n_classes={n_classes}"
  if classes < 2:
    raise ArrayError(f"{source}: a classifier needs at least 2 classes")
  for split, f in splits.items():
    y = f["labels"]
    if y.max() >= classes:
      raise ArrayError(
        f"{split} labels: {int(y.max())} at {_first(y == y.max())} is outside "
        f"the classes {source}: set data.n_classes or fix the labels"
      )
  vocab = None
  if kind == "tokens":
    top = max(int(f["inputs"].max()) for f in splits.values()) + 1
    vocab = max(top, 2) if vocab_size is None else vocab_size
    if top > vocab:
      split = next(s for s, f in splits.items() if f["inputs"].max() >= vocab)
      raise ArrayError(
        f"{split} inputs: token id {top - 1} is outside data.vocab_size="
        f"{vocab_size} (ids must be 0..{vocab - 1})"
      )
  return dict(kind=kind, seq_len=L, in_dim=F, n_classes=classes, vocab_size=vocab)
