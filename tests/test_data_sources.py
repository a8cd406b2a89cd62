"""The source table: a row per (task, how); resolve leaves the config alone; new sources plug in."""

import ml_collections
import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import table


def test_the_table_chooses_by_task_dir_and_source():
  c = data.default_data_config("image")
  assert data.choose(c).name == "synthetic" and data.is_synthetic(c)
  c.dir = "/nowhere"
  assert data.choose(c).name == "release" and not data.is_synthetic(c)
  c.dir, c.source = None, "tfds"
  assert data.choose(c).name == "tfds"
  assert data.choose(data.default_data_config("digits")).name == "digits"
  assert data.choose(data.default_data_config("arrays")).name == "arrays"
  assert {"listops", "pathx", "speech", "digits", "arrays"} <= set(data.tasks())


def test_resolve_computes_the_length_without_touching_the_config():
  c = data.default_data_config("pathfinder")
  c.synthetic.seq_len = 256
  before = c.to_dict()
  assert data.resolve(c) == data.Resolved(seq_len=256, resolution=16)
  assert c.to_dict() == before and c.resolution == 32
  task = data.build_task(c, batch_size=4)  # the build reads a resolved copy
  assert task.seq_len == 256 and c.to_dict() == before
  c.synthetic.seq_len = 200
  with pytest.raises(ValueError, match="must be a square"):
    data.resolve(c)


class _Constant(data.Source):
  """A made-up source: every example is the sequence 1..L, labelled by its index's parity."""

  name = "constant"
  synthetic = False

  def default_config(self, task):
    return ml_collections.ConfigDict(dict(task=task, seq_len=5, n=8, cache_dir="unused"))

  def resolve(self, c):
    return data.Resolved(c.seq_len)

  def load(self, c):
    x = np.tile(np.arange(1, c.seq_len + 1, dtype=np.uint8), (c.n, 1))
    split = data.Split(x, np.full(c.n, c.seq_len, np.int32), np.arange(c.n, dtype=np.int32) % 2)
    return {s: split for s in data.SPLITS}, {"n_classes": 2}

  def encoding(self, c, meta):
    return data.Tokens(c.seq_len + 1)


def test_a_new_source_is_one_register_call():
  table.register(_Constant(), tasks=("constant-test",))
  try:
    c = data.default_data_config("constant-test")
    task = data.build_task(c, batch_size=4)
    assert (task.name, task.seq_len, task.n_classes, task.vocab_size) == ("constant-test", 5, 2, 6)
    with pytest.raises(ValueError, match="already taken by constant"):
      table.register(_Constant(), tasks=("constant-test",))
    c.source = "tfds"
    with pytest.raises(ValueError, match="does not apply to the constant-test task"):
      data.build_task(c, batch_size=4)
  finally:
    table._TABLE.pop(("constant-test", None))  # pylint: disable=protected-access
