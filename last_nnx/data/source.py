"""What a data source is: the protocol every entry of the source table implements.

A source turns a ``data`` config section into train/val/test `Split`\\ s. Five
steps, each one method:

  default_config(task)  the ``data`` section a new run starts from;
  resolve(c)            the sequence length L (and the image side, if any) that
                        ``c`` means, computed without touching ``c``;
  cache_key(c)          what identifies the prepared data (None: not cached);
  load(c)               ``(splits, meta)``; ``meta["n_classes"]`` at least;
  encoding(c, meta)     how stored rows become model inputs (`Tokens`,
                        `Continuous` or `Features`);
  caveat(c)             a warning every run on this data must log, cached or not
                        (synthetic data: its numbers are not the real task's).

``load``, ``cache_key`` and ``encoding`` receive the *resolved* config: a copy
of ``c`` whose ``seq_len`` (and ``resolution``) hold `resolve`'s answer.
`last_nnx.data.table` chooses the source and runs the steps; a new source is a
class with these methods (subclass `Source` to inherit the defaults of
``cache_key`` and ``caveat``) and one `table.register` call.
"""

import dataclasses
from typing import Protocol

import ml_collections

from last_nnx.data.pipeline import Continuous, Features, Split, Tokens

Encoding = Tokens | Continuous | Features


@dataclasses.dataclass(frozen=True)
class Resolved:
  """What a config means once its defaults and presets are applied.

  seq_len: L, the length every stored row is padded or cut to.
  resolution: the image side for tasks read row by row (L = resolution**2), else None.
  """

  seq_len: int
  resolution: int | None = None


class Source(Protocol):
  """One way of getting a task's data (see the module docstring for the five steps).

  name: how errors and the cache name it (``synthetic``, ``release``, ``tfds``, ...).
  synthetic: whether its numbers say nothing about a real task (a generator).
  """

  name: str
  synthetic: bool

  def default_config(self, task: str) -> ml_collections.ConfigDict: ...

  def resolve(self, c: ml_collections.ConfigDict) -> Resolved: ...

  def cache_key(self, c: ml_collections.ConfigDict) -> dict | None:
    """A JSON-able dict naming everything the prepared data depends on; None: never cached.

    The cache entry is named ``<key["kind"]>-<task>``, so a key holds ``kind``.
    """
    del c
    return None

  def load(self, c: ml_collections.ConfigDict) -> tuple[dict[str, Split], dict]: ...

  def encoding(self, c: ml_collections.ConfigDict, meta: dict) -> Encoding: ...

  def caveat(self, c: ml_collections.ConfigDict) -> str | None:
    """A warning to log on every run (None: nothing to say)."""
    del c
    return None
