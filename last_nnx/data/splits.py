"""Which examples form train, val and test, and which label each class gets.

``data.splits`` chooses between two rule sets for the real releases:

* ``'default'``: this package's rules (docs/data.md): Pathfinder/Path-X cut in
  metadata order (the first 80% train, the next 10% val, the last 10% test),
  the CIFAR-10 val chosen by a numpy permutation, Speech Commands words
  numbered alphabetically.
* ``'reference'``: the rules of the paper's code (msgwak/LAST, whose loaders
  are S5's, themselves S4's), so that the test set and the class ids are the
  ones its numbers were measured on:

  - Pathfinder/Path-X: all metadata lines (files in numeric order, lines in
    order, S4's one blacklisted image left out) split by
    ``torch.utils.data.random_split(dataset, [n - 2v, v, v],
    generator=torch.Generator().manual_seed(42))`` with ``v = int(0.1 n)``;
  - CIFAR-10: the 50000 training images (batches 1..5 in order) split by
    ``random_split(train, [int(n * 0.9), n - int(n * 0.9)], generator=...(42))``;
  - Speech Commands: the same list-file membership; class ``k`` is the ``k``-th
    word of the reference's own word list (`REFERENCE_SPEECH_WORDS`).

  ListOps, IMDB (val = test) and AAN have no random choice in either code:
  both read the same files into the same splits.

torch is not needed: `torch_randperm` reproduces ``torch.randperm`` on the CPU
generator (MT19937 from numpy, the same Fisher-Yates pass). Checked against
torch 2.13.0 (tests/test_data_splits.py, when torch is importable).
"""

import ml_collections
import numpy as np

MODES = ("default", "reference")

# The 35 words of Speech Commands v0.02 in the order the reference code numbers them
# (its ``ALL_CLASSES``: the 10-word subset's neighbours first, then the rest).
REFERENCE_SPEECH_WORDS = (
  "bed",
  "cat",
  "down",
  "five",
  "forward",
  "go",
  "house",
  "left",
  "marvin",
  "no",
  "on",
  "right",
  "sheila",
  "tree",
  "up",
  "visual",
  "yes",
  "backward",
  "bird",
  "dog",
  "eight",
  "follow",
  "four",
  "happy",
  "learn",
  "nine",
  "off",
  "one",
  "seven",
  "six",
  "stop",
  "three",
  "two",
  "wow",
  "zero",
)

# Images the reference's Pathfinder reader leaves out before splitting (S4's blacklist: an
# empty file), as ``pathfinder<res>/<variant>/<folder>/<file>``.
REFERENCE_PATHFINDER_SKIPPED = frozenset({"pathfinder32/curv_baseline/imgs/0/sample_172.png"})

# torch.randperm switches to another algorithm from this n on (never reached here).
_RANDPERM_SMALL = (2**32 - 1) // 20


def mode(c: ml_collections.ConfigDict) -> str:
  """``c.splits`` ('default' when absent), checked."""
  value = c.get("splits", "default")
  if value not in MODES:
    raise ValueError(
      f"data.splits={value!r}: use 'default' (this package's splits) or "
      "'reference' (the paper's code: its random splits and class ids)"
    )
  return value


def torch_randperm(n: int, seed: int) -> np.ndarray:
  """``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` without torch.

  The CPU generator is MT19937 seeded like numpy's legacy ``RandomState(seed)``;
  randperm starts from ``0..n-1`` and, for ``i = 0..n-2``, swaps entry ``i`` with
  entry ``i + r_i mod (n - i)``, ``r_i`` the ``i``-th raw 32-bit draw.

  Returns: int64 ``(n,)``.
  """
  if not 0 <= n < _RANDPERM_SMALL:
    raise ValueError(f"n={n}: torch.randperm is reproduced for 0 <= n < {_RANDPERM_SMALL}")
  key = np.random.RandomState(seed).get_state()[1]
  bits = np.random.MT19937()
  bits.state = {"bit_generator": "MT19937", "state": {"key": key, "pos": 624}}
  draws = bits.random_raw(max(n - 1, 0)).tolist()
  perm = list(range(n))
  for i, r in enumerate(draws):
    j = i + r % (n - i)
    perm[i], perm[j] = perm[j], perm[i]
  return np.asarray(perm, np.int64)


def torch_random_split(lengths: tuple[int, ...], seed: int) -> list[np.ndarray]:
  """The indices of each part of ``torch.utils.data.random_split(range(sum(lengths)),
  lengths, generator=torch.Generator().manual_seed(seed))``, in the subsets' order.

  Returns: one int64 ``(lengths[k],)`` array per part.
  """
  perm = torch_randperm(sum(lengths), seed)
  return np.split(perm, np.cumsum(lengths)[:-1])


def pathfinder_sizes(n: int, splits: str) -> tuple[int, int, int]:
  """Train, val and test sizes of ``n`` Pathfinder examples under a rule set."""
  if splits == "reference":
    v = int(0.1 * n)  # the reference's val_split = test_split = 0.1
    return n - 2 * v, v, v
  a, b = int(0.8 * n), int(0.9 * n)
  return a, b - a, n - b


def reference_pathfinder_order(n: int, seed: int) -> np.ndarray:
  """The reference's split of ``n`` examples as one order: train, then val, then test
  (`pathfinder_sizes` cuts it), each in the order the reference's subsets list them.

  Returns: int64 ``(n,)``.
  """
  return np.concatenate(torch_random_split(pathfinder_sizes(n, "reference"), seed))


def reference_pathfinder_skipped(res: int, variant: str, relpath: str) -> bool:
  """Whether the reference leaves the image ``relpath`` (relative to the variant folder)
  out of the dataset before splitting."""
  return f"pathfinder{res}/{variant}/{relpath}" in REFERENCE_PATHFINDER_SKIPPED


def held_out_sizes(n: int, fraction: float, splits: str) -> tuple[int, int]:
  """Train and val sizes when ``fraction`` of ``n`` training examples is held out."""
  if splits == "reference":
    train = int(n * (1.0 - fraction))  # the reference's split_train_val
    return train, n - train
  val = int(round(n * fraction))  # pipeline.hold_out
  return n - val, val


def reference_held_out(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """The reference's train and val indices of ``n`` training examples (CIFAR-10).

  Returns: int64 ``(train,)`` and ``(val,)``, in the order its subsets list them.
  """
  train, val = torch_random_split(held_out_sizes(n, fraction, "reference"), seed)
  return train, val
