"""Task description and the tf.data pipeline shared by every task.

Examples live in numpy arrays (compact dtypes: uint8 pixels, int16 audio); the
pipeline shuffles, shards and batches *indices* with tf.data and gathers the
rows in numpy, so large sets are never copied into a TF graph. Batches are
numpy tuples ``(inputs, lengths, labels)``:

* token tasks: inputs int32 ``(B, L)`` (0 = padding), lengths int32 ``(B,)``;
* continuous tasks: inputs float32 ``(B, L, in_dim)``;
* retrieval: inputs int32 ``(B, 2, L)``, lengths int32 ``(B, 2)``;
* labels int32 ``(B,)``.
"""

import dataclasses
import os
from typing import Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.set_visible_devices([], "GPU")

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Split:
  """One split held in memory. ``decode`` maps stored rows to model inputs."""

  inputs: np.ndarray  # (N, L), (N, 2, L) or (N, L, F); compact dtype
  lengths: np.ndarray  # (N,) or (N, 2) int32
  labels: np.ndarray  # (N,) int32

  def __post_init__(self):
    n = len(self.labels)
    if len(self.inputs) != n or len(self.lengths) != n:
      raise ValueError(f"split arrays disagree in size: {len(self.inputs)} inputs, "
                       f"{len(self.lengths)} lengths, {n} labels")

  def __len__(self) -> int:
    return len(self.labels)


def _decode_identity(x: np.ndarray) -> np.ndarray:
  return x.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Task:
  """A dataset ready for training: splits, shapes and batch iterators."""

  name: str
  n_classes: int
  vocab_size: int | None
  in_dim: int
  seq_len: int
  retrieval: bool
  synthetic: bool
  splits: dict[str, Split]
  batch_size: int
  eval_batch_size: int
  seed: int = 0
  process_index: int = 0
  process_count: int = 1
  decode: Callable[[np.ndarray], np.ndarray] = _decode_identity

  @property
  def num_examples(self) -> dict[str, int]:
    return {k: len(v) for k, v in self.splits.items()}

  @property
  def steps_per_epoch(self) -> int:
    return len(self.splits["train"]) // self.process_count // self.batch_size

  def _batches(self, split: Split, indices: tf.data.Dataset, batch_size: int,
               drop_remainder: bool) -> Iterator[Batch]:
    ds = indices.batch(batch_size, drop_remainder=drop_remainder).prefetch(2)
    for idx in ds.as_numpy_iterator():
      yield (self.decode(split.inputs[idx]), split.lengths[idx].astype(np.int32),
             split.labels[idx].astype(np.int32))

  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """One epoch of shuffled training batches (drop remainder).

    The order depends only on ``(seed, epoch)``; ``start_step`` skips that many
    batches without reading them, so a resumed run continues at the exact
    data position.
    """
    split = self.splits["train"]
    ds = tf.data.Dataset.range(len(split)).shard(self.process_count, self.process_index)
    ds = ds.shuffle(len(split), seed=self.seed * 100003 + epoch, reshuffle_each_iteration=False)
    ds = ds.batch(self.batch_size, drop_remainder=True).skip(start_step).unbatch()
    return self._batches(split, ds, self.batch_size, True)

  def eval_batches(self, split_name: str) -> Iterator[Batch]:
    """Batches of ``'val'`` or ``'test'`` in order; the last one may be smaller."""
    if split_name not in self.splits:
      raise ValueError(f"no split {split_name!r}; have {sorted(self.splits)}")
    split = self.splits[split_name]
    ds = tf.data.Dataset.range(len(split)).shard(self.process_count, self.process_index)
    return self._batches(split, ds, self.eval_batch_size, False)


def pad_tokens(sequences: list[list[int]], seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads (and truncates) token lists: ``(N, seq_len)`` int32 and lengths ``(N,)``."""
  out = np.zeros((len(sequences), seq_len), np.int32)
  lengths = np.zeros(len(sequences), np.int32)
  for i, seq in enumerate(sequences):
    seq = seq[:seq_len]
    out[i, :len(seq)] = seq
    lengths[i] = max(1, len(seq))
  return out, lengths


def split_off(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
  """Deterministically holds out ``fraction`` of a split (e.g. val from train)."""
  order = np.random.default_rng(seed).permutation(len(split))
  n_out = int(round(len(split) * fraction))
  take = lambda idx: Split(split.inputs[idx], split.lengths[idx], split.labels[idx])
  return take(np.sort(order[n_out:])), take(np.sort(order[:n_out]))
