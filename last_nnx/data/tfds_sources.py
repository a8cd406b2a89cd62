"""TensorFlow Datasets builds of the releases LRA's tasks come from (``data.source=tfds``).

* image: ``cifar10`` (train / test), grayscale with the same luma as the
  release reader, L = 1024; ``data.val_fraction`` (0.1) of train is val.
* text: ``imdb_reviews`` (train / test), UTF-8 bytes cut at L = 4096; val is
  test unless ``data.val_fraction > 0`` (as the release reader).
* speech: ``speech_commands`` (train / validation / test), int16 audio
  zero-padded or cut to L = 16000. TFDS builds the 12-class keyword-spotting
  version (10 words, ``_silence_``, ``_unknown_``), not the 35-word set of the
  S5 paper that the release reader gives.

TFDS reads ``data.tfds_dir`` (None: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)
and never downloads: a missing build is a one-line `DataError` naming the
command that prepares it. ``tensorflow_datasets`` is imported here, on first
use only, so ``import last_nnx`` does not import it.
"""

import os

import numpy as np
from absl import logging

from last_nnx.data import pipeline
from last_nnx.data.layout import DataError
from last_nnx.data.pipeline import Split, hold_out
from last_nnx.data.readers import grayscale

DATASETS = {"image": "cifar10", "text": "imdb_reviews", "speech": "speech_commands"}
_CHUNK = 1024  # rows per growth step when a split's size is unknown


def _tfds():
  """``tensorflow_datasets``, imported on first use (TensorFlow configured quietly first)."""
  pipeline.tf()
  try:
    import tensorflow_datasets  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(
      "data.source=tfds needs tensorflow-datasets: pip install "
      "'tensorflow-datasets>=4.9.7,<5' (or `pip install -e .`)"
    ) from e
  return tensorflow_datasets


def tfds_root(c) -> str:
  """The folder TFDS reads: ``data.tfds_dir``, ``$TFDS_DATA_DIR`` or its default."""
  return os.path.expanduser(
    c.tfds_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  )


def _name(c) -> str:
  if c.task not in DATASETS:
    raise ValueError(
      f"data.source=tfds: task {c.task!r} has no TFDS source; tasks with one: {', '.join(DATASETS)}"
    )
  return DATASETS[c.task]


def _builder(c):
  name = _name(c)
  try:
    return _tfds().builder(name, data_dir=tfds_root(c))
  except Exception as e:  # an unreadable folder or an unknown version: say where it looked
    raise DataError(
      f"tfds: cannot open {name} under {tfds_root(c)} ({type(e).__name__}: "
      f"{str(e).splitlines()[0] if str(e) else ''}); {_hint(name, c)}"
    ) from e


def _hint(name: str, c) -> str:
  root = tfds_root(c)
  return (
    f"on a machine with network run `tfds build {name} --data_dir {root}` (it downloads "
    f"and prepares it), copy {root}/{name} here and set --config.data.tfds_dir to the "
    "folder holding it"
  )


def cache_key(c) -> dict:
  """What identifies the prepared data: dataset, version, folder, L, split choices."""
  builder = _builder(c)
  return dict(
    dataset=builder.info.full_name,
    root=os.path.realpath(tfds_root(c)),
    seq_len=c.seq_len,
    val_fraction=c.val_fraction,
    split_seed=c.split_seed,
  )


def _examples(builder, split: str, c):
  """``(numpy examples, count or None)`` of one split; a one-line error when not prepared."""
  name = builder.info.name
  try:
    ds = builder.as_dataset(split=split, shuffle_files=False)
  except AssertionError as e:  # TFDS's "could not find data in ..."
    raise DataError(
      f"tfds: {name} is not prepared under {tfds_root(c)} (data.tfds_dir) and "
      f"this package never downloads; {_hint(name, c)}"
    ) from e
  try:
    count = builder.info.splits[split].num_examples or None
  except KeyError:
    count = None
  return _tfds().as_numpy(ds), count


def _rows(
  examples, count, seq_len: int, dtype, field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Variable-length ``field`` of each example into zero-padded rows ``(N, seq_len)``.

  Returns rows of ``dtype``, lengths int32 ``(N,)`` (cut at ``seq_len``, at
  least 1) and labels int32 ``(N,)``. Preallocates when ``count`` is known.
  """
  rows = np.zeros((count or _CHUNK, seq_len), dtype)
  lengths, labels = [], []
  for i, ex in enumerate(examples):
    if i == len(rows):
      rows = np.concatenate([rows, np.zeros((_CHUNK, seq_len), dtype)])
    value = ex[field]
    value = np.frombuffer(value, np.uint8) if isinstance(value, bytes) else np.asarray(value)
    value = value.reshape(-1)[:seq_len]
    rows[i, : len(value)] = value
    lengths.append(max(1, len(value)))
    labels.append(int(ex["label"]))
  n = len(labels)
  return rows[:n], np.asarray(lengths, np.int32), np.asarray(labels, np.int32)


def _image(builder, c) -> dict[str, Split]:
  def load(split):
    examples, _ = _examples(builder, split, c)
    pixels, labels = [], []
    for ex in examples:
      pixels.append(ex["image"])
      labels.append(int(ex["label"]))
    if not pixels:
      raise DataError(f"tfds: the {split} split of cifar10 under {tfds_root(c)} is empty")
    rgb = np.stack(pixels).astype(np.uint8)  # (N, 32, 32, 3)
    if rgb.shape[1:] != (32, 32, 3):
      raise DataError(f"tfds: cifar10 images are {rgb.shape[1:]}, expected (32, 32, 3)")
    planes = rgb.transpose(0, 3, 1, 2).reshape(len(rgb), 3 * 1024)  # R, G, B planes
    x = grayscale(planes)
    return Split(x, np.full(len(x), 1024, np.int32), np.asarray(labels, np.int32))

  train, val = hold_out(load("train"), c.val_fraction, c.split_seed)
  return {"train": train, "val": val, "test": load("test")}


def _text(builder, c) -> dict[str, Split]:
  def load(split):
    examples, count = _examples(builder, split, c)
    rows, lengths, labels = _rows(examples, count, c.seq_len, np.uint8, "text")
    return Split(rows, lengths, labels)

  train, test = load("train"), load("test")
  if c.val_fraction > 0:
    train, val = hold_out(train, c.val_fraction, c.split_seed)
  else:
    val = test  # as LRA and the release reader: IMDB has no val split
  return {"train": train, "val": val, "test": test}


def _speech(builder, c) -> dict[str, Split]:
  splits = {}
  for ours, theirs in (("train", "train"), ("val", "validation"), ("test", "test")):
    examples, count = _examples(builder, theirs, c)
    splits[ours] = Split(*_rows(examples, count, c.seq_len, np.int16, "audio"))
  return splits


_READ = {"image": _image, "text": _text, "speech": _speech}


def read(c) -> tuple[dict[str, Split], dict]:
  """The train/val/test `Split`\\ s of the task's TFDS build and ``{"n_classes", "source"}``."""
  builder = _builder(c)
  logging.info("%s: reading %s from TFDS under %s", c.task, builder.info.full_name, tfds_root(c))
  splits = _READ[c.task](builder, c)
  for split, data in splits.items():
    if not len(data):
      raise DataError(
        f"tfds: the {split} split of {builder.info.name} under {tfds_root(c)} is empty; rebuild it"
      )
  n_classes = int(builder.info.features["label"].num_classes)
  return splits, {"n_classes": n_classes, "source": f"tfds:{builder.info.full_name}"}
