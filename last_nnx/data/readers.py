"""Readers of the original release layouts.

Every reader takes the user's ``data.dir`` and finds its files even when the
archive was unpacked one level deeper or shallower than documented (the LRA
tarball is often nested as ``lra_release/lra_release/...``). Missing or
damaged files raise `DataError` naming the path and the expected layout.
"""

import csv
import glob
import os
import pickle
import wave

import numpy as np

from last_nnx.data import listops as listops_lib
from last_nnx.data.pipeline import Split, pad_tokens, split_off

LAYOUTS = {
    "listops": "listops-1000/basic_{train,val,test}.tsv (LRA lra_release)",
    "text": "aclImdb/{train,test}/{pos,neg}/*.txt (IMDB v1 archive)",
    "retrieval": "tsv_data/new_aan_pairs.{train,eval,test}.tsv (LRA lra_release)",
    "image": "cifar-10-batches-py/{data_batch_1..5,test_batch} (CIFAR-10 python archive)",
    "pathfinder": "pathfinder32/<variant>/{imgs,metadata} (LRA lra_release)",
    "pathx": "pathfinder128/<variant>/{imgs,metadata} (LRA lra_release)",
    "speech": "speech_commands_v0.02/<word>/*.wav + validation_list.txt, testing_list.txt",
}


class DataError(FileNotFoundError):
  """The data directory does not hold what the task needs."""


def find(root: str, relative: str, task: str) -> str:
  """Finds ``relative`` (a file or folder path) under ``root`` at any depth."""
  if not os.path.isdir(root):
    raise DataError(f"data.dir {root!r} does not exist; for task {task!r} it must contain "
                    f"{LAYOUTS[task]}")
  direct = os.path.join(root, relative)
  if os.path.exists(direct):
    return direct
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    candidate = os.path.join(dirpath, relative)
    if os.path.exists(candidate):
      return candidate
  raise DataError(f"{relative!r} not found under {root!r}; task {task!r} expects {LAYOUTS[task]}")


def _read_text(path: str) -> str:
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return f.read()
  except OSError as e:
    raise DataError(f"cannot read {path}: {e}") from e


# ----------------------------------------------------------------------------


def read_listops(root: str, seq_len: int) -> dict[str, Split]:
  folder = os.path.dirname(find(root, "listops-1000/basic_train.tsv", "listops"))
  splits = {}
  for name, fname in (("train", "basic_train.tsv"), ("val", "basic_val.tsv"),
                      ("test", "basic_test.tsv")):
    path = os.path.join(folder, fname)
    if not os.path.exists(path):
      raise DataError(f"missing {path}; ListOps expects {LAYOUTS['listops']}")
    seqs, labels = [], []
    with open(path, newline="") as f:
      reader = csv.reader(f, delimiter="\t")
      header = next(reader, None)
      if header is None or [h.strip() for h in header[:2]] != ["Source", "Target"]:
        raise DataError(f"{path}: expected a header 'Source<TAB>Target', got {header}")
      for row_no, row in enumerate(reader, start=2):
        if len(row) < 2 or not row[1].strip().isdigit():
          raise DataError(f"{path}:{row_no}: expected '<expression><TAB><digit>', got {row!r}")
        seqs.append(listops_lib.encode(listops_lib.tokenize(row[0])))
        labels.append(int(row[1]))
    inputs, lengths = pad_tokens(seqs, seq_len)
    splits[name] = Split(inputs, lengths, np.asarray(labels, np.int32))
  return splits


def _encode_bytes(text: str) -> list[int]:
  return [b + 1 for b in text.encode("utf-8")]  # 0 is padding


def read_imdb(root: str, seq_len: int, val_fraction: float = 0.1, seed: int = 0):
  base = find(root, "aclImdb", "text")
  splits = {}
  for name in ("train", "test"):
    seqs, labels = [], []
    for label, sentiment in enumerate(("neg", "pos")):
      folder = os.path.join(base, name, sentiment)
      files = sorted(glob.glob(os.path.join(folder, "*.txt")))
      if not files:
        raise DataError(f"no reviews in {folder}; text expects {LAYOUTS['text']}")
      for path in files:
        seqs.append(_encode_bytes(_read_text(path)))
        labels.append(label)
    inputs, lengths = pad_tokens(seqs, seq_len)
    splits[name] = Split(inputs, lengths, np.asarray(labels, np.int32))
  # LRA has no IMDB validation split; hold out part of train (deterministic).
  splits["train"], splits["val"] = split_off(splits["train"], val_fraction, seed)
  return splits


def read_aan(root: str, seq_len: int) -> dict[str, Split]:
  train = find(root, "new_aan_pairs.train.tsv", "retrieval")
  folder = os.path.dirname(train)
  splits = {}
  for name, suffix in (("train", "train"), ("val", "eval"), ("test", "test")):
    path = os.path.join(folder, f"new_aan_pairs.{suffix}.tsv")
    if not os.path.exists(path):
      raise DataError(f"missing {path}; retrieval expects {LAYOUTS['retrieval']}")
    docs, labels = [], []
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
      for row_no, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
        if len(row) < 5:
          raise DataError(f"{path}:{row_no}: expected 5 tab-separated fields "
                          "(label, id1, id2, text1, text2), got {len(row)}")
        try:
          labels.append(int(float(row[0])))
        except ValueError as e:
          raise DataError(f"{path}:{row_no}: label {row[0]!r} is not a number") from e
        docs.append((_encode_bytes(row[3]), _encode_bytes(row[4])))
    a, la = pad_tokens([d[0] for d in docs], seq_len)
    b, lb = pad_tokens([d[1] for d in docs], seq_len)
    splits[name] = Split(np.stack([a, b], 1), np.stack([la, lb], 1), np.asarray(labels, np.int32))
  return splits


def _unpickle(path: str) -> dict:
  try:
    with open(path, "rb") as f:
      d = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
  except FileNotFoundError as e:
    raise DataError(f"missing {path}; image expects {LAYOUTS['image']}") from e
  except Exception as e:
    raise DataError(f"{path} is not a CIFAR-10 python batch ({e}); re-extract the archive") from e


def read_cifar(root: str, val_fraction: float = 0.1, seed: int = 0) -> dict[str, Split]:
  folder = find(root, "cifar-10-batches-py", "image")

  def load(names):
    xs, ys = [], []
    for name in names:
      d = _unpickle(os.path.join(folder, name))
      if "data" not in d or "labels" not in d:
        raise DataError(f"{folder}/{name} lacks 'data'/'labels'; expected a CIFAR-10 batch")
      rgb = np.asarray(d["data"], np.float32).reshape(-1, 3, 1024)
      gray = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
      xs.append(np.round(gray).astype(np.uint8))
      ys.append(np.asarray(d["labels"], np.int32))
    x = np.concatenate(xs)
    return Split(x, np.full(len(x), 1024, np.int32), np.concatenate(ys))

  train = load([f"data_batch_{i}" for i in range(1, 6)])
  train, val = split_off(train, val_fraction, seed)  # 45000 / 5000 as in S5
  return {"train": train, "val": val, "test": load(["test_batch"])}


def read_pathfinder(root: str, resolution: int, variant: str) -> dict[str, Split]:
  task = "pathfinder" if resolution == 32 else "pathx"
  base = find(root, os.path.join(f"pathfinder{resolution}", variant), task)
  meta_dir = os.path.join(base, "metadata")
  metas = sorted(glob.glob(os.path.join(meta_dir, "*.npy")),
                 key=lambda p: int(os.path.basename(p).split(".")[0])
                 if os.path.basename(p).split(".")[0].isdigit() else 0)
  if not metas:
    raise DataError(f"no metadata/*.npy files in {base}; {task} expects {LAYOUTS[task]}")
  from PIL import Image  # pillow comes with matplotlib
  images, labels = [], []
  for meta in metas:
    for line_no, line in enumerate(_read_text(meta).splitlines(), 1):
      fields = line.split()
      if not fields:
        continue
      if len(fields) < 4:
        raise DataError(f"{meta}:{line_no}: expected '<dir> <file> <n> <label> ...'")
      path = os.path.join(base, fields[0], fields[1])
      try:
        with Image.open(path) as im:
          arr = np.asarray(im.convert("L"), np.uint8)
      except FileNotFoundError as e:
        raise DataError(f"{path} listed in {meta} is missing") from e
      except Exception as e:
        raise DataError(f"{path} is not a readable image ({e})") from e
      if arr.shape != (resolution, resolution):
        raise DataError(f"{path} is {arr.shape}, expected {resolution}x{resolution}")
      images.append(arr.ravel())
      labels.append(int(fields[3]))
  x = np.stack(images)
  y = np.asarray(labels, np.int32)
  n = len(y)
  # LRA splits the examples in order: 80% train, 10% val, 10% test.
  a, b = int(0.8 * n), int(0.9 * n)
  full = lambda s: Split(x[s], np.full(len(y[s]), resolution * resolution, np.int32), y[s])
  return {"train": full(slice(0, a)), "val": full(slice(a, b)), "test": full(slice(b, n))}


def _read_wav(path: str, seq_len: int) -> np.ndarray:
  try:
    with wave.open(path, "rb") as w:
      if w.getsampwidth() != 2 or w.getnchannels() != 1:
        raise DataError(f"{path}: expected 16-bit mono PCM")
      audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)
  except (wave.Error, EOFError) as e:
    raise DataError(f"{path} is not a readable wav file ({e})") from e
  out = np.zeros(seq_len, np.int16)
  out[:min(seq_len, len(audio))] = audio[:seq_len]
  return out


def read_speech(root: str, seq_len: int) -> tuple[dict[str, Split], list[str]]:
  base = os.path.dirname(find(root, "testing_list.txt", "speech"))
  lists = {}
  for name in ("validation_list.txt", "testing_list.txt"):
    path = os.path.join(base, name)
    if not os.path.exists(path):
      raise DataError(f"missing {path}; speech expects {LAYOUTS['speech']}")
    lists[name] = {l.strip() for l in _read_text(path).splitlines() if l.strip()}
  words = sorted(d for d in os.listdir(base)
                 if os.path.isdir(os.path.join(base, d)) and not d.startswith("_"))
  if not words:
    raise DataError(f"no class folders in {base}; speech expects {LAYOUTS['speech']}")
  parts = {"train": ([], []), "val": ([], []), "test": ([], [])}
  for label, word in enumerate(words):
    for path in sorted(glob.glob(os.path.join(base, word, "*.wav"))):
      rel = f"{word}/{os.path.basename(path)}"
      split = ("val" if rel in lists["validation_list.txt"]
               else "test" if rel in lists["testing_list.txt"] else "train")
      parts[split][0].append(_read_wav(path, seq_len))
      parts[split][1].append(label)
  splits = {}
  for name, (xs, ys) in parts.items():
    if not xs:
      raise DataError(f"speech split {name!r} is empty under {base}: check the list files")
    x = np.stack(xs)
    splits[name] = Split(x, np.full(len(x), seq_len, np.int32), np.asarray(ys, np.int32))
  return splits, words
