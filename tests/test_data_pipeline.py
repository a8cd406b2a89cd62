"""Synthetic generators, the cache, and the batching pipeline (order, resume, shards)."""

import functools
import time

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import listops as listops_lib
from last_nnx.data import synthetic

# Small but real sizes: what the smoke presets use.
SMALL = {"listops": 128, "text": 256, "retrieval": 256, "speech": 1000, "image": 1024}


def small_config(task, tmp_path, n_train=40, n_val=20, n_test=20, **knobs):
  c = data.default_data_config(task)
  c.cache_dir = str(tmp_path / "cache")
  if "resolution" in c:
    c.resolution = 16
  else:
    c.seq_len = SMALL[task]
  if task == "listops":
    c.synthetic.max_length = c.seq_len
  c.synthetic.update(dict(n_train=n_train, n_val=n_val, n_test=n_test, **knobs))
  return c


def arrays(task, split):
  s = task.splits[split]
  return np.asarray(s.inputs), np.asarray(s.lengths), np.asarray(s.labels)


# ----------------------------------------------------------------------------
# Generators


@pytest.mark.parametrize("task_name", data.TASKS)
def test_synthetic_task_shapes_dtypes_and_announcement(task_name, tmp_path, caplog):
  task = data.build_task(small_config(task_name, tmp_path), batch_size=8)
  assert task.synthetic and "no data.dir given: using synthetic" in caplog.text
  assert "not LRA results" in caplog.text or "not Speech Commands results" in caplog.text
  x, lengths, y = next(task.train_batches(0))
  L = task.seq_len
  if task.vocab_size:
    assert x.dtype == np.int32 and x.min() >= 0 and x.max() < task.vocab_size
    assert x.shape == ((8, 2, L) if task.retrieval else (8, L))
  else:
    assert x.dtype == np.float32 and x.shape == (8, L, task.in_dim)
    assert abs(float(x.mean())) < 3 and 0.05 < float(x.std()) < 5  # standardized
  assert lengths.dtype == np.int32 and lengths.shape == ((8, 2) if task.retrieval else (8,))
  assert lengths.min() >= 1 and lengths.max() <= L
  assert y.dtype == np.int32 and y.shape == (8,) and 0 <= y.min() and y.max() < task.n_classes
  if task.vocab_size:  # padding exactly after the true length
    rows, lens = x.reshape(-1, L), lengths.reshape(-1)
    assert all(np.all(r[:n] > 0) and np.all(r[n:] == 0) for r, n in zip(rows, lens))


@pytest.mark.parametrize("task_name", data.TASKS)
def test_synthetic_same_seed_same_data_other_seed_other_data_balanced(task_name, tmp_path):
  c = small_config(task_name, tmp_path)
  a = data.build_task(c, batch_size=8)
  c_fresh = small_config(task_name, tmp_path / "fresh")  # regenerated, not from a cache
  b = data.build_task(c_fresh, batch_size=8, seed=5)  # the training seed does not matter
  c.synthetic.seed = 1
  other = data.build_task(c, batch_size=8)
  for split in ("train", "val", "test"):
    for x, y in zip(arrays(a, split), arrays(b, split)):
      np.testing.assert_array_equal(x, y)
  assert not np.array_equal(arrays(a, "train")[0], arrays(other, "train")[0])
  for split in ("train", "val", "test"):
    counts = np.bincount(arrays(a, split)[2], minlength=a.n_classes)
    assert counts.max() - counts.min() <= 1, (split, counts)
  assert not np.array_equal(arrays(a, "train")[0][:20], arrays(a, "val")[0][:20])


def test_synthetic_listops_answers_are_the_values():
  split = synthetic.listops(
    100, 128, np.random.default_rng(0), max_depth=6, max_args=5, min_length=8, max_length=128
  )
  assert np.bincount(split.labels).tolist() == [10] * 10
  for row, length, label in zip(split.inputs, split.lengths, split.labels):
    assert 8 < length < 128
    assert listops_lib.evaluate([listops_lib.VOCAB[t] for t in row[:length]]) == label


def test_listops_grammar():
  ev = lambda s: listops_lib.evaluate(listops_lib.tokenize(s))
  assert ev("( ( ( [MAX 2 ) 9 ) ] )") == 9
  assert ev("[MED 1 2 7 9 ]") == 4 and ev("[MED 3 1 2 ]") == 2
  assert ev("[SM 9 8 [MIN 4 7 ] ]") == 1
  for bad in ("[MAX 1 2", "[MAX ] ", "1 2", "[FIRST 1 ]"):
    with pytest.raises(ValueError):
      ev(bad)


def test_synthetic_text_label_is_majority_sentiment():
  split = synthetic.text(50, 400, np.random.default_rng(0))
  for row, length, label in zip(split.inputs, split.lengths, split.labels):
    words = bytes(row[:length]).split(b" ")
    pos = sum(w in synthetic.POSITIVE_WORDS for w in words)
    neg = sum(w in synthetic.NEGATIVE_WORDS for w in words)
    assert (pos > neg) == bool(label) and pos != neg
    assert row[length - 1] != ord(" ") and np.all(row[length:] == 0)


def test_synthetic_retrieval_label_is_a_shared_motif():
  split = synthetic.retrieval(40, 64, np.random.default_rng(0))
  motif = lambda doc: bytes(c for c in doc if chr(c).isupper() or chr(c).isdigit())
  for pair, length, label in zip(split.inputs, split.lengths, split.labels):
    a, b = motif(pair[0, : length[0]]), motif(pair[1, : length[1]])
    assert len(a) == len(b) == 8 and (a == b) == bool(label)


def test_synthetic_pathfinder_markers_and_ink():
  res = 32
  split = synthetic.pathfinder(200, res * res, np.random.default_rng(0))
  assert split.inputs.dtype == np.uint8 and set(np.unique(split.inputs)) <= {0, 255}
  ink = (split.inputs > 0).mean(axis=1)
  # Both classes draw two long contours: the amount of ink does not give the label away.
  assert abs(ink[split.labels == 1].mean() - ink[split.labels == 0].mean()) < 0.01


@pytest.mark.parametrize("res", [16, 32, 64, 128, 256])
def test_synthetic_pathfinder_resolutions_are_fast(res):
  start = time.perf_counter()
  split = synthetic.pathfinder(64, res * res, np.random.default_rng(0))
  assert split.inputs.shape == (64, res * res) and time.perf_counter() - start < 2


def test_smoke_sizes_generate_in_seconds(tmp_path):
  start = time.perf_counter()
  for task_name in data.TASKS:
    data.build_task(small_config(task_name, tmp_path, 128, 64, 64), batch_size=16)
  assert time.perf_counter() - start < 15


def test_listops_min_length_follows_a_short_sequence(tmp_path, caplog):
  c = small_config("listops", tmp_path)  # default min_length 500 > L = 128
  split = data.build_task(c, batch_size=8).splits["train"]
  assert np.asarray(split.lengths).min() > 128 // 4


def test_unknown_synthetic_knob_is_named(tmp_path):
  c = small_config("image", tmp_path)
  c.synthetic.sharpness = 3
  with pytest.raises(ValueError, match="sharpness"):
    data.build_task(c, batch_size=8)


def test_generation_is_cached(tmp_path, monkeypatch):
  c = small_config("pathfinder", tmp_path)
  data.build_task(c, batch_size=8)

  def fail(*args, **kwargs):
    raise ZeroDivisionError

  functools.update_wrapper(fail, synthetic.pathfinder)  # same knobs
  monkeypatch.setitem(synthetic.GENERATORS, "pathfinder", fail)
  data.build_task(c, batch_size=8)  # no generation
  c.synthetic.n_train = 48  # another knob value: another cache entry
  with pytest.raises(ZeroDivisionError):
    data.build_task(c, batch_size=8)


def test_default_configs_are_overridable_plain_configdicts():
  for task in data.TASKS:
    c = data.default_data_config(task)
    assert c.task == task and c.dir is None and c.seq_len > 0
    assert {"n_train", "n_val", "n_test", "seed"} <= set(c.synthetic)
    c.dir = "/data/lra_release"  # placeholder accepts a string
  c = data.default_data_config("pathx")
  assert (c.resolution, c.seq_len, c.variant) == (128, 16384, "curv_contour_length_14")
  with pytest.raises(ValueError, match="unknown data task"):
    data.default_data_config("mnist")


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
  monkeypatch.setenv("LAST_NNX_CACHE", str(tmp_path))
  assert data.default_data_config("text").cache_dir == str(tmp_path)


# ----------------------------------------------------------------------------
# The pipeline


def labels_of(batches):
  return [b[2] for b in batches]


def test_epochs_reshuffle_and_resume_exactly(tmp_path):
  task = data.build_task(small_config("listops", tmp_path, n_train=70), batch_size=8)
  assert task.steps_per_epoch == 8  # 70 // 8, remainder dropped
  full = list(task.train_batches(3))
  assert len(full) == 8 and all(b[0].shape[0] == 8 for b in full)
  again = list(task.train_batches(3))
  for k in (0, 5, 8):
    resumed = list(task.train_batches(3, start_step=k))
    assert len(resumed) == 8 - k
    for a, b in zip(full[k:], resumed):
      for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
  for a, b in zip(full, again):
    np.testing.assert_array_equal(a[0], b[0])
  other = np.concatenate([b[0] for b in task.train_batches(4)])
  assert not np.array_equal(np.concatenate([b[0] for b in full]), other)
  assert sorted(task.epoch_order(3).tolist()) == list(range(70))  # a permutation
  with pytest.raises(ValueError, match="start_step"):
    task.train_batches(3, start_step=9)


def test_training_order_depends_on_the_seed_only(tmp_path):
  c = small_config("image", tmp_path)
  a, b = (data.build_task(c, batch_size=8, seed=s) for s in (0, 1))
  assert not np.array_equal(a.epoch_order(0), b.epoch_order(0))
  np.testing.assert_array_equal(
    a.epoch_order(0), data.build_task(c, batch_size=4, seed=0).epoch_order(0)
  )


def test_eval_keeps_order_and_the_remainder(tmp_path):
  task = data.build_task(small_config("text", tmp_path, n_val=21), batch_size=8, eval_batch_size=5)
  batches = list(task.eval_batches("val"))
  assert [len(b[2]) for b in batches] == [5, 5, 5, 5, 1]
  x = np.concatenate([b[0] for b in batches])
  stored, lengths, labels = arrays(task, "val")
  np.testing.assert_array_equal(x, task.encoding(stored, lengths))
  np.testing.assert_array_equal(np.concatenate([b[2] for b in batches]), labels)
  with pytest.raises(ValueError, match="'val' or 'test'"):
    task.eval_batches("train")


def test_process_shards_are_disjoint_and_cover_the_data(tmp_path):
  c = small_config("image", tmp_path, n_train=43, n_val=11, n_test=10)
  tasks = [data.build_task(c, batch_size=5, process_index=i, process_count=3) for i in range(3)]
  assert {t.steps_per_epoch for t in tasks} == {2}  # 43 // 3 = 14 each -> 2 batches of 5
  key = lambda rows: {r.tobytes() for r in rows}
  for split, n in (("val", 11), ("test", 10)):
    parts = [key(np.concatenate([b[0] for b in t.eval_batches(split)])) for t in tasks]
    assert sum(map(len, parts)) == n and len(set.union(*parts)) == n
  train = [np.concatenate([b[0] for b in t.train_batches(2)]) for t in tasks]
  assert [len(t) for t in train] == [10, 10, 10]
  parts = [key(t) for t in train]
  assert len(set.union(*parts)) == 30
  # The union of the processes' k-th batches is the k-th global batch of one process.
  single = data.build_task(c, batch_size=15)
  first_global = key(next(single.train_batches(2))[0])
  assert first_global == set.union(*(key(next(t.train_batches(2))[0]) for t in tasks))


def test_too_small_train_split_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="lower train.batch_size or raise data.synthetic.n_train"):
    data.build_task(small_config("text", tmp_path, n_train=4), batch_size=8)


def test_importing_the_package_does_not_import_tensorflow():
  import subprocess
  import sys

  code = "import sys, last_nnx.data, last_nnx.cli.check_data; print('tensorflow' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_prefetch_autotunes_only_on_larger_hosts_and_batches_do_not_change(tmp_path, monkeypatch):
  from last_nnx.data import pipeline

  assert not pipeline.autotune_prefetch(2) and pipeline.autotune_prefetch(16)
  task = data.build_task(small_config("listops", tmp_path), batch_size=8)
  batches = {}
  for cores in (2, 16):  # fixed buffer of 2, then tf.data's autotuned buffer
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda cores=cores: cores)
    batches[cores] = list(task.train_batches(1)) + list(task.eval_batches("val"))
  assert len(batches[2]) == len(batches[16]) == task.steps_per_epoch + 3
  for a, b in zip(batches[2], batches[16]):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
