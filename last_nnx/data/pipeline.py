"""Splits in memory, their encodings, and the tf.data pipeline every task shares.

Examples live in numpy arrays in a compact form (uint8 tokens, bytes and
pixels, int16 audio), possibly memory-mapped from the cache. The pipeline
moves only *indices* through tf.data (order, per-host shard, batching, skip on
resume), gathers and encodes the rows of each batch in a tf.data worker
(``tf.numpy_function``) and prefetches, so the batch is ready while the
training step runs. Batches are numpy tuples ``(inputs, lengths, labels)``:

* token tasks: inputs int32 ``(B, L)``, 0 = padding;
* continuous tasks: inputs float32 ``(B, L, in_dim)`` (one feature, or your
  arrays' ``F``);
* retrieval: inputs int32 ``(B, 2, L)`` and lengths ``(B, 2)``;
* lengths int32 (true unpadded lengths, at least 1), labels int32 ``(B,)``.

An epoch's order is a numpy permutation keyed by ``(seed, epoch)``: it does not
depend on TensorFlow's version or on anybody calling ``tf.random.set_seed``,
so a resumed run sees exactly the batches it would have seen.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import os
from collections.abc import Iterator, Mapping

import numpy as np
from absl import logging

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]
SPLITS = ("train", "val", "test")
_PREFETCH = 2  # batches prepared ahead by the numpy fallback, and by tf.data on small hosts
_SMALL_HOST_CPUS = 4  # up to this many cores, tf.data does not autotune (`autotune_prefetch`)
_TF_THREADS = 2  # tf.data worker threads per iterator


# Quiet TensorFlow's C++ start-up chatter (INFO/WARNING; errors still show). The oneDNN
# notice ignores the log level and only goes away with oneDNN off, which changes nothing
# here: the pipeline does no TensorFlow arithmetic. Set at import, so that it also holds
# when another module imports TensorFlow before the pipeline does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@functools.cache
def have_tensorflow() -> bool:
  """Whether TensorFlow imports here. Without it (an accelerator image that ships
  JAX alone) batches come from a numpy reader with the same order and contents."""
  try:
    tf()
  except ImportError:
    logging.warning(
      "TensorFlow is not installed: batches are read by the numpy "
      "fallback (same order and contents as the tf.data pipeline)"
    )
    return False
  return True


@functools.cache
def tf():
  """TensorFlow, imported on first use: CPU only, quiet, few threads."""
  import tensorflow  # pylint: disable=import-outside-toplevel

  try:  # fails once TF's runtime is initialized elsewhere: then leave it be
    tensorflow.config.set_visible_devices([], "GPU")
    tensorflow.config.threading.set_inter_op_parallelism_threads(_TF_THREADS)
    tensorflow.config.threading.set_intra_op_parallelism_threads(1)
  except RuntimeError:
    pass
  return tensorflow


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: stored rows, true lengths and labels (numpy or memory-mapped).

  inputs: ``(N, L)`` or ``(N, 2, L)`` in the task's stored dtype.
  lengths: ``(N,)`` or ``(N, 2)`` int32.
  labels: ``(N,)`` int32.
  """

  inputs: np.ndarray
  lengths: np.ndarray
  labels: np.ndarray

  def __post_init__(self):
    n = len(self.labels)
    if len(self.inputs) != n or len(self.lengths) != n:
      raise ValueError(
        f"split arrays disagree in size: {len(self.inputs)} inputs, "
        f"{len(self.lengths)} lengths, {n} labels"
      )

  def __len__(self) -> int:
    return len(self.labels)

  def take(self, index: np.ndarray) -> "Split":
    """The rows at ``index`` (a new split, in that order)."""
    return Split(self.inputs[index], self.lengths[index], self.labels[index])


def hold_out(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
  """Deterministically moves ``fraction`` of a split to a second one (e.g. val from train).

  Both parts keep the original order; the choice depends only on ``seed``.
  """
  held = np.zeros(len(split), bool)
  held[np.random.default_rng(seed).permutation(len(split))[: int(round(len(split) * fraction))]] = 1
  return split.take(np.flatnonzero(~held)), split.take(np.flatnonzero(held))


@dataclasses.dataclass(frozen=True)
class Tokens:
  """Stored token rows -> int32 ids ``(..., L)``.

  ``offset`` is added inside the true length (raw bytes 0..255 become 1..256),
  everything after it is 0, the padding id.
  """

  vocab_size: int
  offset: int = 0
  in_dim = 1

  def __call__(self, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    inside = np.arange(rows.shape[-1]) < lengths[..., None]
    return np.where(inside, rows.astype(np.int32) + self.offset, 0).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Continuous:
  """Stored samples ``(..., L)`` -> float32 ``(..., L, 1)`` standardized as ``(x - mean) / std``."""

  mean: float
  std: float
  vocab_size = None
  in_dim = 1

  def __call__(self, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    del lengths
    x = (rows.astype(np.float32) - np.float32(self.mean)) / np.float32(self.std)
    return x[..., None]


@dataclasses.dataclass(frozen=True)
class Features:
  """Stored feature rows ``(..., L, F)`` -> float32 ``(..., L, F)``.

  Each feature is standardized as ``(x - mean[f]) / std[f]`` (``mean`` and
  ``std`` of length ``F``; zeros and ones leave it unchanged), and every step
  after the true length is 0.
  """

  mean: tuple[float, ...]
  std: tuple[float, ...]
  vocab_size = None

  @property
  def in_dim(self) -> int:
    return len(self.mean)

  def __call__(self, rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    x = (rows.astype(np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(
      self.std, np.float32
    )
    inside = np.arange(rows.shape[-2]) < lengths[..., None]
    return np.where(inside[..., None], x, np.float32(0)).astype(np.float32)


Encoding = Tokens | Continuous | Features


@dataclasses.dataclass(frozen=True, eq=False)  # identity semantics: it holds arrays
class Task:
  """A dataset ready for training: what the model needs to know, and batch iterators.

  ``num_examples`` counts each split in full (all processes);
  ``steps_per_epoch`` is the number of training batches every process yields
  per epoch (the same on all of them, remainder dropped).
  """

  name: str
  n_classes: int
  vocab_size: int | None
  in_dim: int
  seq_len: int
  retrieval: bool
  synthetic: bool
  splits: Mapping[str, Split] = dataclasses.field(repr=False)
  encoding: Encoding = dataclasses.field(repr=False)
  batch_size: int = 32
  eval_batch_size: int = 32
  seed: int = 0
  process_index: int = 0
  process_count: int = 1

  def __post_init__(self):
    missing = set(SPLITS) - set(self.splits)
    if missing:
      raise ValueError(f"task {self.name!r} lacks splits {sorted(missing)}")
    if min(self.batch_size, self.eval_batch_size) < 1:
      raise ValueError(
        f"batch sizes must be positive, got {self.batch_size}, {self.eval_batch_size}"
      )
    if not 0 <= self.process_index < self.process_count:
      raise ValueError(f"process_index {self.process_index} outside 0..{self.process_count - 1}")

  @property
  def num_examples(self) -> dict[str, int]:
    return {k: len(self.splits[k]) for k in SPLITS}

  @property
  def steps_per_epoch(self) -> int:
    return len(self.splits["train"]) // self.process_count // self.batch_size

  def epoch_order(self, epoch: int) -> np.ndarray:
    """``(N_train,)`` int64: the training order of ``epoch``, the same on every process."""
    return np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.splits["train"]))

  def train_batches(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
    """The training batches of ``epoch`` on this process, reshuffled every epoch.

    The global order depends only on ``(seed, epoch)``; process ``i`` of ``P``
    takes every ``P``-th example of it, so the union of the processes' ``k``-th
    batches is the ``k``-th global batch of a single-process run with a ``P``
    times larger batch. Yields ``steps_per_epoch - start_step`` batches;
    ``start_step`` skips indices only, nothing is read for skipped batches.
    """
    if not 0 <= start_step <= self.steps_per_epoch:
      raise ValueError(f"start_step {start_step} outside 0..{self.steps_per_epoch}")
    if not have_tensorflow():
      order = self.epoch_order(epoch)[self.process_index :: self.process_count]
      size = self.batch_size
      return _read_numpy(
        (order[k * size : (k + 1) * size] for k in range(start_step, self.steps_per_epoch)),
        self.splits["train"],
        self.encoding,
      )
    ds = tf().data.Dataset.from_tensor_slices(self.epoch_order(epoch))
    ds = ds.shard(self.process_count, self.process_index)
    ds = ds.batch(self.batch_size, drop_remainder=True).take(self.steps_per_epoch)
    return self._read(ds.skip(start_step), self.splits["train"])

  def eval_batches(self, split: str) -> Iterator[Batch]:
    """Batches of ``'val'`` or ``'test'`` in file order; the last one may be smaller.

    Process ``i`` of ``P`` reads examples ``i, i + P, ...``.
    """
    if split not in ("val", "test"):
      raise ValueError(f"eval_batches takes 'val' or 'test', got {split!r}")
    data = self.splits[split]
    if not have_tensorflow():
      order = np.arange(len(data))[self.process_index :: self.process_count]
      size = self.eval_batch_size
      return _read_numpy(
        (order[k : k + size] for k in range(0, len(order), size)), data, self.encoding
      )
    ds = tf().data.Dataset.range(len(data)).shard(self.process_count, self.process_index)
    return self._read(ds.batch(self.eval_batch_size), data)

  def _read(self, indices, data: Split) -> Iterator[Batch]:
    """Index batches -> numpy batches, gathered and encoded in a tf.data worker."""
    t = tf()
    encoding = self.encoding
    gather = functools.partial(gather_rows, data=data, encoding=encoding)

    row_shape = data.inputs.shape[1:]
    in_dtype = t.int32 if isinstance(encoding, Tokens) else t.float32
    # Continuous adds the feature axis; token ids and Features rows already have their shape.
    feature = (encoding.in_dim,) if isinstance(encoding, Continuous) else ()

    def fetch(idx):
      x, lengths, labels = t.numpy_function(
        gather, [idx], [in_dtype, t.int32, t.int32], stateful=False
      )
      x.set_shape((None, *row_shape, *feature))
      lengths.set_shape((None, *data.lengths.shape[1:]))
      labels.set_shape((None,))
      return x, lengths, labels

    options = t.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = _TF_THREADS
    options.threading.max_intra_op_parallelism = 1
    autotune = autotune_prefetch()
    options.autotune.enabled = autotune
    ds = indices.map(fetch).prefetch(t.data.AUTOTUNE if autotune else _PREFETCH)
    return ds.with_options(options).as_numpy_iterator()


def autotune_prefetch(cpu_count: int | None = None) -> bool:
  """Whether tf.data autotunes its prefetch buffer: on hosts with more than
  `_SMALL_HOST_CPUS` cores. The autotuner's background thread competes with
  XLA for a small host's cores, and a batch here is an index gather that a
  fixed buffer of `_PREFETCH` keeps ahead of the step (2 cores, `make bench`
  section loop: the loop ran at 62-92% of the bare step's speed with the
  autotuner, 92-96% without)."""
  return (os.cpu_count() if cpu_count is None else cpu_count) > _SMALL_HOST_CPUS


def gather_rows(idx: np.ndarray, data: Split, encoding) -> Batch:
  """The encoded batch ``(inputs, lengths, labels)`` of rows ``idx`` (``(B,)`` int) of ``data``."""
  lengths = np.asarray(data.lengths[idx], np.int32)
  return (
    encoding(np.asarray(data.inputs[idx]), lengths),
    lengths,
    np.asarray(data.labels[idx], np.int32),
  )


def _read_numpy(index_batches, data: Split, encoding) -> Iterator[Batch]:
  """`Task._read` without TensorFlow: one worker thread, `_PREFETCH` batches ahead."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    pending = collections.deque()
    for idx in index_batches:
      pending.append(pool.submit(gather_rows, idx, data, encoding))
      if len(pending) > _PREFETCH:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def pad_rows(sequences: list, seq_len: int, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads (and truncates) sequences of ints or bytes.

  Returns rows ``(N, seq_len)`` of ``dtype`` and lengths ``(N,)`` int32, each
  the truncated length but at least 1 (an empty document is one padding token,
  so length-masked pooling stays defined).
  """
  rows = np.zeros((len(sequences), seq_len), dtype)
  lengths = np.ones(len(sequences), np.int32)
  for i, seq in enumerate(sequences):
    values = np.frombuffer(seq[:seq_len], np.uint8) if isinstance(seq, bytes) else seq[:seq_len]
    rows[i, : len(values)] = values
    lengths[i] = max(1, len(values))
  return rows, lengths
