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
import wave
from collections.abc import Callable

import numpy as np
from absl import logging

from last_nnx.data import fileio, layout
from last_nnx.data import listops as listops_lib
from last_nnx.data import splits as splits_lib
from last_nnx.data.layout import error, require
from last_nnx.data.pipeline import Split, hold_out, pad_rows

# The 35 words of Speech Commands v0.02; labels are their indices in this order.
SPEECH_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward",
    "four", "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one",
    "right", "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow",
    "yes", "zero")
SAMPLE_RATE = 16000


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
      raise error("listops", f"{path}:{line_no}", f"unknown token {e} (ListOps has 0-9, "
                  "[MAX, [MIN, [MED, [SM, ] and parentheses)") from e
    labels.append(fileio.label(target, f"{path}:{line_no}", "listops", 10))
  rows, lengths = pad_rows(seqs, seq_len)
  return Split(rows, lengths, np.asarray(labels, np.int32))


def _listops_read(base: str, c) -> tuple[dict[str, Split], int]:
  splits_lib.mode(c)  # checked; both rules read the release's own three files
  return {s: _listops_split(os.path.join(base, f"basic_{s}.tsv"), c.seq_len)
          for s in ("train", "val", "test")}, 10


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
    raise ValueError("data.splits='reference' validates IMDB on test, as the paper's code "
                     "does (its val_split is 0): set data.val_fraction=0")
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
      rows[i, d, :len(doc)] = doc
      lengths[i, d] = max(1, len(doc))
  return Split(rows, lengths, labels)


def _aan_read(base: str, c) -> tuple[dict[str, Split], int]:
  splits_lib.mode(c)  # checked; both rules read the release's own three files
  names = {"train": "train", "val": "eval", "test": "test"}
  return {s: _aan_split(os.path.join(base, f"new_aan_pairs.{f}.tsv"), c.seq_len)
          for s, f in names.items()}, 2


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
    raise error("image", path, f"not a CIFAR-10 python batch ({type(e).__name__}: {e}); "
                "re-extract the archive") from e
  if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
    raise error("image", path, f"expected 'data' (N, 3072) and N 'labels', got {data.shape} "
                f"and {len(labels)}")
  return grayscale(data), labels


def _cifar_read(base: str, c) -> tuple[dict[str, Split], int]:
  def load(names):
    parts = [_cifar_batch(os.path.join(base, n)) for n in names]
    x = np.concatenate([p[0] for p in parts])
    return Split(x, np.full(len(x), 1024, np.int32), np.concatenate([p[1] for p in parts]))

  train = load([f"data_batch_{i}" for i in range(1, 6)])
  if splits_lib.mode(c) == "reference":
    train, val = (train.take(i) for i in splits_lib.reference_held_out(
        len(train), c.val_fraction, c.split_seed))
  else:
    train, val = hold_out(train, c.val_fraction, c.split_seed)
  return {"train": train, "val": val, "test": load(["test_batch"])}, 10


# ----------------------------------------------------------------------------
# Pathfinder / Path-X


def _pathfinder_fmt(c) -> dict:
  return dict(res=c.resolution, variant=c.variant)


def _pathfinder_locate(root: str, c) -> str:
  return layout.find(root, c.task, **_pathfinder_fmt(c))


def metadata_files(base: str) -> list[str]:
  """``base/metadata/*.npy`` in numeric order (0.npy, 1.npy, ..., 199.npy)."""
  files = glob.glob(os.path.join(base, "metadata", "*.npy"))
  stem = lambda p: os.path.basename(p)[:-4]
  return sorted(files, key=lambda p: (not stem(p).isdigit(), int(stem(p)) if stem(p).isdigit()
                                      else 0, stem(p)))


def metadata_entries(base: str, task: str, **fmt) -> list[tuple[str, int]]:
  """``(image path, label)`` for every metadata line, in order.

  The LRA metadata files are text despite the .npy name: one line per image,
  ``<folder> <file> <index> <label> ...``.
  """
  require(os.path.join(base, "metadata"), task, "folder", **fmt)
  files = metadata_files(base)
  if not files:
    raise error(task, os.path.join(base, "metadata"), "no *.npy metadata files", **fmt)
  entries = []
  for meta in files:
    text = fileio.read_bytes(meta, task).decode(errors="replace")
    for line_no, line in enumerate(text.splitlines(), 1):
      fields = line.split()
      if not fields:
        continue
      where = f"{meta}:{line_no}"
      if len(fields) < 4:
        raise error(task, where, "expected '<folder> <file> <index> <label> ...'", **fmt)
      entries.append((os.path.join(base, fields[0], fields[1]),
                      fileio.label(fields[3].encode(), where, task, 2)))
  return entries


def _png(path: str, res: int, task: str, fmt: dict, out: np.ndarray) -> int:
  """Writes the grayscale pixels of ``path`` into ``out`` ``(res*res,)``; returns 1, or 0
  for a zero-byte file (left out, as LRA does)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel (pillow: via matplotlib)
  try:
    if os.path.getsize(path) == 0:
      return 0
    with Image.open(path) as im:
      pixels = np.asarray(im.convert("L"), np.uint8)
  except FileNotFoundError as e:
    raise error(task, path, "listed in the metadata but missing", **fmt) from e
  except Exception as e:
    raise error(task, path, f"not a readable image ({e})", **fmt) from e
  if pixels.shape != (res, res):
    raise error(task, path, f"image is {pixels.shape[1]}x{pixels.shape[0]}, expected "
                f"{res}x{res} (is data.resolution right?)", **fmt)
  out[:] = pixels.ravel()
  return 1


def _compact_rows(x: np.ndarray, keep: np.ndarray, chunk: int = 4096) -> np.ndarray:
  """``x[keep]`` computed in place (rows moved forward chunk by chunk); a view of ``x``."""
  index = np.flatnonzero(keep)
  for start in range(0, len(index), chunk):
    part = index[start:start + chunk]
    x[start:start + len(part)] = x[part]  # sources never precede their targets
  return x[:len(index)]


def _pathfinder_read(base: str, c) -> tuple[dict[str, Split], int]:
  """Images read straight into split order (train, val, test: no second copy of Path-X).

  Default: metadata order, cut 80/10/10 after dropping zero-byte images. Reference:
  the reference's random split of every metadata line it keeps, then zero-byte
  images (which its reader cannot open) dropped from their split.
  """
  fmt = _pathfinder_fmt(c)
  entries = metadata_entries(base, c.task, **fmt)
  mode = splits_lib.mode(c)
  reference = mode == "reference"
  if reference:
    entries = [e for e in entries if not splits_lib.reference_pathfinder_skipped(
        c.resolution, c.variant, os.path.relpath(e[0], base).replace(os.sep, "/"))]
    entries = [entries[i] for i in splits_lib.reference_pathfinder_order(len(entries),
                                                                          c.split_seed)]
  x = np.zeros((len(entries), c.resolution ** 2), np.uint8)
  keep = fileio.fill([p for p, _ in entries], x,
                     lambda path, row: _png(path, c.resolution, c.task, fmt, row)).astype(bool)
  if not keep.all():
    logging.warning("%s: skipped %d zero-byte images (LRA drops them too%s)", base,
                    int((~keep).sum()), "; the reference's reader cannot open them"
                    if reference else "")
  x = _compact_rows(x, keep)
  y = np.asarray([label for _, label in entries], np.int32)[keep]
  sizes = splits_lib.pathfinder_sizes(len(entries) if reference else len(y), mode)
  cuts = np.concatenate([[0], np.cumsum(sizes)])
  if reference:  # the cuts fall between the same examples once empty images are gone
    cuts = np.concatenate([[0], np.cumsum(keep)])[cuts]
  full = lambda lo, hi: Split(x[lo:hi], np.full(hi - lo, x.shape[1], np.int32), y[lo:hi])
  return {s: full(int(cuts[k]), int(cuts[k + 1]))
          for k, s in enumerate(("train", "val", "test"))}, 2


# ----------------------------------------------------------------------------
# Speech Commands v0.02


def _wav(path: str, out: np.ndarray) -> int:
  """Writes the samples of ``path`` into ``out`` (int16, zero-padded or cut); returns the
  true length (at least 1)."""
  try:
    with wave.open(path, "rb") as w:
      if (w.getsampwidth(), w.getnchannels(), w.getframerate()) != (2, 1, SAMPLE_RATE):
        raise error("speech", path, f"expected 16-bit mono {SAMPLE_RATE} Hz PCM, got "
                    f"{8 * w.getsampwidth()}-bit, {w.getnchannels()} channel(s), "
                    f"{w.getframerate()} Hz")
      audio = np.frombuffer(w.readframes(w.getnframes()), "<i2")
  except layout.DataError:
    raise
  except (wave.Error, EOFError) as e:
    raise error("speech", path, f"not a readable wav file ({e})") from e
  except OSError as e:
    raise error("speech", path, f"cannot read ({e})") from e
  n = min(len(out), len(audio))
  out[:n] = audio[:n]
  return max(1, n)


def _speech_locate(root: str, c) -> str:
  return os.path.dirname(layout.find(root, "speech"))


def _speech_read(base: str, c) -> tuple[dict[str, Split], int]:
  lists = {}
  for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
    text = fileio.read_bytes(require(os.path.join(base, name), "speech"), "speech").decode()
    lists[split] = {line.strip() for line in text.splitlines() if line.strip()}
  missing = [w for w in SPEECH_WORDS if not os.path.isdir(os.path.join(base, w))]
  if missing:
    raise error("speech", base, f"missing word folders {missing} (v0.01 has 30 words; "
                "v0.02 is needed)")
  files = {s: ([], []) for s in ("train", "val", "test")}
  words = (splits_lib.REFERENCE_SPEECH_WORDS if splits_lib.mode(c) == "reference"
           else SPEECH_WORDS)
  for label, word in enumerate(words):
    for path in sorted(glob.glob(os.path.join(base, word, "*.wav"))):
      rel = f"{word}/{os.path.basename(path)}"
      split = "val" if rel in lists["val"] else "test" if rel in lists["test"] else "train"
      files[split][0].append(path)
      files[split][1].append(label)
  splits = {}
  for split, (paths, labels) in files.items():
    if not paths:
      raise error("speech", base, f"the {split} split is empty: check the word folders and "
                  "the list files")
    audio = np.zeros((len(paths), c.seq_len), np.int16)
    lengths = fileio.fill(paths, audio, _wav).astype(np.int32)
    splits[split] = Split(audio, lengths, np.asarray(labels, np.int32))
  return splits, len(SPEECH_WORDS)


READERS = {
    "listops": Reader(_listops_locate, _listops_read),
    "text": Reader(lambda root, c: layout.find(root, "text"), _imdb_read, depth=2),
    "retrieval": Reader(lambda root, c: os.path.dirname(layout.find(root, "retrieval")),
                        _aan_read),
    "image": Reader(lambda root, c: layout.find(root, "image"), _cifar_read),
    "pathfinder": Reader(_pathfinder_locate, _pathfinder_read, depth=2),
    "pathx": Reader(_pathfinder_locate, _pathfinder_read, depth=2),
    "speech": Reader(_speech_locate, _speech_read),
}
