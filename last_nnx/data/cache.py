"""On-disk cache of prepared splits, keyed by everything that made them.

An entry is a folder ``<cache_dir>/<name>-<digest>/`` holding one ``.npy`` per
array (``train.inputs.npy``, ...) and ``meta.json``; arrays load memory-mapped,
so a 3 GB Path-X or Speech Commands set costs no RAM until batches touch it.
Entries are written to a temporary folder and renamed into place, so
concurrent writers (several hosts, test workers) never see half an entry.
"""

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable

import numpy as np
from absl import logging

from last_nnx.data.pipeline import SPLITS, Split

_FIELDS = ("inputs", "lengths", "labels")


def entry_path(cache_dir: str, name: str, key: dict) -> str:
  """The folder of the entry for ``key`` (a JSON-able dict)."""
  digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
  return os.path.join(os.path.expanduser(cache_dir), f"{name}-{digest[:16]}")


def load(path: str) -> tuple[dict[str, Split], dict] | None:
  """``(splits, meta)`` of a complete entry, or None if absent or unreadable."""
  if not os.path.isfile(os.path.join(path, "meta.json")):
    return None
  try:
    with open(os.path.join(path, "meta.json")) as f:
      meta = json.load(f)
    splits = {
      s: Split(*(np.load(os.path.join(path, f"{s}.{a}.npy"), mmap_mode="r") for a in _FIELDS))
      for s in SPLITS
    }
  except (OSError, ValueError) as e:
    logging.warning("ignoring the damaged cache entry %s (%s)", path, e)
    return None
  return splits, meta


def save(path: str, splits: dict[str, Split], meta: dict) -> None:
  """Writes an entry atomically; a failure to write only logs a warning.

  Splits that are the same object (IMDB's val = test) are stored once each
  anyway: the files are small next to the benefit of a uniform layout.
  """
  tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    os.makedirs(tmp)
    for s in SPLITS:
      for a in _FIELDS:
        np.save(os.path.join(tmp, f"{s}.{a}.npy"), np.asarray(getattr(splits[s], a)))
    with open(os.path.join(tmp, "meta.json"), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True, default=str)
    os.rename(tmp, path)
  except OSError as e:
    if not os.path.isfile(os.path.join(path, "meta.json")):  # not a lost race
      logging.warning("could not cache data in %s: %s", path, e)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def cached(
  path: str | None,
  build: Callable[[], tuple[dict[str, Split], dict]],
) -> tuple[dict[str, Split], dict]:
  """``build()``'s ``(splits, meta)``, from the entry at ``path`` when it exists.

  ``path=None`` disables the cache. After a first build the splits are
  returned memory-mapped from the new entry, so the first run and later runs
  see identical arrays.
  """
  if path is None:
    return build()
  hit = load(path)
  if hit is not None:
    logging.info("data from the cache %s", path)
    return hit
  splits, meta = build()
  save(path, splits, meta)
  return load(path) or (splits, meta)


def default_cache_dir() -> str:
  """Where prepared real data is cached (``$LAST_NNX_CACHE``, else ~/.cache/last_nnx)."""
  return os.environ.get("LAST_NNX_CACHE") or os.path.expanduser("~/.cache/last_nnx")
