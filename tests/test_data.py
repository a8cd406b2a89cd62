"""Readers on tiny files in the original layouts; generators; the pipeline."""

import os
import pickle
import wave

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import listops as listops_lib
from last_nnx.data import synthetic
from last_nnx.data.readers import DataError


def _config(task, root=None, tmp_path=None, **synthetic_sizes):
  c = data.default_data_config(task)
  c.dir = None if root is None else str(root)
  c.cache_dir = str(tmp_path / "cache") if tmp_path else "/tmp/last_nnx_test_cache"
  for k, v in synthetic_sizes.items():
    c.synthetic[k] = v
  return c


def _first(task, split="train"):
  return next(task.train_batches(0)) if split == "train" else next(task.eval_batches(split))


# ----------------------------------------------------------------------------
# Fixtures in the release layouts.


def _listops_files(root, n=12):
  folder = root / "lra_release" / "lra_release" / "listops-1000"  # nested, as unpacked often is
  folder.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for name in ("train", "val", "test"):
    rows = ["Source\tTarget"]
    for _ in range(n):
      tree = listops_lib.random_tree(rng, max_depth=3, max_args=3)
      text = "( " + " ".join(listops_lib.to_tokens(tree)) + " )"
      rows.append(f"{text}\t{listops_lib.evaluate(tree)}")
    (folder / f"basic_{name}.tsv").write_text("\n".join(rows) + "\n")
  return folder


def test_listops_reader(tmp_path):
  _listops_files(tmp_path)
  task = data.build_task(_config("listops", tmp_path), batch_size=4)
  x, lengths, y = _first(task)
  assert x.shape == (4, 2048) and x.dtype == np.int32 and lengths.dtype == np.int32
  assert task.vocab_size == listops_lib.VOCAB_SIZE and task.n_classes == 10
  assert not task.synthetic and task.num_examples == {"train": 12, "val": 12, "test": 12}
  for row, length, label in zip(x, lengths, y):
    tokens = [listops_lib.VOCAB[t] for t in row[:length]]
    assert listops_lib.evaluate(listops_lib.parse(tokens)) == label
    assert np.all(row[length:] == 0)


def test_listops_bad_file_names_path(tmp_path):
  folder = _listops_files(tmp_path)
  (folder / "basic_val.tsv").write_text("Source\tTarget\n[MAX 1 2 ]\tnot-a-digit\n")
  with pytest.raises(DataError, match="basic_val.tsv:2"):
    data.build_task(_config("listops", tmp_path), batch_size=4)
  (folder / "basic_test.tsv").unlink()
  with pytest.raises(DataError, match="basic_"):
    data.build_task(_config("listops", tmp_path), batch_size=4)


def test_missing_dir_says_what_to_do(tmp_path):
  with pytest.raises(DataError, match="does not exist.*listops-1000"):
    data.build_task(_config("listops", tmp_path / "nope"), batch_size=4)
  with pytest.raises(DataError, match="not found.*aclImdb"):
    data.build_task(_config("text", tmp_path), batch_size=4)


def test_imdb_reader(tmp_path):
  for split in ("train", "test"):
    for s, word in (("pos", "great"), ("neg", "awful")):
      d = tmp_path / "aclImdb" / split / s
      d.mkdir(parents=True)
      for i in range(10):
        (d / f"{i}_7.txt").write_text(f"a {word} film number {i}")
  task = data.build_task(_config("text", tmp_path), batch_size=4)
  x, lengths, y = _first(task)
  assert x.shape == (4, 4096) and task.vocab_size == 257
  assert task.num_examples == {"train": 18, "val": 2, "test": 20}
  text = bytes(int(t) - 1 for t in x[0, :lengths[0]]).decode()
  assert ("great" in text) == (y[0] == 1)


def test_aan_reader(tmp_path):
  folder = tmp_path / "lra_release" / "tsv_data"
  folder.mkdir(parents=True)
  for suffix in ("train", "eval", "test"):
    rows = [f"{i % 2}.0\tid{i}\tjd{i}\tdoc one {i}\tdoc two {i}" for i in range(6)]
    (folder / f"new_aan_pairs.{suffix}.tsv").write_text("\n".join(rows) + "\n")
  task = data.build_task(_config("retrieval", tmp_path), batch_size=2)
  x, lengths, y = next(task.eval_batches("val"))
  assert task.retrieval and x.shape == (2, 2, 4000) and lengths.shape == (2, 2)
  assert list(y) == [0, 1] and lengths[0, 0] == len("doc one 0")
  (folder / "new_aan_pairs.test.tsv").write_text("1.0\tonly-two-fields\n")
  with pytest.raises(DataError, match="test.tsv:1: expected 5"):
    data.build_task(_config("retrieval", tmp_path), batch_size=2)


def test_cifar_reader(tmp_path):
  folder = tmp_path / "cifar-10-batches-py"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
             b"labels": list(rng.integers(0, 10, 10))}
    with open(folder / name, "wb") as f:
      pickle.dump(batch, f)
  task = data.build_task(_config("image", tmp_path), batch_size=5)
  x, lengths, y = _first(task)
  assert x.shape == (5, 1024, 1) and x.dtype == np.float32 and task.vocab_size is None
  assert task.num_examples == {"train": 45, "val": 5, "test": 10}
  (folder / "test_batch").write_bytes(b"garbage")
  with pytest.raises(DataError, match="test_batch is not a CIFAR-10"):
    data.build_task(_config("image", tmp_path), batch_size=5)


def _pathfinder_files(root, res, n=20):
  from PIL import Image
  base = root / "lra_release" / f"pathfinder{res}" / "curv_contour_length_14"
  (base / "imgs" / "0").mkdir(parents=True)
  (base / "metadata").mkdir()
  lines = []
  for i in range(n):
    Image.fromarray(np.full((res, res), i * 10 % 255, np.uint8)).save(
        base / "imgs" / "0" / f"sample_{i}.png")
    lines.append(f"imgs/0 sample_{i}.png {i} {i % 2} 0 0")
  (base / "metadata" / "0.npy").write_text("\n".join(lines) + "\n")
  return base


@pytest.mark.parametrize("task_name,res", [("pathfinder", 32), ("pathx", 128)])
def test_pathfinder_reader(tmp_path, task_name, res):
  base = _pathfinder_files(tmp_path, res)
  task = data.build_task(_config(task_name, tmp_path), batch_size=4)
  x, lengths, y = next(task.eval_batches("val"))
  assert x.shape == (2, res * res, 1) and task.num_examples == {"train": 16, "val": 2, "test": 2}
  assert list(y) == [0, 1] and np.all(lengths == res * res)
  (base / "imgs" / "0" / "sample_3.png").unlink()
  with pytest.raises(DataError, match="sample_3.png listed in"):
    data.build_task(_config(task_name, tmp_path), batch_size=4)


def test_speech_reader(tmp_path):
  base = tmp_path / "speech_commands_v0.02"
  for word in ("no", "yes"):
    (base / word).mkdir(parents=True)
    for i in range(4):
      with wave.open(str(base / word / f"f{i}.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.ones(800 + i) * (1000 if word == "yes" else -1000)).astype(np.int16))
  (base / "_background_noise_").mkdir()
  (base / "validation_list.txt").write_text("no/f0.wav\nyes/f0.wav\n")
  (base / "testing_list.txt").write_text("no/f1.wav\nyes/f1.wav\n")
  task = data.build_task(_config("speech", tmp_path), batch_size=2)
  assert task.n_classes == 2 and task.num_examples == {"train": 4, "val": 2, "test": 2}
  x, lengths, y = next(task.eval_batches("test"))
  assert x.shape == (2, 16000, 1) and list(y) == [0, 1]
  assert x[1, 0, 0] > 0 > x[0, 0, 0] and x[0, 900, 0] == 0  # padded after the clip
  (base / "yes" / "f3.wav").write_bytes(b"RIFFjunk")
  with pytest.raises(DataError, match="f3.wav is not a readable wav"):
    data.build_task(_config("speech", tmp_path), batch_size=2)


# ----------------------------------------------------------------------------
# Synthetic generators and the pipeline.


@pytest.mark.parametrize("task_name", data.TASKS)
def test_synthetic_is_deterministic_balanced_and_announced(task_name, tmp_path, caplog):
  sizes = dict(n_train=40, n_val=20, n_test=20)
  c = _config(task_name, tmp_path=tmp_path, **sizes)
  if task_name == "listops":
    c.seq_len, c.synthetic.max_length = 128, 128
  if task_name in ("pathfinder", "pathx"):
    c.resolution = 16
  if task_name == "speech":
    c.seq_len = 800
  a = data.build_task(c, batch_size=8, seed=1)
  b = data.build_task(c, batch_size=8, seed=1)  # from the cache
  c2 = data.build_task(c, batch_size=8, seed=2)
  assert a.synthetic and "no data.dir given: using synthetic" in caplog.text
  np.testing.assert_array_equal(a.splits["train"].inputs, b.splits["train"].inputs)
  assert not np.array_equal(a.splits["train"].inputs, c2.splits["train"].inputs)
  counts = np.bincount(a.splits["train"].labels, minlength=a.n_classes)
  assert counts.max() - counts.min() <= 1, counts


def test_synthetic_listops_labels_are_right():
  split = synthetic.listops(50, 128, np.random.default_rng(0), max_depth=3, max_args=3,
                            min_length=4, max_length=128)
  for row, length, label in zip(split.inputs, split.lengths, split.labels):
    tree = listops_lib.parse([listops_lib.VOCAB[t] for t in row[:length]])
    assert listops_lib.evaluate(tree) == label


def test_resume_position_and_shuffling(tmp_path):
  c = _config("listops", tmp_path=tmp_path, n_train=64, n_val=8, n_test=8)
  c.seq_len, c.synthetic.max_length = 64, 64
  task = data.build_task(c, batch_size=8, seed=0)
  full = [b[2] for b in task.train_batches(3)]
  assert len(full) == task.steps_per_epoch == 8
  resumed = [b[2] for b in task.train_batches(3, start_step=5)]
  assert len(resumed) == 3 and all(np.array_equal(a, b) for a, b in zip(full[5:], resumed))
  other = [b[2] for b in task.train_batches(4)]
  assert not all(np.array_equal(a, b) for a, b in zip(full, other))  # reshuffled per epoch


def test_process_shards_are_disjoint(tmp_path):
  c = _config("image", tmp_path=tmp_path, n_train=40, n_val=10, n_test=10)
  seen = []
  for i in range(2):
    task = data.build_task(c, batch_size=5, process_index=i, process_count=2)
    rows = np.concatenate([b[0][:, :, 0] for b in task.eval_batches("test")])
    seen.append({r.tobytes() for r in rows})
    assert len(rows) == 5
  assert not seen[0] & seen[1]


def test_too_small_train_split_is_a_clear_error(tmp_path):
  c = _config("text", tmp_path=tmp_path, n_train=4, n_val=2, n_test=2)
  c.seq_len = 64
  with pytest.raises(ValueError, match="lower train.batch_size"):
    data.build_task(c, batch_size=8)


def test_checker_finds_nested_layout_and_reports_missing(tmp_path):
  from last_nnx.data import check
  _listops_files(tmp_path, n=5)
  counts, problems = check.count("listops", str(tmp_path), "curv_contour_length_14")
  assert counts == {"train": 5, "val": 5, "test": 5}
  assert any("train: 5 examples, the release has 96000" in p for p in problems)
  _pathfinder_files(tmp_path, 128, n=4)
  counts, problems = check.count("pathx", str(tmp_path), "curv_contour_length_14")
  assert counts["total"] == 4 and problems
  with pytest.raises(DataError, match="pathfinder32"):
    check.count("pathfinder", str(tmp_path), "curv_contour_length_14")


def _learn(task_name, tmp_path, **overrides):
  """Trains the small S5 of the smoke preset a little longer; returns test accuracy."""
  from last_nnx.train import loop
  from tests.test_train_loop import get_config
  config = get_config(task_name, "s5,smoke")
  config.data.cache_dir = str(tmp_path / "cache")
  config.pruning.schedule = "none"
  config.train.max_steps_per_epoch = 0
  config.train.eval_test = True
  for key, value in overrides.items():
    section, field = key.split(".", 1)
    if "." in field:
      sub, leaf = field.split(".")
      config[section][sub][leaf] = value
    else:
      config[section][field] = value
  return loop.train_and_evaluate(config, str(tmp_path / "run"))["final"]["test"]["accuracy"]


@pytest.mark.slow
def test_small_model_learns_synthetic_listops(tmp_path):
  acc = _learn("listops", tmp_path, **{
      "data.synthetic.n_train": 4000, "data.synthetic.n_val": 500, "data.synthetic.n_test": 500,
      "model.d_model": 64, "model.n_layers": 4, "model.ssm_config.state_size": 32,
      "train.epochs": 6, "train.batch_size": 32})
  assert acc > 0.16, acc  # chance is 0.10


@pytest.mark.slow
def test_small_model_learns_synthetic_pathfinder32(tmp_path):
  acc = _learn("pathfinder", tmp_path, **{
      "data.resolution": 32, "data.synthetic.n_train": 4000, "data.synthetic.n_val": 400,
      "data.synthetic.n_test": 400, "model.d_model": 64, "model.n_layers": 4,
      "model.ssm_config.state_size": 32, "train.epochs": 8, "train.batch_size": 32})
  assert acc > 0.6, acc  # chance is 0.5
