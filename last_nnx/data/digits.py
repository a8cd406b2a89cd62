"""Sequential digits: scikit-learn's 8x8 handwritten digits read pixel by pixel.

Real data that needs no download: the 1797 images of the UCI optical digits
test set ship inside the scikit-learn wheel (``sklearn.datasets.load_digits``).
Each image is read row by row as a sequence of L = 64 intensities (0..16), one
feature per step, 10 classes. A bag of those pixels (mean pooling, no
recurrence) is far from enough (docs/results.md): a model must carry the
digit's shape through its states.

Split: a permutation of the 1797 images keyed by ``data.split_seed`` (42);
the last ``n_test`` (300) are test, the ``n_val`` (297) before them val, the
first 1200 train. The same on every machine and scikit-learn version that
ships the same images.
"""

import ml_collections
import numpy as np

from last_nnx.data.cache import default_cache_dir
from last_nnx.data.pipeline import Continuous, Split
from last_nnx.data.source import Resolved, Source

SEQ_LEN = 64  # 8 x 8 pixels, row by row
N_CLASSES = 10
# Mean and deviation of every pixel of the 1797 images (values 0..16).
ENCODING = Continuous(mean=4.884, std=6.017)
TITLE = "scikit-learn digits (8x8, pixel by pixel)"


def default_config() -> ml_collections.ConfigDict:
  """The ``data`` section of the digits task."""
  c = ml_collections.ConfigDict()
  c.task = "digits"
  c.seq_len = SEQ_LEN
  c.cache_dir = default_cache_dir()  # unused (the data is in memory); kept for uniformity
  c.n_val = 297
  c.n_test = 300
  c.split_seed = 42
  return c


def load_images() -> tuple[np.ndarray, np.ndarray]:
  """All 1797 images as uint8 rows ``(N, 64)`` (0..16) and int32 labels ``(N,)``."""
  try:
    from sklearn import datasets  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
      "the digits task reads scikit-learn's embedded digits: "
      "pip install 'scikit-learn>=1.5' (or `pip install -e .`)"
    ) from e
  bunch = datasets.load_digits()
  return bunch.data.astype(np.uint8), bunch.target.astype(np.int32)


def seq_len(c: ml_collections.ConfigDict) -> int:
  """64; any other ``data.seq_len`` is an error."""
  if c.seq_len != SEQ_LEN:
    raise ValueError(
      f"data.seq_len={c.seq_len}: the digits are 8x8 images read pixel by pixel, L is {SEQ_LEN}"
    )
  return SEQ_LEN


def read(c: ml_collections.ConfigDict) -> tuple[dict[str, Split], dict]:
  """The train/val/test `Split`\\ s of ``c`` and ``{"n_classes": 10}``."""
  seq_len(c)
  x, y = load_images()
  n_eval = c.n_val + c.n_test
  if min(c.n_val, c.n_test) < 1 or n_eval >= len(y):
    raise ValueError(
      f"data.n_val={c.n_val}, data.n_test={c.n_test}: each must be at least 1 "
      f"and together fewer than the {len(y)} images"
    )
  order = np.random.default_rng(c.split_seed).permutation(len(y))
  n_train = len(y) - n_eval
  parts = {
    "train": order[:n_train],
    "val": order[n_train : n_train + c.n_val],
    "test": order[n_train + c.n_val :],
  }
  splits = {
    name: Split(x[i], np.full(len(i), SEQ_LEN, np.int32), y[i]) for name, i in parts.items()
  }
  return splits, {"n_classes": N_CLASSES}


class Digits(Source):
  """The source of the digits task: the images embedded in scikit-learn (never cached)."""

  name = "digits"
  synthetic = False

  def default_config(self, task: str) -> ml_collections.ConfigDict:
    del task
    return default_config()

  def resolve(self, c: ml_collections.ConfigDict) -> Resolved:
    return Resolved(seq_len(c))

  def load(self, c: ml_collections.ConfigDict) -> tuple[dict[str, Split], dict]:
    return read(c)

  def encoding(self, c: ml_collections.ConfigDict, meta: dict) -> Continuous:
    del c, meta
    return ENCODING
