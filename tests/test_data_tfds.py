"""data.source=tfds on TFDS's mock data (never the network): CIFAR-10, IMDB, Speech Commands."""

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data.readers import grayscale

tfds = pytest.importorskip("tensorflow_datasets")


def tfds_config(task, tmp_path, **fields):
  c = data.default_data_config(task)
  c.source = "tfds"
  c.tfds_dir = str(tmp_path / "tfds")  # empty: only the mock can answer
  c.cache_dir = str(tmp_path / "cache")
  c.update(fields)
  return c


def mock_examples(name, split, tmp_path):
  builder = tfds.builder(name, data_dir=str(tmp_path / "tfds"))
  return list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))


def test_image_from_tfds_is_grayscale_cifar(tmp_path):
  with tfds.testing.mock_data(num_examples=20):
    task = data.build_task(tfds_config("image", tmp_path), batch_size=4)
    test = mock_examples("cifar10", "test", tmp_path)
  assert task.num_examples == {"train": 18, "val": 2, "test": 20}  # val_fraction 0.1
  assert (task.seq_len, task.in_dim, task.n_classes, task.synthetic) == (1024, 1, 10, False)
  rgb = np.stack([e["image"] for e in test])  # (N, 32, 32, 3)
  planes = rgb.transpose(0, 3, 1, 2).reshape(len(rgb), 3072)
  np.testing.assert_array_equal(task.splits["test"].inputs, grayscale(planes))
  np.testing.assert_array_equal(task.splits["test"].labels, [e["label"] for e in test])
  x, lengths, _ = next(task.train_batches(0))
  assert x.shape == (4, 1024, 1) and x.dtype == np.float32 and lengths.tolist() == [1024] * 4


def test_text_from_tfds_is_bytes_plus_one(tmp_path):
  with tfds.testing.mock_data(num_examples=12):
    task = data.build_task(
      tfds_config("text", tmp_path, seq_len=64), batch_size=4, eval_batch_size=16
    )
    test = mock_examples("imdb_reviews", "test", tmp_path)
  assert task.num_examples == {"train": 12, "val": 12, "test": 12}  # val is test, as LRA
  assert (task.vocab_size, task.n_classes, task.seq_len) == (data.BYTE_VOCAB, 2, 64)
  x, lengths, labels = next(task.eval_batches("test"))
  for row, n, example in zip(x, lengths, test):
    raw = np.frombuffer(example["text"], np.uint8)[:64]
    assert n == max(1, len(raw))
    np.testing.assert_array_equal(row[: len(raw)], raw.astype(np.int32) + 1)
    assert not row[n:].any()
  np.testing.assert_array_equal(labels, [e["label"] for e in test])
  with tfds.testing.mock_data(num_examples=20):
    held = data.build_task(
      tfds_config("text", tmp_path, seq_len=64, val_fraction=0.25), batch_size=4
    )
  assert held.num_examples == {"train": 15, "val": 5, "test": 20}


def test_speech_from_tfds_is_padded_int16_audio(tmp_path):
  with tfds.testing.mock_data(num_examples=8):
    task = data.build_task(tfds_config("speech", tmp_path), batch_size=4)
    val = mock_examples("speech_commands", "validation", tmp_path)
  assert task.num_examples == {"train": 8, "val": 8, "test": 8}
  assert (task.seq_len, task.n_classes, task.vocab_size) == (16000, 12, None)  # TFDS: 12
  stored = task.splits["val"]
  assert stored.inputs.dtype == np.int16
  for row, n, example in zip(stored.inputs, stored.lengths, val):
    audio = example["audio"]
    assert n == len(audio)
    np.testing.assert_array_equal(row[:n], audio)
    assert not row[n:].any()
  x, _, _ = next(task.train_batches(0))
  assert x.shape == (4, 16000, 1) and x.dtype == np.float32  # standardized by train stats


def test_tfds_without_a_prepared_dataset_says_what_to_download(tmp_path):
  c = tfds_config("image", tmp_path, cache_real=False)
  with pytest.raises(data.DataError) as info:
    data.build_task(c, batch_size=4)
  message = str(info.value)
  assert "\n" not in message
  assert "cifar10 is not prepared under" in message and str(tmp_path / "tfds") in message
  assert "tfds build cifar10" in message and "data.tfds_dir" in message


def test_tfds_source_is_refused_where_it_does_not_apply(tmp_path):
  c = data.default_data_config("listops")
  c.source = "tfds"
  with pytest.raises(
    ValueError,
    match=r"does not apply to the listops task \(tasks it reads: "
    r"image, speech, text\)",
  ):
    data.build_task(c, batch_size=4)
  c.source = "hub"
  with pytest.raises(ValueError, match="data.source='hub'"):
    data.build_task(c, batch_size=4)
  c = tfds_config("image", tmp_path, dir="/data/lra")
  with pytest.raises(ValueError, match="keep one"):
    data.build_task(c, batch_size=4)
  c = tfds_config("image", tmp_path, splits="reference")
  with pytest.raises(ValueError, match="TFDS has its own"):
    data.build_task(c, batch_size=4)
