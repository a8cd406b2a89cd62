"""Your own sequences: the ``arrays`` task, from ``.npz`` files or from numpy arrays.

Each split is ``inputs``, ``labels`` and optionally ``lengths``:

* inputs: tokens ``(N, L)`` of integers (ids ``0..V-1``; 0 is also what the
  model sees after a sequence's length) or features ``(N, L, F)`` of floats
  (``(N, L)`` floats are one feature);
* labels: ``(N,)`` integers ``0..C-1``;
* lengths: ``(N,)`` integers ``1..L`` (default ``L``: no padding).

Files (``data.path``): a folder with ``train.npz``, ``test.npz`` and optionally
``val.npz``, each holding the arrays ``inputs``, ``labels`` (and ``lengths``);
or one ``.npz`` with named splits: ``train_inputs``, ``train_labels``,
``train_lengths``, ``val_...``, ``test_...``. Without a val split,
``data.val_fraction`` of train is held out (chosen by ``data.split_seed``).

From Python, no file: ``data.from_arrays(train=(x, y), test=(x, y))`` checks the
arrays, keeps them in this process and returns the ``data`` section that
`last_nnx.data.build_task` and ``train_and_evaluate`` read (the section holds a
digest of the arrays, so a resumed run checks it gets the same data).

L, the vocabulary V (tokens), the features F and the classes C are inferred
and checked across splits; ``data.vocab_size`` / ``data.n_classes`` fix V / C
(e.g. when a class is absent from train). Features are standardized per
feature by the train split's mean and deviation (``data.standardize``). Every
problem is a one-line `ArrayError` saying what to change.
"""

import hashlib
import os
import zipfile

import ml_collections
import numpy as np

from last_nnx.data.array_checks import ArrayError, check
from last_nnx.data.cache import default_cache_dir
from last_nnx.data.pipeline import SPLITS, Features, Split, Tokens, hold_out
from last_nnx.data.source import Resolved, Source

FIELDS = ("inputs", "labels", "lengths")
_MEMORY: dict[str, dict[str, dict[str, np.ndarray]]] = {}  # digest -> split -> arrays


def default_config() -> ml_collections.ConfigDict:
  """The ``data`` section of the arrays task (set ``path``, or use `from_arrays`)."""
  c = ml_collections.ConfigDict()
  c.task = "arrays"
  c.path = ml_collections.config_dict.placeholder(str)
  c.memory = ml_collections.config_dict.placeholder(str)  # set by from_arrays
  c.seq_len = ml_collections.config_dict.placeholder(int)  # None: inferred
  c.n_classes = ml_collections.config_dict.placeholder(int)  # None: inferred from train
  c.vocab_size = ml_collections.config_dict.placeholder(int)  # tokens; None: inferred
  c.standardize = True  # features: (x - train mean) / train std, per feature
  c.val_fraction = 0.1  # held out of train when no val split is given
  c.split_seed = 42
  c.cache_dir = default_cache_dir()  # unused (nothing is cached); kept for uniformity
  return c


# ----------------------------------------------------------------------------
# Reading


def _load_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  except FileNotFoundError as e:
    raise ArrayError(
      f"{path}: no such file (data.path takes a .npz with named splits or a "
      "folder holding train.npz, val.npz, test.npz)"
    ) from e
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ArrayError(
      f"{path}: not a readable .npz archive ({e}); write it with "
      "numpy.savez or last_nnx.data.save_arrays"
    ) from e


def _split_fields(
  found: dict[str, np.ndarray], split: str, where: str, prefix: str = ""
) -> dict[str, np.ndarray]:
  """``inputs``, ``labels`` (and ``lengths``) of one split out of an archive's arrays."""
  missing = [f"{prefix}{k}" for k in FIELDS[:2] if f"{prefix}{k}" not in found]
  if missing:
    raise ArrayError(
      f"{where}: the {split} split needs arrays {', '.join(missing)}; the file "
      f"holds {', '.join(sorted(found)) or 'nothing'}"
    )
  return {k: found[f"{prefix}{k}"] for k in FIELDS if f"{prefix}{k}" in found}


def read_files(path: str) -> dict[str, dict[str, np.ndarray]]:
  """``{split: {"inputs", "labels"[, "lengths"]}}`` from ``data.path`` (val may be absent)."""
  path = os.path.expanduser(path)
  if os.path.isdir(path):
    splits = {}
    for split in SPLITS:
      file = os.path.join(path, f"{split}.npz")
      if os.path.isfile(file):
        splits[split] = _split_fields(_load_npz(file), split, file)
      elif split != "val":
        raise ArrayError(
          f"{path}: no {split}.npz (the folder needs train.npz and test.npz, "
          "val.npz optional, each with 'inputs' and 'labels')"
        )
    return splits
  found = _load_npz(path)
  splits = {
    s: _split_fields(found, s, path, f"{s}_")
    for s in SPLITS
    if s != "val" or any(k.startswith("val_") for k in found)
  }
  return splits


def save_arrays(path: str, **splits) -> None:
  """Writes ``train=(inputs, labels[, lengths]), test=..., [val=...]`` to one ``.npz``
  with named splits, the file ``data.path`` reads."""
  flat = {}
  for split, arrays in _as_fields(splits).items():
    flat.update({f"{split}_{k}": v for k, v in arrays.items()})
  np.savez(path, **flat)


def _as_fields(splits: dict) -> dict[str, dict[str, np.ndarray]]:
  """``{split: (inputs, labels[, lengths]) or dict}`` -> ``{split: {field: array}}``."""
  unknown = sorted(set(splits) - set(SPLITS))
  if unknown:
    raise ArrayError(f"unknown split(s) {unknown}: give train, test and optionally val")
  out = {}
  for split, value in splits.items():
    if value is None:
      continue
    if isinstance(value, dict):
      fields = dict(value)
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
      fields = dict(zip(FIELDS, value))
    else:
      raise ArrayError(
        f"{split}: give (inputs, labels) or (inputs, labels, lengths), or a dict with those keys"
      )
    out[split] = {k: np.asarray(v) for k, v in fields.items() if v is not None}
  return out


# ----------------------------------------------------------------------------
# Splits, encoding, and arrays given from Python


def _stored(f: dict[str, np.ndarray], info: dict) -> Split:
  x = f["inputs"]
  if info["kind"] == "tokens":
    dtype = (
      np.uint8
      if info["vocab_size"] <= 256
      else (np.uint16 if info["vocab_size"] <= 65536 else np.int32)
    )
    x = x.astype(dtype, copy=False)
  else:
    x = x.astype(np.float32, copy=False).reshape(len(x), info["seq_len"], info["in_dim"])
  n = f.get("lengths")
  n = np.full(len(x), info["seq_len"], np.int32) if n is None else n.astype(np.int32)
  return Split(x, n, f["labels"].astype(np.int32))


def _feature_stats(train: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-feature mean and deviation over the true steps of the train split."""
  inside = np.arange(train.inputs.shape[1]) < train.lengths[:, None]
  steps = np.asarray(train.inputs, np.float64)[inside]  # (steps, F)
  std = steps.std(0)
  return tuple(steps.mean(0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist())


def arrays_of(c: ml_collections.ConfigDict) -> dict[str, dict[str, np.ndarray]]:
  """The raw splits ``c`` names: from ``data.path`` or from `from_arrays`."""
  if (c.path is None) == (c.memory is None):
    raise ArrayError(
      "the arrays task needs exactly one of data.path (a .npz or a folder of "
      "them) and data.memory (set by last_nnx.data.from_arrays)"
    )
  if c.path is not None:
    return read_files(c.path)
  if c.memory not in _MEMORY:
    raise ArrayError(
      f"data.memory={c.memory}: no such arrays in this process (from_arrays "
      "keeps them in memory only); save them with data.save_arrays and set "
      "data.path instead"
    )
  return _MEMORY[c.memory]


def read(c: ml_collections.ConfigDict) -> tuple[dict[str, Split], dict]:
  """Checked train/val/test `Split`\\ s and their meta (classes, L, vocab or features)."""
  raw = arrays_of(c)
  info = check(raw, n_classes=c.n_classes, vocab_size=c.vocab_size, seq_len=c.seq_len)
  splits = {s: _stored(f, info) for s, f in raw.items()}
  if "val" not in splits:
    if not 0 < c.val_fraction < 1:
      raise ArrayError(
        f"no val split and data.val_fraction={c.val_fraction}: give val "
        "arrays or a fraction in (0, 1) of train to hold out"
      )
    splits["train"], splits["val"] = hold_out(splits["train"], c.val_fraction, c.split_seed)
    if not len(splits["val"]) or not len(splits["train"]):
      raise ArrayError(
        f"data.val_fraction={c.val_fraction} of {len(raw['train']['labels'])} "
        "training examples leaves an empty split: give val arrays"
      )
  meta = dict(info, source=c.path or "memory")
  if info["kind"] == "features":
    stats = (
      _feature_stats(splits["train"])
      if c.standardize
      else ((0.0,) * info["in_dim"], (1.0,) * info["in_dim"])
    )
    meta["mean"], meta["std"] = stats
  return splits, meta


def encoding(meta: dict) -> Tokens | Features:
  """How stored rows become model inputs: token ids, or standardized features."""
  if meta["kind"] == "tokens":
    return Tokens(meta["vocab_size"])
  return Features(tuple(meta["mean"]), tuple(meta["std"]))


class Arrays(Source):
  """The source of the arrays task: ``data.path`` files or `from_arrays` memory (not cached)."""

  name = "arrays"
  synthetic = False

  def default_config(self, task: str) -> ml_collections.ConfigDict:
    del task
    return default_config()

  def resolve(self, c: ml_collections.ConfigDict) -> Resolved:
    """L of the arrays ``c`` names (reads and checks them)."""
    raw = arrays_of(c)
    return Resolved(
      check(raw, n_classes=c.n_classes, vocab_size=c.vocab_size, seq_len=c.seq_len)["seq_len"]
    )

  def load(self, c: ml_collections.ConfigDict) -> tuple[dict[str, Split], dict]:
    return read(c)

  def encoding(self, c: ml_collections.ConfigDict, meta: dict) -> Tokens | Features:
    del c
    return encoding(meta)


def _digest(splits: dict[str, dict[str, np.ndarray]]) -> str:
  h = hashlib.sha1()
  for split in sorted(splits):
    for k in sorted(splits[split]):
      a = np.ascontiguousarray(splits[split][k])
      h.update(f"{split}.{k}.{a.dtype.str}.{a.shape}".encode())
      h.update(a.tobytes())
  return h.hexdigest()[:20]


def from_arrays(
  train, test, val=None, *, n_classes: int | None = None, vocab_size: int | None = None, **overrides
) -> ml_collections.ConfigDict:
  """The ``data`` section of a task made of numpy arrays, checked now, kept in memory.

  Args:
    train, test, val: ``(inputs, labels)`` or ``(inputs, labels, lengths)`` (or
      dicts with those keys); val None holds out ``val_fraction`` of train.
    n_classes, vocab_size: fix C and V instead of inferring them.
    **overrides: other fields of `default_config` (``standardize``,
      ``val_fraction``, ``split_seed``).

  Returns a ConfigDict for ``config.data`` (or `last_nnx.data.build_task`).
  """
  c = default_config()
  for k, v in overrides.items():
    if k not in ("standardize", "val_fraction", "split_seed"):
      raise ArrayError(
        f"from_arrays: unknown option {k!r}; it takes train, val, test, "
        "n_classes, vocab_size, standardize, val_fraction, split_seed"
      )
    c[k] = v
  splits = _as_fields(dict(train=train, val=val, test=test))
  check(splits, n_classes=n_classes, vocab_size=vocab_size)
  key = _digest(splits)
  _MEMORY[key] = splits
  c.memory, c.n_classes, c.vocab_size = key, n_classes, vocab_size
  return c
