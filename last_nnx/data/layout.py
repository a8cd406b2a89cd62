"""Where each release lives under ``data.dir``, how to find it, what it should hold.

The readers and the checker (``python -m last_nnx.cli.check_data``) share this
module, so both find the same folders and name the same expected layout. The
LRA archive unpacks as ``lra_release/lra_release/...`` on some systems and
people move folders around; `find` therefore searches breadth-first, a few
levels deep, for the folder or file that identifies a release.
"""

import collections
import dataclasses
import hashlib
import os

from absl import logging

LRA_HINT = (
  "download lra_release.gz from github.com/google-research/long-range-arena, "
  "extract it (tar xzf) and set --config.data.dir to the extracted folder"
)
MAX_DEPTH = 6  # levels searched below data.dir
_SKIP = {"imgs", "metadata", "__pycache__", "_background_noise_"}  # never searched inside
_MAX_ENTRIES = 5000  # entries of one folder scanned while searching


class DataError(FileNotFoundError):
  """The data directory does not hold what the task needs (the message says what to do)."""


@dataclasses.dataclass(frozen=True)
class Release:
  """One dataset release: what identifies it and what it should contain.

  probe: a relative path (``{res}`` and ``{variant}`` filled in for Pathfinder)
    whose presence under some folder identifies the release.
  layout: the expected layout, for messages.
  hint: what to do when it is missing.
  expected: published examples per split (the same under ``data.splits`` 'default'
    and 'reference'); fewer is a subset (the checker warns), not an error.
  """

  name: str
  probe: str
  layout: str
  hint: str
  expected: dict


_PATHFINDER_LAYOUT = (
  "lra_release/pathfinder{res}/{variant}/metadata/*.npy (lines "
  "'<dir> <file> <n> <label> ...') and .../imgs/<k>/sample_<i>.png"
)
RELEASES = {
  "listops": Release(
    "LRA ListOps",
    "basic_train.tsv",
    "lra_release/listops-1000/basic_{train,val,test}.tsv (header 'Source<TAB>Target')",
    LRA_HINT,
    {"train": 96000, "val": 2000, "test": 2000},
  ),
  "text": Release(
    "IMDB reviews (LRA Text)",
    "aclImdb",
    "aclImdb/{train,test}/{pos,neg}/*.txt (the aclImdb_v1.tar.gz archive)",
    "download aclImdb_v1.tar.gz from ai.stanford.edu/~amaas/data/sentiment, extract it "
    "and set --config.data.dir to the folder holding aclImdb",
    {"train": 25000, "test": 25000},
  ),
  "retrieval": Release(
    "LRA AAN retrieval",
    "new_aan_pairs.train.tsv",
    "lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv (no header; columns "
    "label, id1, id2, text1, text2)",
    LRA_HINT,
    {"train": 147086, "val": 18090, "test": 17437},
  ),
  "image": Release(
    "CIFAR-10 (LRA Image)",
    "cifar-10-batches-py",
    "cifar-10-batches-py/{data_batch_1..5,test_batch} (the CIFAR-10 python archive)",
    "download cifar-10-python.tar.gz from www.cs.toronto.edu/~kriz/cifar.html, extract "
    "it and set --config.data.dir to the folder holding cifar-10-batches-py",
    {"train": 45000, "val": 5000, "test": 10000},
  ),
  "pathfinder": Release(
    "LRA Pathfinder",
    "pathfinder{res}/{variant}",
    _PATHFINDER_LAYOUT,
    LRA_HINT,
    {"train": 160000, "val": 20000, "test": 20000},
  ),
  "pathx": Release(
    "LRA Path-X",
    "pathfinder{res}/{variant}",
    _PATHFINDER_LAYOUT,
    LRA_HINT,
    {"train": 160000, "val": 20000, "test": 20000},
  ),
  "speech": Release(
    "Speech Commands v0.02",
    "testing_list.txt",
    "speech_commands_v0.02/<word>/*.wav (35 words, 16 kHz 16-bit mono) with "
    "validation_list.txt and testing_list.txt",
    "download speech_commands_v0.02.tar.gz (download.tensorflow.org/data), extract it "
    "into a folder and set --config.data.dir to it",
    {"train": 84843, "val": 9981, "test": 11005},
  ),
}


def release(task: str, **fmt) -> Release:
  """The task's release with ``{res}``/``{variant}`` filled in from ``fmt``."""
  r = RELEASES[task]
  if not fmt:
    return r
  return dataclasses.replace(r, probe=r.probe.format(**fmt), layout=r.layout.format(**fmt))


def error(task: str, path: str, problem: str, **fmt) -> DataError:
  """A `DataError` naming ``path``, the problem, the expected layout and what to do."""
  r = release(task, **fmt)
  return DataError(f"{path}: {problem}. {r.name} expects {r.layout} under data.dir; {r.hint}.")


def _tail_match(root: str, probe: str) -> str | None:
  """``probe`` resolved against ``root`` when ``root`` already ends inside it.

  E.g. root ``.../pathfinder32`` and probe ``pathfinder32/curv_contour_length_14``
  give ``.../pathfinder32/curv_contour_length_14``.
  """
  parts = probe.split("/")
  tail = os.path.normpath(root).split(os.sep)
  for k in range(len(parts), 0, -1):
    if tail[-k:] == parts[:k]:
      candidate = os.path.join(root, *parts[k:])
      if os.path.exists(candidate):
        return candidate
  return None


def _subfolders(path: str) -> list[str]:
  """Sorted subfolders worth searching (at most `_MAX_ENTRIES` entries looked at)."""
  out = []
  try:
    with os.scandir(path) as it:
      for i, entry in enumerate(it):
        if i >= _MAX_ENTRIES:
          break
        if entry.name not in _SKIP and not entry.name.startswith(".") and entry.is_dir():
          out.append(entry.path)
  except OSError:
    return []
  return sorted(out)


def search(root: str, probe: str, max_depth: int = MAX_DEPTH) -> list[str]:
  """Every ``folder/probe`` that exists, at the shallowest depth where any does.

  Breadth-first from ``root`` (depth 0), at most ``max_depth`` levels down,
  following symlinks once; never inside image or noise folders.
  """
  found = _tail_match(root, probe)
  if found:
    return [found]
  seen = set()
  level = [root]
  for _ in range(max_depth + 1):
    hits = [os.path.join(d, probe) for d in level if os.path.exists(os.path.join(d, probe))]
    if hits:
      return hits
    nxt = []
    for d in level:
      real = os.path.realpath(d)
      if real not in seen:
        seen.add(real)
        nxt.extend(_subfolders(d))
    level = nxt
    if not level:
      break
  return []


def find(root: str, task: str, **fmt) -> str:
  """The path of the task's probe under ``root`` (``data.dir``); DataError if absent."""
  r = release(task, **fmt)
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise error(task, root, "data.dir does not exist or is not a folder", **fmt)
  hits = search(root, r.probe)
  if not hits:
    raise error(task, root, f"no {r.probe} found (searched {MAX_DEPTH} levels down)", **fmt)
  if len(hits) > 1:
    logging.warning(
      "several copies of %s under %s; using %s (others: %s)",
      r.probe,
      root,
      hits[0],
      ", ".join(hits[1:]),
    )
  return hits[0]


def require(path: str, task: str, what: str = "file", **fmt) -> str:
  """``path`` if it exists as a ``what`` ('file' or 'folder'); DataError otherwise."""
  ok = os.path.isdir(path) if what == "folder" else os.path.isfile(path)
  if not ok:
    raise error(task, path, f"missing {what}", **fmt)
  return path


def fingerprint(base: str, depth: int = 2) -> str:
  """A digest of the names, sizes and modification times of ``base``'s entries, ``depth``
  levels down: it changes when files are added, removed, rewritten or replaced there
  (a rewritten image deeper down changes only its folder's listing if renamed).
  """
  h = hashlib.sha1(os.path.realpath(base).encode())
  queue = collections.deque([(base, 0)])
  while queue:
    path, level = queue.popleft()
    with os.scandir(path) as it:
      entries = sorted(it, key=lambda e: e.name)
    for e in entries:
      st = e.stat()
      h.update(f"{os.path.relpath(e.path, base)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
      if e.is_dir() and level + 1 < depth:
        queue.append((e.path, level + 1))
  return h.hexdigest()[:16]
