"""Datasets: real-format readers and synthetic stand-ins behind one `build_task`.

  task = data.build_task(config.data, batch_size=50, seed=0)
  for inputs, lengths, labels in task.train_batches(epoch=0): ...

``data.dir = None`` (the default) runs the task's synthetic generator and says
so loudly; a directory runs the real reader for the original release layout.
"""

import hashlib
import json
import os

import ml_collections
import numpy as np
from absl import logging

from last_nnx.data import listops as listops_lib
from last_nnx.data import readers, synthetic
from last_nnx.data.pipeline import Batch, Split, Task
from last_nnx.data.readers import LAYOUTS, DataError

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx", "speech")
BYTE_VOCAB = 257  # bytes shifted by one; 0 is padding

# Per task: sequence length, classes, and defaults of the synthetic stand-in.
_DEFAULTS = {
    "listops": dict(seq_len=2048, synthetic=dict(n_train=10000, n_val=1000, n_test=1000,
                                                 max_depth=4, max_args=4, min_length=16,
                                                 max_length=2000)),
    "text": dict(seq_len=4096, synthetic=dict(n_train=5000, n_val=500, n_test=500)),
    "retrieval": dict(seq_len=4000, synthetic=dict(n_train=5000, n_val=500, n_test=500)),
    "image": dict(seq_len=1024, synthetic=dict(n_train=5000, n_val=500, n_test=500, n_classes=10)),
    "pathfinder": dict(seq_len=1024, resolution=32, synthetic=dict(
        n_train=5000, n_val=500, n_test=500, distractors=2)),
    "pathx": dict(seq_len=16384, resolution=128, synthetic=dict(
        n_train=2000, n_val=200, n_test=200, distractors=2)),
    "speech": dict(seq_len=16000, synthetic=dict(n_train=3000, n_val=300, n_test=300,
                                                 n_classes=10)),
}

# CIFAR grayscale statistics (pixels / 255), used for every image-like task.
_PIXEL_MEAN, _PIXEL_STD = 0.48, 0.24


def default_data_config(task: str) -> ml_collections.ConfigDict:
  """The ``data`` section of a config for ``task``."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  d = _DEFAULTS[task]
  c = ml_collections.ConfigDict()
  c.task = task
  c.dir = ml_collections.config_dict.placeholder(str)  # None: synthetic
  c.seq_len = d["seq_len"]
  c.resolution = d.get("resolution", 0)
  c.variant = "curv_contour_length_14"
  c.val_fraction = 0.1  # held out of train where the release has no val split
  c.cache_dir = os.environ.get("LAST_NNX_CACHE", os.path.expanduser("~/.cache/last_nnx"))
  c.synthetic = ml_collections.ConfigDict(d["synthetic"])
  return c


def _pixels(x: np.ndarray) -> np.ndarray:
  return ((x.astype(np.float32) / 255.0 - _PIXEL_MEAN) / _PIXEL_STD)[..., None]


def _audio(x: np.ndarray) -> np.ndarray:
  return (x.astype(np.float32) / 32768.0)[..., None]


def _tokens(x: np.ndarray) -> np.ndarray:
  return x.astype(np.int32)


def _synthetic_splits(c, seed: int) -> dict[str, Split]:
  """Generates (or loads from the cache) the synthetic splits of ``c.task``."""
  knobs = dict(task=c.task, seq_len=c.seq_len, resolution=c.resolution, seed=seed,
               **c.synthetic.to_dict(), version=1)
  digest = hashlib.sha1(json.dumps(knobs, sort_keys=True).encode()).hexdigest()[:16]
  path = os.path.join(c.cache_dir, f"synthetic-{c.task}-{digest}.npz")
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        return {s: Split(f[f"{s}_inputs"], f[f"{s}_lengths"], f[f"{s}_labels"])
                for s in ("train", "val", "test")}
    except Exception as e:  # a torn cache file is regenerated
      logging.warning("ignoring unreadable cache %s (%s)", path, e)
  s = c.synthetic
  splits = {}
  for i, (name, n) in enumerate((("train", s.n_train), ("val", s.n_val), ("test", s.n_test))):
    rng = np.random.default_rng([seed, i, 7])
    if c.task == "listops":
      splits[name] = synthetic.listops(n, c.seq_len, rng, max_depth=s.max_depth,
                                       max_args=s.max_args, min_length=s.min_length,
                                       max_length=s.max_length)
    elif c.task in ("pathfinder", "pathx"):
      splits[name] = synthetic.pathfinder(n, c.resolution, rng, distractors=s.distractors)
    elif c.task == "text":
      splits[name] = synthetic.text(n, c.seq_len, rng)
    elif c.task == "retrieval":
      splits[name] = synthetic.retrieval(n, c.seq_len, rng)
    elif c.task == "image":
      splits[name] = synthetic.image(n, rng, n_classes=s.n_classes)
    else:
      splits[name] = synthetic.speech(n, c.seq_len, rng, n_classes=s.n_classes)
  try:
    os.makedirs(c.cache_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **{f"{k}_{a}": getattr(v, a) for k, v in splits.items()
                     for a in ("inputs", "lengths", "labels")})
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("could not cache synthetic data in %s: %s", c.cache_dir, e)
  return splits


def _real_splits(c, seed: int):
  root = os.path.expanduser(c.dir)
  if c.task == "listops":
    return readers.read_listops(root, c.seq_len), 10
  if c.task == "text":
    return readers.read_imdb(root, c.seq_len, c.val_fraction, seed), 2
  if c.task == "retrieval":
    return readers.read_aan(root, c.seq_len), 2
  if c.task == "image":
    return readers.read_cifar(root, c.val_fraction, seed), 10
  if c.task in ("pathfinder", "pathx"):
    return readers.read_pathfinder(root, c.resolution, c.variant), 2
  splits, words = readers.read_speech(root, c.seq_len)
  return splits, len(words)


def build_task(c: ml_collections.ConfigDict, *, batch_size: int, eval_batch_size: int | None = None,
               seed: int = 0, process_index: int = 0, process_count: int = 1) -> Task:
  """Loads (or generates) a task's data and wraps it in a batching `Task`."""
  if c.task not in TASKS:
    raise ValueError(f"unknown data.task {c.task!r}; expected one of {TASKS}")
  if c.task in ("pathfinder", "pathx"):
    c = ml_collections.ConfigDict(c.to_dict())
    c.seq_len = c.resolution * c.resolution
  synthetic_data = c.dir is None
  if synthetic_data:
    logging.warning("no data.dir given: using synthetic %s (%d train examples, L=%d) -- "
                    "numbers on it are NOT %s results; set --config.data.dir to the release "
                    "(%s)", c.task, c.synthetic.n_train, c.seq_len,
                    "Speech Commands" if c.task == "speech" else "LRA", LAYOUTS[c.task])
    splits = _synthetic_splits(c, seed)
    n_classes = {"listops": 10, "image": c.synthetic.get("n_classes", 10),
                 "speech": c.synthetic.get("n_classes", 10)}.get(c.task, 2)
  else:
    splits, n_classes = _real_splits(c, seed)
  if len(splits["train"]) // process_count < batch_size:
    raise ValueError(f"{len(splits['train'])} training examples cannot fill one batch of "
                     f"{batch_size} per process: lower train.batch_size")
  token_vocab = {"listops": listops_lib.VOCAB_SIZE, "text": BYTE_VOCAB, "retrieval": BYTE_VOCAB}
  decode = _tokens if c.task in token_vocab else _audio if c.task == "speech" else _pixels
  return Task(name=c.task, n_classes=n_classes, vocab_size=token_vocab.get(c.task),
              in_dim=1, seq_len=c.seq_len, retrieval=c.task == "retrieval",
              synthetic=synthetic_data, splits=splits, batch_size=batch_size,
              eval_batch_size=eval_batch_size or batch_size, seed=seed,
              process_index=process_index, process_count=process_count, decode=decode)


__all__ = ["Batch", "DataError", "Split", "TASKS", "Task", "build_task", "default_data_config"]
