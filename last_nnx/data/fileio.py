"""File helpers the release readers share: threads, whole files, TSV rows, labels.

Every failure is a `layout.DataError` naming the path (and line), the expected
layout and what to do.
"""

import concurrent.futures
import os
from collections.abc import Callable, Iterator

import numpy as np

from last_nnx.data.layout import error, require

_THREADS = min(8, os.cpu_count() or 1)


def parallel_map(fn: Callable, items: list) -> list:
  """``[fn(x) for x in items]`` on a few threads (file reads and decoders release the GIL)."""
  with concurrent.futures.ThreadPoolExecutor(_THREADS) as pool:
    return list(pool.map(fn, items, chunksize=64))


def fill(items: list, out: np.ndarray, read: Callable) -> np.ndarray:
  """Runs ``read(item, out[i])`` for every item on a few threads, writing rows in place
  (no second copy of a multi-GB split); returns ``read``'s int results ``(N,)``."""
  return np.asarray(parallel_map(lambda i: read(items[i], out[i]), range(len(items))), np.int64)


def read_bytes(path: str, task: str) -> bytes:
  """The bytes of ``path``; a `DataError` naming it when it cannot be read."""
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise error(task, path, f"cannot read ({e.strerror})") from e


def tsv_rows(
  path: str,
  task: str,
  n_fields: int,
  header: tuple | None = None,
) -> Iterator[tuple[int, list[bytes]]]:
  """``(line_no, fields)`` of a tab-separated file streamed as bytes, no quoting (LRA's
  ``use_quote_delim=False``); checks the header and the field count of every row."""
  require(path, task)
  try:
    f = open(path, "rb")  # pylint: disable=consider-using-with (closed below)
  except OSError as e:
    raise error(task, path, f"cannot read ({e.strerror})") from e
  with f:
    for line_no, line in enumerate(f, 1):
      line = line.rstrip(b"\r\n")
      if line_no == 1 and header is not None:
        got = tuple(x.strip().decode(errors="replace") for x in line.split(b"\t"))
        if got[: len(header)] != header:
          raise error(
            task, f"{path}:1", f"expected the header {'<TAB>'.join(header)!r}, got {line[:80]!r}"
          )
        continue
      if not line.strip():
        continue
      fields = line.split(b"\t")
      if len(fields) < n_fields:
        raise error(
          task, f"{path}:{line_no}", f"expected {n_fields} tab-separated fields, got {len(fields)}"
        )
      yield line_no, fields
    if header is not None and f.tell() == 0:
      raise error(
        task, f"{path}:1", f"expected the header {'<TAB>'.join(header)!r}, the file is empty"
      )


def label(text: bytes, where: str, task: str, n_classes: int) -> int:
  """An integer label in ``0..n_classes-1`` written as ``7`` or ``7.0``."""
  try:
    value = float(text)
    ok = value.is_integer() and 0 <= value < n_classes
  except ValueError:
    ok = False
  if not ok:
    raise error(task, where, f"label {text[:20]!r} is not an integer in 0..{n_classes - 1}")
  return int(value)
