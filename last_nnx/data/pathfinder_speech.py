"""Readers of the Pathfinder / Path-X and Speech Commands releases (images and audio).

`readers.READERS` names them beside the text releases; the split conventions are in
`readers`' docstring and docs/data.md.
"""

import glob
import os
import wave

import numpy as np
from absl import logging

from last_nnx.data import fileio, layout
from last_nnx.data import splits as splits_lib
from last_nnx.data.layout import error, require
from last_nnx.data.pipeline import Split

# The 35 words of Speech Commands v0.02; labels are their indices in this order.
SPEECH_WORDS = (
  "backward",
  "bed",
  "bird",
  "cat",
  "dog",
  "down",
  "eight",
  "five",
  "follow",
  "forward",
  "four",
  "go",
  "happy",
  "house",
  "learn",
  "left",
  "marvin",
  "nine",
  "no",
  "off",
  "on",
  "one",
  "right",
  "seven",
  "sheila",
  "six",
  "stop",
  "three",
  "tree",
  "two",
  "up",
  "visual",
  "wow",
  "yes",
  "zero",
)
SAMPLE_RATE = 16000


# ----------------------------------------------------------------------------
# Pathfinder / Path-X


def _pathfinder_fmt(c) -> dict:
  return dict(res=c.resolution, variant=c.variant)


def pathfinder_locate(root: str, c) -> str:
  return layout.find(root, c.task, **_pathfinder_fmt(c))


def metadata_files(base: str) -> list[str]:
  """``base/metadata/*.npy`` in numeric order (0.npy, 1.npy, ..., 199.npy)."""
  files = glob.glob(os.path.join(base, "metadata", "*.npy"))
  stem = lambda p: os.path.basename(p)[:-4]
  return sorted(
    files, key=lambda p: (not stem(p).isdigit(), int(stem(p)) if stem(p).isdigit() else 0, stem(p))
  )


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
      entries.append(
        (os.path.join(base, fields[0], fields[1]), fileio.label(fields[3].encode(), where, task, 2))
      )
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
    raise error(
      task,
      path,
      f"image is {pixels.shape[1]}x{pixels.shape[0]}, expected "
      f"{res}x{res} (is data.resolution right?)",
      **fmt,
    )
  out[:] = pixels.ravel()
  return 1


def compact_rows(x: np.ndarray, keep: np.ndarray, chunk: int = 4096) -> np.ndarray:
  """``x[keep]`` computed in place (rows moved forward chunk by chunk); a view of ``x``."""
  index = np.flatnonzero(keep)
  for start in range(0, len(index), chunk):
    part = index[start : start + chunk]
    x[start : start + len(part)] = x[part]  # sources never precede their targets
  return x[: len(index)]


def pathfinder_read(base: str, c) -> tuple[dict[str, Split], int]:
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
    entries = [
      e
      for e in entries
      if not splits_lib.reference_pathfinder_skipped(
        c.resolution, c.variant, os.path.relpath(e[0], base).replace(os.sep, "/")
      )
    ]
    entries = [
      entries[i] for i in splits_lib.reference_pathfinder_order(len(entries), c.split_seed)
    ]
  x = np.zeros((len(entries), c.resolution**2), np.uint8)
  keep = fileio.fill(
    [p for p, _ in entries], x, lambda path, row: _png(path, c.resolution, c.task, fmt, row)
  ).astype(bool)
  if not keep.all():
    logging.warning(
      "%s: skipped %d zero-byte images (LRA drops them too%s)",
      base,
      int((~keep).sum()),
      "; the reference's reader cannot open them" if reference else "",
    )
  x = compact_rows(x, keep)
  y = np.asarray([label for _, label in entries], np.int32)[keep]
  sizes = splits_lib.pathfinder_sizes(len(entries) if reference else len(y), mode)
  cuts = np.concatenate([[0], np.cumsum(sizes)])
  if reference:  # the cuts fall between the same examples once empty images are gone
    cuts = np.concatenate([[0], np.cumsum(keep)])[cuts]
  full = lambda lo, hi: Split(x[lo:hi], np.full(hi - lo, x.shape[1], np.int32), y[lo:hi])
  return {
    s: full(int(cuts[k]), int(cuts[k + 1])) for k, s in enumerate(("train", "val", "test"))
  }, 2


# ----------------------------------------------------------------------------
# Speech Commands v0.02


def _wav(path: str, out: np.ndarray) -> int:
  """Writes the samples of ``path`` into ``out`` (int16, zero-padded or cut); returns the
  true length (at least 1)."""
  try:
    with wave.open(path, "rb") as w:
      if (w.getsampwidth(), w.getnchannels(), w.getframerate()) != (2, 1, SAMPLE_RATE):
        raise error(
          "speech",
          path,
          f"expected 16-bit mono {SAMPLE_RATE} Hz PCM, got "
          f"{8 * w.getsampwidth()}-bit, {w.getnchannels()} channel(s), "
          f"{w.getframerate()} Hz",
        )
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


def speech_locate(root: str, c) -> str:
  return os.path.dirname(layout.find(root, "speech"))


def speech_read(base: str, c) -> tuple[dict[str, Split], int]:
  lists = {}
  for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
    text = fileio.read_bytes(require(os.path.join(base, name), "speech"), "speech").decode()
    lists[split] = {line.strip() for line in text.splitlines() if line.strip()}
  missing = [w for w in SPEECH_WORDS if not os.path.isdir(os.path.join(base, w))]
  if missing:
    raise error(
      "speech", base, f"missing word folders {missing} (v0.01 has 30 words; v0.02 is needed)"
    )
  files: dict[str, tuple[list, list]] = {s: ([], []) for s in ("train", "val", "test")}
  words = splits_lib.REFERENCE_SPEECH_WORDS if splits_lib.mode(c) == "reference" else SPEECH_WORDS
  for label, word in enumerate(words):
    for path in sorted(glob.glob(os.path.join(base, word, "*.wav"))):
      rel = f"{word}/{os.path.basename(path)}"
      split = "val" if rel in lists["val"] else "test" if rel in lists["test"] else "train"
      files[split][0].append(path)
      files[split][1].append(label)
  splits = {}
  for split, (paths, labels) in files.items():
    if not paths:
      raise error(
        "speech", base, f"the {split} split is empty: check the word folders and the list files"
      )
    audio = np.zeros((len(paths), c.seq_len), np.int16)
    lengths = fileio.fill(paths, audio, _wav).astype(np.int32)
    splits[split] = Split(audio, lengths, np.asarray(labels, np.int32))
  return splits, len(SPEECH_WORDS)
