"""The digits task: scikit-learn's embedded handwritten digits as pixel sequences."""

import os
import subprocess
import sys

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import digits
from tests.test_train_loop import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def task():
  return data.build_task(data.default_data_config("digits"), batch_size=32, eval_batch_size=100)


def test_digits_splits_cover_every_image_once(task):
  assert task.num_examples == {"train": 1200, "val": 297, "test": 300}
  assert (task.seq_len, task.in_dim, task.vocab_size, task.n_classes) == (64, 1, None, 10)
  assert not task.synthetic and not task.retrieval
  x, y = digits.load_images()
  # The three splits together are the 1797 images, each exactly once (as a multiset
  # of (image, label) rows: the release has a few duplicate images).
  rows = lambda a, b: sorted(map(bytes, np.concatenate([a, b[:, None]], 1).astype(np.uint8)))
  together = np.concatenate([np.asarray(task.splits[s].inputs) for s in data.SPLITS])
  labels = np.concatenate([np.asarray(task.splits[s].labels) for s in data.SPLITS])
  assert rows(together, labels) == rows(x, y)
  for s in data.SPLITS:  # every class in every split
    assert set(np.asarray(task.splits[s].labels)) == set(range(10))


def test_digits_split_is_fixed_by_split_seed(task):
  again = data.build_task(data.default_data_config("digits"), batch_size=32)
  np.testing.assert_array_equal(again.splits["test"].inputs, task.splits["test"].inputs)
  c = data.default_data_config("digits")
  c.split_seed = 7
  other = data.build_task(c, batch_size=32)
  assert not np.array_equal(other.splits["test"].labels, task.splits["test"].labels)


def test_digits_batches_are_standardized_pixel_sequences(task):
  x, lengths, y = next(task.train_batches(0))
  assert x.shape == (32, 64, 1) and x.dtype == np.float32
  assert lengths.tolist() == [64] * 32 and y.dtype == np.int32
  # Row-major pixels: step 8 * r + c is pixel (r, c); 0..16 standardized by the set's stats.
  raw = (x[..., 0] * digits.ENCODING.std + digits.ENCODING.mean).round()
  assert raw.min() >= 0 and raw.max() <= 16
  everything = np.concatenate([b[0] for b in task.eval_batches("test")])
  assert abs(everything.mean()) < 0.15 and 0.85 < everything.std() < 1.15


def test_digits_rejects_other_lengths_and_bad_sizes():
  c = data.default_data_config("digits")
  c.seq_len = 128
  with pytest.raises(ValueError, match="L is 64"):
    data.build_task(c, batch_size=8)
  c = data.default_data_config("digits")
  c.n_test = 1700
  with pytest.raises(ValueError, match="fewer than the 1797 images"):
    data.build_task(c, batch_size=8)
  assert data.effective_seq_len(data.default_data_config("digits")) == 64


@pytest.mark.parametrize("arg", ["s5", "s4d", "lru", "s5,smoke", "s4d,demo"])
def test_digits_configs(arg):
  from last_nnx.train import loop  # pylint: disable=import-outside-toplevel

  c = get_config("digits", arg)
  loop.validate_config(c)
  assert c.task == c.data.task == "digits"
  assert c.model.ssm == arg.split(",")[0]
  assert c.model.ssm_config.bidirectional is False  # causal: read like a stream
  if arg == "s5":  # the measured recipe of `make train TASK=digits`
    assert (c.model.n_layers, c.model.d_model, c.model.ssm_config.state_size) == (4, 64, 32)
    assert c.train.epochs == 30 and c.pruning.schedule == "iterative"
    assert c.optim.ssm_lr * c.optim.lr_factor == pytest.approx(4e-3)
  if arg.startswith(("s4d", "lru")):
    assert c.model.ssm_config.state_size == 32


def test_importing_last_nnx_imports_neither_sklearn_nor_tfds():
  # (TensorFlow's bundled Keras imports scikit-learn when it is installed, so the loop,
  # which imports TensorFlow through CLU, is only checked for TFDS.)
  code = (
    "import sys, last_nnx, last_nnx.data; "
    "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', "
    "'tensorflow_datasets'})); import last_nnx.train.loop; "
    "print('tensorflow_datasets' in sys.modules)"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
  )
  assert out.stdout.split() == ["[]", "False"]


@pytest.mark.slow
def test_make_train_digits_recipe_reaches_95_percent(tmp_path):
  """The default digits run (what `make train TASK=digits` runs), end to end: dense test
  accuracy >= 95% and a pruned model in the summary (about 2 min on 2 cores)."""
  from last_nnx.train import loop  # pylint: disable=import-outside-toplevel

  summary = loop.train_and_evaluate(get_config("digits", "s5"), str(tmp_path))
  assert not summary["synthetic_data"]
  assert summary["before_first_event"]["test"]["accuracy"] >= 0.95
  assert summary["ratio_achieved"] == pytest.approx(0.5, abs=0.05)
  assert summary["final"]["test"]["accuracy"] >= 0.90
