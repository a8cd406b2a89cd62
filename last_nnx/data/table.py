"""The source table: which `Source` reads a ``data`` section, by task, data dir and source.

A row is ``(task, how) -> source``. ``how`` is read off the section:
``data.source`` when set (``tfds``, or a name a source registered), else
``dir`` when ``data.dir`` is set, else ``None`` (the task's default: its
synthetic generator for an LRA task, the data itself for digits and arrays).
The ``None`` row of a task also gives its default ``data`` section.

  task       how      source
  LRA tasks  None     lra.Synthetic   (and listops ... speech, see config.TASKS)
  LRA tasks  "dir"    lra.Release
  image, text, speech  "tfds"  lra.TFDS
  digits     None     digits.Digits
  arrays     None     arrays.Arrays
  pydocs, text_files  None  text.Text (token windows: a `text.TextTask`)

A new source registers its rows: ``register(MySource(), tasks=("mytask",))``.
"""

import ml_collections
from absl import logging

from last_nnx.data import arrays, cache, digits, lra, text
from last_nnx.data.config import TASKS, TFDS_TASKS
from last_nnx.data.pipeline import Split
from last_nnx.data.source import Encoding, Resolved, Source

_TABLE: dict[tuple[str, str | None], Source] = {}


def register(source: Source, *, tasks: tuple[str, ...], how: str | None = None) -> None:
  """Adds the rows ``(task, how) -> source`` for every task in ``tasks``.

  ``how=None`` makes ``source`` the task's default (and its default config);
  ``how="dir"`` is chosen when ``data.dir`` is set; any other name is chosen
  by ``data.source=<how>``. A row already taken is an error.
  """
  for task in tasks:
    if (task, how) in _TABLE:
      raise ValueError(
        f"data source row ({task!r}, {how!r}) is already taken by "
        f"{_TABLE[task, how].name}; register under another task or how"
      )
    _TABLE[task, how] = source


def tasks() -> tuple[str, ...]:
  """Every task some source can read, in registration order."""
  return tuple(dict.fromkeys(task for task, _ in _TABLE))


def _how(c: ml_collections.ConfigDict) -> str | None:
  if c.get("source") is not None:
    return c.source
  return "dir" if c.get("dir") is not None else None


def choose(c: ml_collections.ConfigDict) -> Source:
  """The source that reads ``c`` (a one-line error naming the choices when none does)."""
  if c.task not in tasks():
    raise ValueError(f"unknown data.task {c.task!r}; expected one of {tasks()}")
  how = _how(c)
  if (c.task, how) not in _TABLE:
    named = sorted(h for t, h in _TABLE if t == c.task and h not in (None, "dir"))
    choices = "leave it unset" + (
      "" if (c.task, "dir") not in _TABLE else " (data.dir, or synthetic data)"
    )
    choices += "".join(f" or set {h!r}" for h in named)
    readers = sorted(t for t, h in _TABLE if h == how)
    where = f" (tasks it reads: {', '.join(readers)})" if readers else ""
    raise ValueError(f"data.source={how!r} does not apply to the {c.task} task{where}; {choices}")
  return _TABLE[c.task, how]


def default_config(task: str) -> ml_collections.ConfigDict:
  """The default ``data`` section of ``task``: its default source's."""
  if (task, None) not in _TABLE:
    raise ValueError(f"unknown data task {task!r}; expected one of {tasks()}")
  return _TABLE[task, None].default_config(task)


def resolve(c: ml_collections.ConfigDict) -> Resolved:
  """L (and the image side) that ``c`` means; ``c`` is left as it is."""
  return choose(c).resolve(c)


def effective_seq_len(c: ml_collections.ConfigDict) -> int:
  """The sequence length L of the task ``c`` describes (`resolve`'s ``seq_len``)."""
  return resolve(c).seq_len


def is_synthetic(c: ml_collections.ConfigDict) -> bool:
  """Whether ``c`` is read by a generator (its numbers say nothing about a real task)."""
  return choose(c).synthetic


def load(
  c: ml_collections.ConfigDict,
) -> tuple[ml_collections.ConfigDict, Source, dict[str, Split], dict, Encoding]:
  """``(resolved config, source, splits, meta, encoding)`` of ``c``, through the cache.

  The resolved config is a copy of ``c`` whose ``seq_len`` (and ``resolution``)
  hold `resolve`'s answer; ``c`` is not changed.
  """
  source = choose(c)
  r = source.resolve(c)
  c = ml_collections.ConfigDict(c.to_dict())
  c.seq_len = r.seq_len
  if r.resolution is not None:
    c.resolution = r.resolution
  caveat = source.caveat(c)
  if caveat:
    logging.warning("%s", caveat)
  key = source.cache_key(c)
  path = None if key is None else cache.entry_path(c.cache_dir, f"{key['kind']}-{c.task}", key)
  splits, meta = cache.cached(path, lambda: source.load(c))
  return c, source, splits, meta, source.encoding(c, meta)


register(lra.Synthetic(), tasks=TASKS)
register(lra.Release(), tasks=TASKS, how="dir")
register(lra.TFDS(), tasks=TFDS_TASKS, how="tfds")
register(digits.Digits(), tasks=("digits",))
register(arrays.Arrays(), tasks=("arrays",))
register(text.Text(), tasks=text.TEXT_TASKS)
