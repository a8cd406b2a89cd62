"""Readers of the original release layouts.

Each task has a `Reader`: ``locate(root, c)`` finds the release folder under
``data.dir`` (see `layout.find`: any nesting depth), ``read(base, c)`` parses
it into train/val/test `Split`\\ s of compact rows (uint8 tokens, bytes or pixels,
int16 audio) and the number of classes. Missing, misplaced or damaged files
raise `DataError` with the path, the expected layout and what to do.

Split conventions (documented in docs/data.md; ``data.splits='reference'``
swaps in the paper's code's rules where they differ, see `splits`):

* ListOps, AAN: the release's own train/val(eval)/test files.
* IMDB: train/test folders; val is the test set (as LRA and S5 do) unless
  ``data.val_fraction > 0`` holds that share of train out instead.
* CIFAR-10: ``data.val_fraction`` (0.1: 45000/5000) of the five training batches
  is held out as val, chosen by ``data.split_seed``; test is test_batch.
* Pathfinder/Path-X: metadata files in numeric order, lines in order; the first
  80% train, the next 10% val, the last 10% test (LRA's ``[:80%]``, ``[80%:90%]``,
  ``[90%:]``). Zero-byte images are skipped with a warning, as LRA filters them.
* Speech Commands: validation_list.txt and testing_list.txt, the rest train;
  words numbered alphabetically.
"""

import dataclasses
import glob
import io
import os
import pickle
from collections.abc import Callable

import numpy as np

from last_nnx.data import fileio, layout, pathfinder_speech
from last_nnx.data import listops as listops_lib
from last_nnx.data import splits as splits_lib
from last_nnx.data.layout import error, require
from last_nnx.data.pipeline import Split, hold_out, pad_rows


@dataclasses.dataclass(frozen=True)
class Reader:
  """How one task's release is found and parsed.

  locate: ``(root, data_config) -> base`` folder of the release.
  read: ``(base, data_config) -> ({split: Split}, n_classes)``.
  depth: levels below ``base`` whose listing keys the cache.
  """

  locate: Callable
  read: Callable
  depth: int = 1


# ----------------------------------------------------------------------------
# ListOps


def _listops_locate(root: str, c) -> str:
  return os.path.dirname(layout.find(root, "listops"))


def _listops_split(path: str, seq_len: int) -> Split:
  seqs, labels = [], []
  rows = fileio.tsv_rows(path, "listops", 2, ("Source", "Target"))
  for line_no, (source, target, *_) in rows:
    try:
      seqs.append([listops_lib.TOKEN_ID[t] for t in listops_lib.tokenize(source.decode())])
    except (KeyError, UnicodeDecodeError) as e:
      raise error(
        "listops",
        f"{path}:{line_no}",
        f"unknown token {e} (ListOps has 0-9, [MAX, [MIN, [MED, [SM, ] and parentheses)",
      ) from e
    labels.append(fileio.label(target, f"{path}:{line_no}", "listops", 10))
  rows, lengths = pad_rows(seqs, seq_len)
  return Split(rows, lengths, np.asarray(labels, np.int32))


def _listops_read(base: str, c) -> tuple[dict[str, Split], int]:
  splits_lib.mode(c)  # checked; both rules read the release's own three files
  return {
    s: _listops_split(os.path.join(base, f"basic_{s}.tsv"), c.seq_len)
    for s in ("train", "val", "test")
  }, 10


# ----------------------------------------------------------------------------
# IMDB (byte level)


def _imdb_split(base: str, name: str, seq_len: int) -> Split:
  paths, labels = [], []
  for label, sentiment in enumerate(("neg", "pos")):
    folder = require(os.path.join(base, name, sentiment), "text", "folder")
    files = sorted(glob.glob(os.path.join(folder, "*.txt")))
    if not files:
      raise error("text", folder, "no reviews (*.txt) in this folder")
    paths += files
    labels += [label] * len(files)
  docs = fileio.parallel_map(lambda p: fileio.read_bytes(p, "text"), paths)
  rows, lengths = pad_rows(docs, seq_len)
  return Split(rows, lengths, np.asarray(labels, np.int32))


def _imdb_read(base: str, c) -> tuple[dict[str, Split], int]:
  if splits_lib.mode(c) == "reference" and c.val_fraction > 0:
    raise ValueError(
      "data.splits='reference' validates IMDB on test, as the paper's code "
      "does (its val_split is 0): set data.val_fraction=0"
    )
  train, test = (_imdb_split(base, s, c.seq_len) for s in ("train", "test"))
  if c.val_fraction > 0:
    train, val = hold_out(train, c.val_fraction, c.split_seed)
  else:
    val = test  # LRA reports IMDB on test and has no val split; S5 validates on test too
  return {"train": train, "val": val, "test": test}, 2


# ----------------------------------------------------------------------------
# AAN (pairs of byte documents)


def _aan_split(path: str, seq_len: int) -> Split:
  """Document pairs cut at ``seq_len`` bytes, written straight into ``(N, 2, L)`` rows."""
  n = sum(1 for _ in fileio.tsv_rows(path, "retrieval", 5))
  if not n:
    raise error("retrieval", path, "no examples in this file")
  rows = np.zeros((n, 2, seq_len), np.uint8)
  lengths = np.ones((n, 2), np.int32)
  labels = np.zeros(n, np.int32)
  for i, (line_no, fields) in enumerate(fileio.tsv_rows(path, "retrieval", 5)):
    labels[i] = fileio.label(fields[0], f"{path}:{line_no}", "retrieval", 2)
    for d, text in enumerate(fields[3:5]):
      doc = np.frombuffer(text[:seq_len], np.uint8)
      rows[i, d, : len(doc)] = doc
      lengths[i, d] = max(1, len(doc))
  return Split(rows, lengths, labels)


def _aan_read(base: str, c) -> tuple[dict[str, Split], int]:
  splits_lib.mode(c)  # checked; both rules read the release's own three files
  names = {"train": "train", "val": "eval", "test": "test"}
  return {
    s: _aan_split(os.path.join(base, f"new_aan_pairs.{f}.tsv"), c.seq_len) for s, f in names.items()
  }, 2


# ----------------------------------------------------------------------------
# CIFAR-10 (grayscale pixel sequences)


def grayscale(rgb: np.ndarray) -> np.ndarray:
  """``(N, 3072)`` CIFAR rows (R, G, B planes) -> ``(N, 1024)`` uint8 luma.

  ITU-R 601 weights in PIL's fixed-point arithmetic, i.e. what
  ``torchvision.transforms.Grayscale`` (used by S4/S5) produces.
  """
  r, g, b = (rgb.reshape(-1, 3, 1024)[:, i].astype(np.uint32) for i in range(3))
  return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  try:
    raw = fileio.read_bytes(require(path, "image"), "image")
    d = pickle.load(io.BytesIO(raw), encoding="bytes")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    data = np.asarray(d["data"], np.uint8)
    labels = np.asarray(d["labels"], np.int32)
  except layout.DataError:
    raise
  except Exception as e:  # unpickling garbage raises almost anything
    raise error(
      "image",
      path,
      f"not a CIFAR-10 python batch ({type(e).__name__}: {e}); re-extract the archive",
    ) from e
  if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
    raise error(
      "image", path, f"expected 'data' (N, 3072) and N 'labels', got {data.shape} and {len(labels)}"
    )
  return grayscale(data), labels


def _cifar_read(base: str, c) -> tuple[dict[str, Split], int]:
  def load(names):
    parts = [_cifar_batch(os.path.join(base, n)) for n in names]
    x = np.concatenate([p[0] for p in parts])
    return Split(x, np.full(len(x), 1024, np.int32), np.concatenate([p[1] for p in parts]))

  train = load([f"data_batch_{i}" for i in range(1, 6)])
  if splits_lib.mode(c) == "reference":
    train, val = (
      train.take(i) for i in splits_lib.reference_held_out(len(train), c.val_fraction, c.split_seed)
    )
  else:
    train, val = hold_out(train, c.val_fraction, c.split_seed)
  return {"train": train, "val": val, "test": load(["test_batch"])}, 10


READERS = {
  "listops": Reader(_listops_locate, _listops_read),
  "text": Reader(lambda root, c: layout.find(root, "text"), _imdb_read, depth=2),
  "retrieval": Reader(lambda root, c: os.path.dirname(layout.find(root, "retrieval")), _aan_read),
  "image": Reader(lambda root, c: layout.find(root, "image"), _cifar_read),
  "pathfinder": Reader(
    pathfinder_speech.pathfinder_locate, pathfinder_speech.pathfinder_read, depth=2
  ),
  "pathx": Reader(pathfinder_speech.pathfinder_locate, pathfinder_speech.pathfinder_read, depth=2),
  "speech": Reader(pathfinder_speech.speech_locate, pathfinder_speech.speech_read),
}
