"""The arrays task: your own sequences from .npz files or numpy arrays, checked."""

import importlib.util
import os
import sys

import numpy as np
import pytest

from last_nnx import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def get_config(arg):
  spec = importlib.util.spec_from_file_location(
    "cfg_arrays", os.path.join(ROOT, "experiments", "configs", "arrays.py")
  )
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, ROOT)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def tokens(n, L=12, vocab=7, classes=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(1, vocab, (n, L))
  y = np.arange(n) % classes
  lengths = rng.integers(1, L + 1, n)
  return x, y, lengths


def features(n, L=10, F=3, classes=2, seed=0):
  rng = np.random.default_rng(seed)
  y = np.arange(n) % classes
  x = rng.normal(5.0, 2.0, (n, L, F)).astype(np.float32)
  x[:, :, 0] += 3.0 * y[:, None]  # class signal in feature 0
  return x, y


def build(c, batch_size=8):
  return data.build_task(c, batch_size=batch_size, eval_batch_size=16)


# ----------------------------------------------------------------------------
# Reading and inferring


def test_one_file_per_split_tokens_inferred(tmp_path):
  for split, n in (("train", 40), ("val", 12), ("test", 16)):
    x, y, lengths = tokens(n, seed=n)
    np.savez(tmp_path / f"{split}.npz", inputs=x, labels=y, lengths=lengths)
  c = data.default_data_config("arrays")
  c.path = str(tmp_path)
  task = build(c)
  assert (task.seq_len, task.n_classes, task.vocab_size, task.in_dim) == (12, 3, 7, 1)
  assert task.num_examples == {"train": 40, "val": 12, "test": 16} and not task.synthetic
  assert data.effective_seq_len(c) == 12
  batch, lengths, labels = next(task.eval_batches("test"))
  x, y, n = tokens(16, seed=16)
  np.testing.assert_array_equal(lengths, n)
  np.testing.assert_array_equal(labels, y)
  inside = np.arange(12) < n[:, None]
  np.testing.assert_array_equal(batch, np.where(inside, x, 0))  # ids kept, 0 after length


def test_named_splits_in_one_file_features_standardized_val_held_out(tmp_path):
  (x, y), (xt, yt) = features(50), features(20, seed=1)
  path = str(tmp_path / "mine.npz")
  data.save_arrays(path, train=(x, y), test=(xt, yt))
  c = data.default_data_config("arrays")
  c.path = path
  task = build(c)
  assert task.num_examples == {"train": 45, "val": 5, "test": 20}  # val_fraction 0.1
  assert (task.in_dim, task.vocab_size, task.n_classes, task.seq_len) == (3, None, 2, 10)
  train = np.concatenate([b[0] for b in task.train_batches(0)])
  assert train.shape[1:] == (10, 3) and train.dtype == np.float32
  np.testing.assert_allclose(train.reshape(-1, 3).mean(0), 0, atol=0.15)
  np.testing.assert_allclose(train.reshape(-1, 3).std(0), 1, atol=0.15)
  c.standardize = False
  raw = build(c)
  first = next(raw.eval_batches("test"))[0]
  np.testing.assert_allclose(first, xt[:16], rtol=1e-6)


def test_float_rows_are_one_feature_and_padding_is_zero(tmp_path):
  x = np.arange(6 * 5, dtype=np.float64).reshape(6, 5)
  y = np.array([0, 1, 0, 1, 0, 1])
  lengths = np.array([5, 3, 1, 5, 2, 4])
  c = data.from_arrays(
    train=(x, y, lengths), val=(x, y, lengths), test=(x, y, lengths), standardize=False
  )
  task = build(c, batch_size=2)
  batch, _, _ = next(task.eval_batches("test"))
  assert batch.shape == (6, 5, 1)
  expected = np.where(np.arange(5) < lengths[:, None], x, 0)
  np.testing.assert_array_equal(batch[..., 0], expected.astype(np.float32))


def test_from_arrays_is_keyed_by_content_and_fixes_classes_and_vocab():
  x, y, _ = tokens(30)
  c1 = data.from_arrays(train=(x, y), test=(x, y))
  c2 = data.from_arrays(train=(x, y), test=(x, y))
  assert c1.memory == c2.memory and c1.task == "arrays" and c1.path is None
  c3 = data.from_arrays(train=(x + 1, y), test=(x, y))
  assert c3.memory != c1.memory
  c4 = data.from_arrays(train=(x, y), test=(x, y), n_classes=5, vocab_size=100)
  task = build(c4)
  assert (task.n_classes, task.vocab_size) == (5, 100)
  assert task.splits["train"].inputs.dtype == np.uint8
  c5 = data.default_data_config("arrays")
  c5.memory = "0" * 20
  with pytest.raises(data.ArrayError, match="no such arrays in this process"):
    build(c5)


# ----------------------------------------------------------------------------
# Every bad case: one line that says what to change


def _bad(match, **splits):
  with pytest.raises(data.ArrayError, match=match) as info:
    data.from_arrays(**splits)
  assert "\n" not in str(info.value)


def test_bad_arrays_give_one_line_errors():
  x, y, n = tokens(20)
  f, fy = features(20)
  _bad("the test split is empty", train=(x, y), test=(x[:0], y[:0]))
  _bad("the val split is empty.*leave val out", train=(x, y), val=(x[:0], y[:0]), test=(x, y))
  _bad("20 inputs, 19 labels", train=(x, y[:19]), test=(x, y))
  _bad("20 inputs, 20 labels, 18 lengths", train=(x, y, n[:18]), test=(x, y))
  _bad("test inputs have L=11 but train has L=12", train=(x, y), test=(x[:, :11], y))
  _bad("test inputs have L=10, F=2 but train has L=10, F=3", train=(f, fy), test=(f[..., :2], fy))
  _bad("test inputs are features .* but train inputs are tokens", train=(x, y), test=(f, fy))
  _bad("tokens must be \\(N, L\\)", train=(x[:, :, None], y), test=(x, y))
  _bad("features must be", train=(f[..., None], fy), test=(f, fy))
  _bad("train labels: -1 at example 3", train=(x, np.where(np.arange(20) == 3, -1, y)), test=(x, y))
  _bad(
    "test labels: 7 at example 0 is outside the classes 0..2 inferred from train",
    train=(x, y),
    test=(x, np.where(np.arange(20) == 0, 7, y)),
  )
  _bad("labels: shape \\(20, 1\\)", train=(x, y[:, None]), test=(x, y))
  _bad("dtype float64; expected \\(N,\\) integers", train=(x, y.astype(float)), test=(x, y))
  _bad("a classifier needs at least 2 classes", train=(x, 0 * y), test=(x, 0 * y))
  nan = f.copy()
  nan[4, 2, 1] = np.nan
  nan[6, 0, 0] = np.inf
  _bad(
    "2 NaN or infinite values \\(first at example 4, step 2, feature 1\\)",
    train=(nan, fy),
    test=(f, fy),
  )
  _bad("token id -2 at example 0", train=(np.where(x == x[0, 0], -2, x), y), test=(x, y))
  _bad("each length must be in 1..12", train=(x, y, np.where(n == n[0], 0, n)), test=(x, y))
  _bad("no test split", train=(x, y), test=None)
  _bad("unknown option 'dev'; it takes train, val, test", train=(x, y), test=(x, y), dev=(x, y))
  with pytest.raises(data.ArrayError, match="outside data.vocab_size=3"):
    data.from_arrays(train=(x, y), test=(x, y), vocab_size=3)
  with pytest.raises(data.ArrayError, match="outside the classes data.n_classes=2"):
    data.from_arrays(train=(x, y), test=(x, y), n_classes=2)


def test_bad_files_give_one_line_errors(tmp_path):
  def bad(match, **fields):
    c = data.default_data_config("arrays")
    c.update(fields)
    with pytest.raises(data.ArrayError, match=match) as info:
      build(c)
    assert "\n" not in str(info.value)

  bad("no such file", path=str(tmp_path / "missing.npz"))
  (tmp_path / "garbage.npz").write_bytes(b"not a zip")
  bad("not a readable .npz", path=str(tmp_path / "garbage.npz"))
  x, y, _ = tokens(10)
  np.savez(tmp_path / "named.npz", train_inputs=x, train_labels=y, test_inputs=x)
  bad(
    "the test split needs arrays test_labels; the file holds test_inputs, train_inputs, "
    "train_labels",
    path=str(tmp_path / "named.npz"),
  )
  folder = tmp_path / "folder"
  folder.mkdir()
  np.savez(folder / "train.npz", inputs=x, labels=y)
  bad("no test.npz", path=str(folder))
  bad("exactly one of data.path")
  np.savez(folder / "test.npz", inputs=x, labels=y)
  bad("data.seq_len=50 but the arrays have L=12", path=str(folder), seq_len=50)
  bad(
    "data.val_fraction=0.01 of 10 training examples leaves an empty split",
    path=str(folder),
    val_fraction=0.01,
  )
  assert build(_with_path(str(folder))).num_examples == {"train": 9, "val": 1, "test": 10}


def _with_path(path):
  c = data.default_data_config("arrays")
  c.path = path
  return c


# ----------------------------------------------------------------------------
# End to end: train_and_evaluate on a file and on arrays given from Python


@pytest.fixture(scope="module")
def loop():
  from last_nnx.train import loop as loop_lib  # pylint: disable=import-outside-toplevel

  return loop_lib


def _smoke_config():
  c = get_config("s5,smoke")
  c.train.max_steps_per_epoch = 3
  c.model.n_layers = 1  # compiles faster; the arrays task end to end all the same
  return c


def test_arrays_end_to_end_from_a_file(tmp_path, loop):
  x, y = features(64, L=16, F=2)
  xt, yt = features(32, L=16, F=2, seed=1)
  path = str(tmp_path / "mine.npz")
  data.save_arrays(path, train=(x, y), val=(xt, yt), test=(xt, yt))
  c = _smoke_config()
  c.data.path = path
  c.pruning.finetune_epochs = 0  # the pruned model is evaluated, not trained (one compile less)
  summary = loop.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["task"] == "arrays" and not summary["synthetic_data"]
  assert [e["status"] for e in summary["pruning_events"]] == ["applied"]
  assert sum(summary["states_final"].values()) < sum(summary["states_initial"].values())
  assert os.path.isfile(tmp_path / "run" / "summary.json")


def test_arrays_end_to_end_from_python(tmp_path, loop):
  # The same shapes as the file test above, so its compiled steps are reused.
  x, y = features(64, L=16, F=2, seed=2)
  xt, yt = features(32, L=16, F=2, seed=3)
  c = _smoke_config()
  c.pruning.finetune_epochs = 0
  c.data = data.from_arrays(train=(x, y), test=(xt, yt), val=(xt, yt))
  summary = loop.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["task"] == "arrays" and summary["pruning_events"][0]["status"] == "applied"
  assert "accuracy" in summary["final"]["test"]
