"""Datasets: real-format readers and synthetic stand-ins behind one `build_task`.

  task = data.build_task(config.data, batch_size=50, seed=0)
  for inputs, lengths, labels in task.train_batches(epoch=0): ...
  for inputs, lengths, labels in task.eval_batches("val"): ...

``data.dir = None`` (the default) runs the task's synthetic generator and says
so in a WARNING; a folder runs the reader of the original release found under
it (`layout`); ``data.source = "tfds"`` reads the TensorFlow Datasets build
(image, text, speech; `tfds_sources`). All are cached under ``data.cache_dir``.
Two tasks are real data without an LRA release: ``digits`` (embedded in
scikit-learn, `digits`) and ``arrays`` (your ``.npz`` files, or numpy arrays
through `from_arrays`; `arrays`). See docs/data.md.
"""

import inspect
import math
import os

import ml_collections
import numpy as np
from absl import logging

from last_nnx.data import arrays, cache, digits, layout, readers, synthetic, tfds_sources
from last_nnx.data.arrays import ArrayError, from_arrays, save_arrays
from last_nnx.data.config import (ALL_TASKS, BYTE_VOCAB, OWN_TASKS, SPECS, TASKS, TFDS_TASKS,
                                  default_data_config)
from last_nnx.data.layout import DataError
from last_nnx.data.pipeline import (SPLITS, Batch, Continuous, Features, Split, Task, Tokens)

_VERSION = 1  # bump when a generator or reader changes what it produces


def is_synthetic(c: ml_collections.ConfigDict) -> bool:
  """Whether ``c`` runs a synthetic generator (an LRA task without dir or source)."""
  return c.task in TASKS and c.dir is None and c.get("source") is None


def effective_seq_len(c: ml_collections.ConfigDict) -> int:
  """The sequence length L of the task ``c`` describes.

  ``c.seq_len``, which for images must be ``resolution**2``; on synthetic data
  (``c.dir`` None) ``c.synthetic.seq_len`` replaces it when set (a square for
  images), so presets can shorten synthetic runs while real data keeps its L.
  Digits: 64; arrays: the arrays' L (read from them).
  """
  if c.task == "digits":
    return digits.seq_len(c)
  if c.task == "arrays":
    return arrays.seq_len(c)
  synthetic_len = c.synthetic.get("seq_len") if is_synthetic(c) else None
  if synthetic_len is not None:
    if "resolution" in c and math.isqrt(synthetic_len) ** 2 != synthetic_len:
      raise ValueError(f"data.synthetic.seq_len={synthetic_len}: an image is read row by "
                       "row, so it must be a square (e.g. 256 = 16 x 16)")
    length = synthetic_len
  else:
    if "resolution" in c and c.seq_len != c.resolution ** 2:
      raise ValueError(f"data.seq_len={c.seq_len} but data.resolution={c.resolution}: an "
                       f"image is read row by row, so L must be {c.resolution ** 2} (set "
                       "only data.resolution; seq_len follows it)")
    length = c.seq_len
  if length < 1:
    raise ValueError(f"data.seq_len must be positive, got {length}")
  return length


def _synthetic_knobs(c) -> dict:
  """The generator's keyword arguments: ``data.synthetic`` minus sizes and seed.

  ListOps' ``min_length`` is lowered to a quarter of ``max_length`` when a short
  ``seq_len`` leaves no room for it (e.g. the smoke preset's L=256).
  """
  knobs = {k: v for k, v in c.synthetic.items()
           if k not in ("n_train", "n_val", "n_test", "seed", "seq_len")}
  known = [p.name for p in inspect.signature(synthetic.GENERATORS[c.task]).parameters.values()
           if p.kind == p.KEYWORD_ONLY]
  unknown = sorted(set(knobs) - set(known))
  if unknown:
    raise ValueError(f"data.synthetic.{unknown[0]} is not a knob of the synthetic {c.task} "
                     f"generator; it has n_train, n_val, n_test, seed, seq_len, {', '.join(known)}")
  if c.task == "listops":
    top = min(knobs["max_length"], c.seq_len + 1)
    if knobs["min_length"] >= top - 1:
      lowered = top // 4
      logging.info("synthetic ListOps: min_length %d does not fit L=%d; using %d",
                   knobs["min_length"], c.seq_len, lowered)
      knobs["min_length"] = lowered
  return knobs


def _generate(c) -> tuple[dict[str, Split], dict]:
  """All three synthetic splits; each split has its own random stream."""
  generate = synthetic.GENERATORS[c.task]
  knobs = _synthetic_knobs(c)
  splits = {}
  for i, name in enumerate(SPLITS):
    rng = np.random.default_rng([c.synthetic.seed, i, _VERSION])
    splits[name] = generate(c.synthetic[f"n_{name}"], c.seq_len, rng, **knobs)
  n_classes = knobs.get("n_classes", SPECS[c.task].n_classes)
  return _with_stats(c, splits, {"n_classes": int(n_classes)})


def _synthetic(c) -> tuple[dict[str, Split], dict]:
  spec = SPECS[c.task]
  title = spec.title + (f" ({c.resolution} px)" if "resolution" in c else "")
  real = "Speech Commands" if c.task == "speech" else "LRA"
  logging.warning("no data.dir given: using synthetic %s (%d train examples, L=%d) -- numbers "
                  "on it are not %s results; set --config.data.dir to the real data (%s)",
                  title, c.synthetic.n_train, c.seq_len, real, layout.RELEASES[c.task].name)
  knobs = {k: v for k, v in c.synthetic.items() if k != "seq_len"}  # c.seq_len holds it
  key = dict(kind="synthetic", task=c.task, seq_len=c.seq_len, version=_VERSION, **knobs)
  path = cache.entry_path(c.cache_dir, f"synthetic-{c.task}", key)
  return cache.cached(path, lambda: _generate(c))


def _real(c) -> tuple[dict[str, Split], dict]:
  reader = readers.READERS[c.task]
  base = reader.locate(os.path.expanduser(c.dir), c)
  logging.info("%s: reading %s", c.task, base)
  path = None
  if c.cache_real:
    key = dict(kind="real", task=c.task, base=os.path.realpath(base), seq_len=c.seq_len,
               val_fraction=c.val_fraction, split_seed=c.split_seed, version=_VERSION,
               files=layout.fingerprint(base, reader.depth))
    if c.get("splits", "default") != "default":  # default entries keep their old keys
      key["splits"] = c.splits
    path = cache.entry_path(c.cache_dir, f"real-{c.task}", key)

  def build():
    splits, n_classes = reader.read(base, c)
    return _with_stats(c, splits, {"n_classes": n_classes, "source": base})

  return cache.cached(path, build)


def _tfds(c) -> tuple[dict[str, Split], dict]:
  """The TFDS build of the task (`tfds_sources`), cached like a release."""
  path = None
  if c.cache_real:
    key = dict(kind="tfds", version=_VERSION, **tfds_sources.cache_key(c))
    path = cache.entry_path(c.cache_dir, f"tfds-{c.task}", key)
  return cache.cached(path, lambda: _with_stats(c, *tfds_sources.read(c)))


def _audio_stats(train: Split) -> dict:
  """Mean and standard deviation of the train split's samples (chunked: it may be mmapped)."""
  total, total_sq, count = 0.0, 0.0, 0
  for start in range(0, len(train), 1024):
    x = np.asarray(train.inputs[start:start + 1024], np.float64)
    total, total_sq, count = total + x.sum(), total_sq + (x * x).sum(), count + x.size
  mean = total / max(count, 1)
  return {"mean": mean, "std": float(np.sqrt(max(total_sq / max(count, 1) - mean * mean, 0.0)))}


def _with_stats(c, splits: dict[str, Split], meta: dict) -> tuple[dict[str, Split], dict]:
  """Adds the train statistics to ``meta`` for tasks standardized by them (speech)."""
  if SPECS[c.task].encoding is None:
    meta = dict(meta, **_audio_stats(splits["train"]))
  return splits, meta


def _encoding(c, meta: dict) -> Tokens | Continuous:
  """The task's fixed encoding, or audio standardized as S5 does: by the train statistics
  (plus 1e-5 of full scale on the deviation)."""
  fixed = SPECS[c.task].encoding
  if fixed is not None:
    return fixed
  return Continuous(mean=meta["mean"], std=meta["std"] + 1e-5 * 32768)


def _load(c) -> tuple[dict[str, Split], dict, Tokens | Continuous | Features]:
  """``(splits, meta, encoding)`` of the resolved config ``c``; sets ``c.seq_len``."""
  if c.task == "digits":
    c.seq_len = effective_seq_len(c)
    return *digits.read(c), digits.ENCODING
  if c.task == "arrays":
    splits, meta = arrays.read(c)
    c.seq_len = meta["seq_len"]
    return splits, meta, arrays.encoding(meta)
  source = c.get("source")
  if source not in (None, "tfds"):
    raise ValueError(f"data.source={source!r}: leave it unset (data.dir, or synthetic data) "
                     f"or set 'tfds' (tasks {', '.join(TFDS_TASKS)})")
  if source == "tfds" and c.dir is not None:
    raise ValueError(f"data.source=tfds and data.dir={c.dir!r} are both set: keep one (TFDS "
                     "reads from data.tfds_dir)")
  if source == "tfds" and c.get("splits", "default") != "default":
    raise ValueError(f"data.splits={c.splits!r} reproduces the reference code's splits of the "
                     "original releases; TFDS has its own: leave data.splits='default' with "
                     "data.source=tfds, or read the release with data.dir")
  c.seq_len = effective_seq_len(c)
  if "resolution" in c:
    c.resolution = math.isqrt(c.seq_len)
  if source == "tfds":
    splits, meta = _tfds(c)
  elif c.dir is None:
    splits, meta = _synthetic(c)
  else:
    splits, meta = _real(c)
  return splits, meta, _encoding(c, meta)


def build_task(c: ml_collections.ConfigDict, *, batch_size: int,
               eval_batch_size: int | None = None, seed: int = 0, process_index: int = 0,
               process_count: int = 1) -> Task:
  """Loads (or generates) the data of ``c.task`` and wraps it in a batching `Task`.

  Args:
    c: the ``data`` section (`default_data_config`).
    batch_size: training examples per batch on this process.
    eval_batch_size: examples per evaluation batch (default ``batch_size``).
    seed: orders the training epochs (not the synthetic data: that is
      ``c.synthetic.seed``).
    process_index, process_count: this host's shard of every split.
  """
  if c.task not in ALL_TASKS:
    raise ValueError(f"unknown data.task {c.task!r}; expected one of {ALL_TASKS}")
  c = ml_collections.ConfigDict(c.to_dict())  # resolved copy: readers may not mutate it
  synthetic_data = is_synthetic(c)
  splits, meta, encoding = _load(c)
  n_classes = meta["n_classes"]
  task = Task(name=c.task, n_classes=n_classes, vocab_size=encoding.vocab_size,
              in_dim=encoding.in_dim, seq_len=c.seq_len,
              retrieval=c.task in SPECS and SPECS[c.task].retrieval,
              synthetic=synthetic_data, splits=splits, encoding=encoding, batch_size=batch_size,
              eval_batch_size=eval_batch_size or batch_size, seed=seed,
              process_index=process_index, process_count=process_count)
  if task.steps_per_epoch < 1:
    raise ValueError(f"{len(splits['train'])} training examples over {process_count} "
                     f"process(es) cannot fill one batch of {batch_size}: lower "
                     "train.batch_size" + (" or raise data.synthetic.n_train"
                                           if synthetic_data else ""))
  logging.info("data %s: %s examples, L=%d, %d classes, %d steps per epoch", c.task,
               task.num_examples, task.seq_len, n_classes, task.steps_per_epoch)
  return task


__all__ = ["ALL_TASKS", "ArrayError", "BYTE_VOCAB", "Batch", "Continuous", "DataError",
           "Features", "OWN_TASKS", "SPLITS", "Split", "TASKS", "TFDS_TASKS", "Task", "Tokens",
           "build_task", "default_data_config", "effective_seq_len", "from_arrays",
           "is_synthetic", "save_arrays"]
