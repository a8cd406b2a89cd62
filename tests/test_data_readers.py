"""Readers on tiny files in the original release layouts, built in tmp_path.

The fixture builders here are reused by test_data_check.py.
"""

import pickle
import wave

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import listops as listops_lib
from last_nnx.data import pathfinder_speech, readers, synthetic
from last_nnx.data.layout import DataError


def config(task, root, tmp_path, **fields):
  """The task's data config pointed at ``root``, caching off unless asked for."""
  c = data.default_data_config(task)
  c.dir = str(root)
  c.cache_dir = str(tmp_path / "cache")
  c.cache_real = False
  for k, v in fields.items():
    c[k] = v
  return c


def first_train(task):
  return next(task.train_batches(0))


def all_eval(task, split):
  return [np.concatenate(parts) for parts in zip(*task.eval_batches(split))]


# ----------------------------------------------------------------------------
# Builders of the release layouts.


def lra_source(tokens: list[str]) -> str:
  """Tokens -> the LRA file notation: every operator application curried in parentheses,
  e.g. ``[MAX 2 9 ]`` -> ``( ( ( [MAX 2 ) 9 ) ] )``."""

  def expr(i):
    if tokens[i] not in listops_lib.OPERATORS:
      return tokens[i], i + 1
    text, i = tokens[i], i + 1
    while tokens[i] != "]":
      arg, i = expr(i)
      text = f"( {text} {arg} )"
    return f"( {text} ] )", i + 1

  return expr(0)[0]


def make_listops(root, n=12, seed=0):
  """``root/lra_release/lra_release/listops-1000/basic_*.tsv`` (nested twice, as the
  archive often unpacks); returns the folder."""
  folder = root / "lra_release" / "lra_release" / "listops-1000"
  folder.mkdir(parents=True)
  for i, name in enumerate(("train", "val", "test")):
    split = synthetic.listops(
      n, 64, np.random.default_rng([seed, i]), max_depth=4, max_args=4, min_length=4, max_length=64
    )
    rows = ["Source\tTarget"]
    for ids, length, label in zip(split.inputs, split.lengths, split.labels):
      rows.append(f"{lra_source([listops_lib.VOCAB[t] for t in ids[:length]])}\t{label}")
    (folder / f"basic_{name}.tsv").write_text("\n".join(rows) + "\n")
  return folder


def make_imdb(root, n=10):
  """``root/aclImdb/{train,test}/{pos,neg}/<i>_<stars>.txt``; positives say 'great'."""
  for split in ("train", "test"):
    for sentiment, word in (("pos", "great"), ("neg", "awful")):
      folder = root / "aclImdb" / split / sentiment
      folder.mkdir(parents=True)
      for i in range(n):
        (folder / f"{i}_{8 if sentiment == 'pos' else 2}.txt").write_text(
          f"A {word} film, number {i}. " * (1 + i)
        )
  (root / "aclImdb" / "train" / "unsup").mkdir()  # present in the archive, unused
  return root / "aclImdb"


def make_aan(root, n=6):
  """``root/lra_release/tsv_data/new_aan_pairs.{train,eval,test}.tsv`` (no header)."""
  folder = root / "lra_release" / "tsv_data"
  folder.mkdir(parents=True)
  for suffix in ("train", "eval", "test"):
    rows = [
      f"{i % 2}.0\tP{i}-a\tP{i}-b\tfirst paper {i}\tsecond paper {i} " + "x" * i for i in range(n)
    ]
    (folder / f"new_aan_pairs.{suffix}.tsv").write_text("\n".join(rows) + "\n")
  return folder


def make_cifar(root, n=10):
  """``root/cifar-10-batches-py/{data_batch_1..5,test_batch}`` pickled like the archive."""
  folder = root / "cifar-10-batches-py"
  folder.mkdir()
  rng = np.random.default_rng(0)
  for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {
      b"batch_label": name.encode(),
      b"labels": [int(v) for v in rng.integers(0, 10, n)],
      b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
      b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with open(folder / name, "wb") as f:
      pickle.dump(batch, f)
  (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": []}))
  return folder


def make_pathfinder(root, res, n_files=3, per_file=10, variant="curv_contour_length_14"):
  """``root/lra_release/pathfinder<res>/<variant>/{imgs/<k>/sample_<i>.png, metadata/<k>.npy}``.

  Image ``k, i`` is filled with gray level ``10 * k + i`` and labelled ``i % 2``;
  metadata files are numbered 0, 2, 10, ... so only a numeric sort orders them.
  """
  from PIL import Image

  base = root / "lra_release" / f"pathfinder{res}" / variant
  (base / "metadata").mkdir(parents=True)
  for k in [0, 2, 10][:n_files]:
    (base / "imgs" / str(k)).mkdir(parents=True)
    lines = []
    for i in range(per_file):
      Image.fromarray(np.full((res, res), 10 * k + i, np.uint8)).save(
        base / "imgs" / str(k) / f"sample_{i}.png"
      )
      lines.append(f"imgs/{k} sample_{i}.png {i} {i % 2} 3 14 0.5")
    (base / "metadata" / f"{k}.npy").write_text("\n".join(lines) + "\n")
  return base


def write_wav(path, samples, rate=16000, width=2):
  with wave.open(str(path), "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(width)
    w.setframerate(rate)
    w.writeframes(np.asarray(samples, "<i2" if width == 2 else np.uint8).tobytes())


def make_speech(root, per_word=3):
  """``root/speech_commands_v0.02/<word>/<id>_nohash_<i>.wav`` for the 35 words; file 0 of
  every word is in the validation list, file 1 in the testing list. Clip ``i`` of word
  ``w`` is a constant ``100 * (w + 1)`` lasting ``8000 + i`` samples."""
  base = root / "speech_commands_v0.02"
  val, test = [], []
  for w, word in enumerate(pathfinder_speech.SPEECH_WORDS):
    (base / word).mkdir(parents=True)
    for i in range(per_word):
      name = f"{w:08x}_nohash_{i}.wav"
      write_wav(base / word / name, np.full(8000 + i, 100 * (w + 1)))
      (val if i == 0 else test if i == 1 else []).append(f"{word}/{name}")
  (base / "_background_noise_").mkdir()
  write_wav(base / "_background_noise_" / "white_noise.wav", np.zeros(100))
  (base / "validation_list.txt").write_text("\n".join(val) + "\n")
  (base / "testing_list.txt").write_text("\n".join(test) + "\n")
  (base / "LICENSE").write_text("CC-BY-4.0\n")
  return base


# ----------------------------------------------------------------------------
# ListOps


def test_listops_reads_lra_files(tmp_path):
  make_listops(tmp_path)
  task = data.build_task(config("listops", tmp_path, tmp_path), batch_size=4)
  x, lengths, y = first_train(task)
  assert x.shape == (4, 2048) and x.dtype == np.int32
  assert lengths.dtype == np.int32 and y.dtype == np.int32
  assert task.vocab_size == 16 and task.n_classes == 10 and not task.synthetic
  assert task.num_examples == {"train": 12, "val": 12, "test": 12}
  for row, length, label in zip(x, lengths, y):
    assert listops_lib.evaluate([listops_lib.VOCAB[t] for t in row[:length]]) == label
    assert np.all(row[length:] == 0) and np.all(row[:length] > 0)


def test_listops_bad_token_label_and_header_name_the_line(tmp_path):
  folder = make_listops(tmp_path)
  c = config("listops", tmp_path, tmp_path)
  (folder / "basic_val.tsv").write_text("Source\tTarget\n( [MAX 1 2 ] )\t2\n[MAX 1 ? ]\t1\n")
  with pytest.raises(DataError, match=r"basic_val.tsv:3: unknown token '\?'.*expects"):
    data.build_task(c, batch_size=4)
  (folder / "basic_val.tsv").write_text("Source\tTarget\n[MAX 1 2 ]\tten\n")
  with pytest.raises(DataError, match=r"basic_val.tsv:2: label b'ten' is not an integer"):
    data.build_task(c, batch_size=4)
  (folder / "basic_val.tsv").write_text("[MAX 1 2 ]\t2\n")
  with pytest.raises(DataError, match=r"basic_val.tsv:1: expected the header"):
    data.build_task(c, batch_size=4)


def test_listops_missing_split_file(tmp_path):
  folder = make_listops(tmp_path)
  (folder / "basic_test.tsv").unlink()
  with pytest.raises(DataError, match=r"basic_test.tsv: missing file.*listops-1000/basic_"):
    data.build_task(config("listops", tmp_path, tmp_path), batch_size=4)


def test_missing_or_wrong_data_dir_says_what_to_do(tmp_path):
  with pytest.raises(DataError, match=r"nope: data.dir does not exist.*lra_release"):
    data.build_task(config("listops", tmp_path / "nope", tmp_path), batch_size=4)
  make_imdb(tmp_path)  # a folder with some other dataset
  with pytest.raises(DataError, match=r"no basic_train.tsv found.*download lra_release"):
    data.build_task(config("listops", tmp_path, tmp_path), batch_size=4)


# ----------------------------------------------------------------------------
# IMDB


def test_imdb_reads_review_folders_val_is_test(tmp_path):
  make_imdb(tmp_path)
  task = data.build_task(config("text", tmp_path, tmp_path, seq_len=64), batch_size=4)
  assert task.vocab_size == 257 and task.n_classes == 2
  assert task.num_examples == {"train": 20, "val": 20, "test": 20}
  x, lengths, y = all_eval(task, "test")
  assert x.shape == (20, 64) and x.dtype == np.int32
  for row, length, label in zip(x, lengths, y):
    text = bytes(int(t) - 1 for t in row[:length]).decode()
    assert text.startswith("A great" if label == 1 else "A awful")
    assert np.all(row[length:] == 0)
  assert lengths.max() == 64  # long reviews are cut at L
  assert lengths.min() == len("A awful film, number 0. ")


def test_imdb_val_fraction_holds_out_train(tmp_path):
  make_imdb(tmp_path)
  task = data.build_task(
    config("text", tmp_path, tmp_path, seq_len=64, val_fraction=0.2), batch_size=4
  )
  assert task.num_examples == {"train": 16, "val": 4, "test": 20}


def test_imdb_wrong_layout(tmp_path):
  base = make_imdb(tmp_path)
  for f in (base / "test" / "neg").iterdir():
    f.unlink()
  with pytest.raises(DataError, match=r"test/neg: no reviews.*aclImdb/\{train,test\}"):
    data.build_task(config("text", tmp_path, tmp_path), batch_size=4)
  (base / "test" / "neg").rmdir()
  with pytest.raises(DataError, match=r"test/neg: missing folder"):
    data.build_task(config("text", tmp_path, tmp_path), batch_size=4)


# ----------------------------------------------------------------------------
# AAN


def test_aan_reads_pairs(tmp_path):
  make_aan(tmp_path)
  task = data.build_task(config("retrieval", tmp_path, tmp_path), batch_size=2)
  assert task.retrieval and task.vocab_size == 257
  x, lengths, y = all_eval(task, "val")
  assert x.shape == (6, 2, 4000) and lengths.shape == (6, 2) and x.dtype == np.int32
  assert list(y) == [0, 1, 0, 1, 0, 1]
  assert list(lengths[:, 0]) == [len(f"first paper {i}") for i in range(6)]
  assert list(lengths[:, 1]) == [len(f"second paper {i} ") + i for i in range(6)]
  assert bytes(int(t) - 1 for t in x[3, 1, : lengths[3, 1]]) == b"second paper 3 xxx"


def test_aan_short_row_and_bad_label(tmp_path):
  folder = make_aan(tmp_path)
  (folder / "new_aan_pairs.test.tsv").write_text("1.0\tonly\tthree\n")
  with pytest.raises(DataError, match=r"new_aan_pairs.test.tsv:1: expected 5 tab-separated"):
    data.build_task(config("retrieval", tmp_path, tmp_path), batch_size=2)
  (folder / "new_aan_pairs.test.tsv").write_text("2.0\ta\tb\tc\td\n")
  with pytest.raises(DataError, match=r"test.tsv:1: label b'2.0' is not an integer in 0..1"):
    data.build_task(config("retrieval", tmp_path, tmp_path), batch_size=2)


# ----------------------------------------------------------------------------
# CIFAR-10


def test_cifar_grayscale_sequences(tmp_path):
  folder = make_cifar(tmp_path)
  task = data.build_task(config("image", tmp_path, tmp_path), batch_size=5)
  assert task.vocab_size is None and task.in_dim == 1 and task.n_classes == 10
  assert task.num_examples == {"train": 45, "val": 5, "test": 10}
  x, lengths, y = all_eval(task, "test")
  assert x.shape == (10, 1024, 1) and x.dtype == np.float32 and np.all(lengths == 1024)
  with open(folder / "test_batch", "rb") as f:
    raw = pickle.load(f, encoding="bytes")
  from PIL import Image

  rgb = raw[b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0)
  gray = np.asarray(Image.fromarray(rgb).convert("L"), np.float32).ravel()  # torchvision's way
  np.testing.assert_allclose(x[3, :, 0], (gray - 122.6) / 61.0, rtol=1e-6)
  assert list(y) == raw[b"labels"]


def test_cifar_val_split_does_not_follow_the_training_seed(tmp_path):
  make_cifar(tmp_path)
  c = config("image", tmp_path, tmp_path)
  a, b = (data.build_task(c, batch_size=5, seed=s) for s in (0, 1))
  np.testing.assert_array_equal(all_eval(a, "val")[0], all_eval(b, "val")[0])


def test_cifar_corrupt_or_missing_batch(tmp_path):
  folder = make_cifar(tmp_path)
  (folder / "test_batch").write_bytes(b"garbage")
  with pytest.raises(DataError, match=r"test_batch: not a CIFAR-10 python batch.*re-extract"):
    data.build_task(config("image", tmp_path, tmp_path), batch_size=5)
  (folder / "data_batch_3").unlink()
  with pytest.raises(DataError, match=r"data_batch_3: missing file.*cifar-10-batches-py/"):
    data.build_task(config("image", tmp_path, tmp_path), batch_size=5)


# ----------------------------------------------------------------------------
# Pathfinder / Path-X


@pytest.mark.parametrize("task_name,res", [("pathfinder", 32), ("pathx", 128)])
def test_pathfinder_reads_metadata_in_numeric_order(tmp_path, task_name, res):
  make_pathfinder(tmp_path, res)
  task = data.build_task(config(task_name, tmp_path, tmp_path), batch_size=4)
  assert task.num_examples == {"train": 24, "val": 3, "test": 3} and task.seq_len == res * res
  x, lengths, y = all_eval(task, "test")  # the last 10%: file 10.npy, samples 7..9
  assert x.shape == (3, res * res, 1) and x.dtype == np.float32
  np.testing.assert_allclose(x[:, 0, 0], (np.array([107, 108, 109]) - 127.5) / 127.5)
  assert list(y) == [1, 0, 1] and np.all(lengths == res * res)


def test_pathfinder_other_resolution_and_variant(tmp_path):
  make_pathfinder(tmp_path, 16, variant="curv_baseline")
  c = config("pathfinder", tmp_path, tmp_path, resolution=16, variant="curv_baseline")
  assert data.build_task(c, batch_size=4).seq_len == 256
  c.resolution = 32
  with pytest.raises(DataError, match=r"no pathfinder32/curv_baseline found"):
    data.build_task(c, batch_size=4)


def test_short_synthetic_length_of_presets_leaves_real_data_alone(tmp_path):
  make_pathfinder(tmp_path, 32)
  c = config("pathfinder", tmp_path, tmp_path)
  c.synthetic.seq_len = 256  # what the smoke and demo presets set
  assert data.build_task(c, batch_size=4).seq_len == 1024  # real: the release's 32 x 32
  c.dir = None
  c.synthetic.update(dict(n_train=8, n_val=4, n_test=4))
  assert data.build_task(c, batch_size=4).seq_len == 256  # synthetic: 16 x 16
  c.synthetic.seq_len = 300
  with pytest.raises(ValueError, match="must be a square"):
    data.build_task(c, batch_size=4)


def test_pathfinder_skips_empty_images_and_rejects_bad_ones(tmp_path, caplog):
  base = make_pathfinder(tmp_path, 32)
  c = config("pathfinder", tmp_path, tmp_path)
  (base / "imgs" / "2" / "sample_4.png").write_bytes(b"")
  assert sum(data.build_task(c, batch_size=4).num_examples.values()) == 29
  assert "skipped 1 zero-byte images" in caplog.text
  (base / "imgs" / "2" / "sample_5.png").write_bytes(b"\x89PNG broken")
  with pytest.raises(DataError, match=r"sample_5.png: not a readable image.*pathfinder32"):
    data.build_task(c, batch_size=4)
  (base / "imgs" / "2" / "sample_5.png").unlink()
  with pytest.raises(DataError, match=r"sample_5.png: listed in the metadata but missing"):
    data.build_task(c, batch_size=4)


def test_pathfinder_wrong_size_and_bad_metadata(tmp_path):
  from PIL import Image

  base = make_pathfinder(tmp_path, 32)
  c = config("pathfinder", tmp_path, tmp_path)
  Image.fromarray(np.zeros((64, 64), np.uint8)).save(base / "imgs" / "2" / "sample_0.png")
  with pytest.raises(DataError, match=r"sample_0.png: image is 64x64, expected 32x32"):
    data.build_task(c, batch_size=4)
  (base / "metadata" / "10.npy").write_text("imgs/10 sample_0.png\n")
  with pytest.raises(DataError, match=r"metadata/10.npy:1: expected '<folder> <file>"):
    data.build_task(c, batch_size=4)


def test_pathfinder_seq_len_must_match_resolution(tmp_path):
  c = config("pathfinder", tmp_path, tmp_path)
  c.resolution = 64
  assert c.seq_len == 4096  # follows the resolution
  c.seq_len = 1000
  with pytest.raises(ValueError, match=r"L must be 4096"):
    data.build_task(c, batch_size=4)


# ----------------------------------------------------------------------------
# Speech Commands


def test_speech_reads_word_folders_and_lists(tmp_path):
  make_speech(tmp_path)
  task = data.build_task(config("speech", tmp_path, tmp_path), batch_size=5)
  assert task.n_classes == 35 and task.in_dim == 1 and task.vocab_size is None
  assert task.num_examples == {"train": 35, "val": 35, "test": 35}
  x, lengths, y = all_eval(task, "test")
  assert x.shape == (35, 16000, 1) and x.dtype == np.float32
  assert list(y) == list(range(35)) and np.all(lengths == 8001)
  # Standardized by the train split's statistics; zero padding after the clip.
  raw = np.zeros((35, 16000))
  raw[:, :8002] = 100 * (np.arange(35)[:, None] + 1)
  mean, std = raw.mean(), raw.std() + 1e-5 * 32768
  np.testing.assert_allclose(x[:, 0, 0], (100 * (np.arange(35) + 1) - mean) / std, atol=1e-5)
  np.testing.assert_allclose(x[:, 8001:, 0], -mean / std, atol=1e-5)


def test_speech_shorter_window_cuts_clips(tmp_path):
  make_speech(tmp_path)
  task = data.build_task(config("speech", tmp_path, tmp_path, seq_len=4000), batch_size=5)
  x, lengths, _ = next(task.eval_batches("val"))
  assert x.shape == (5, 4000, 1) and np.all(lengths == 4000)


def test_speech_missing_words_and_corrupt_wav(tmp_path):
  base = make_speech(tmp_path)
  c = config("speech", tmp_path, tmp_path)
  (base / "yes" / "00000021_nohash_2.wav").write_bytes(b"RIFFjunk")
  with pytest.raises(DataError, match=r"yes/00000021_nohash_2.wav: not a readable wav"):
    data.build_task(c, batch_size=5)
  write_wav(base / "yes" / "00000021_nohash_2.wav", np.zeros(10), rate=8000)
  with pytest.raises(DataError, match=r"expected 16-bit mono 16000 Hz PCM.*8000 Hz"):
    data.build_task(c, batch_size=5)
  for f in (base / "wow").iterdir():
    f.unlink()
  (base / "wow").rmdir()
  with pytest.raises(DataError, match=r"missing word folders \['wow'\].*v0.02"):
    data.build_task(c, batch_size=5)


def test_speech_missing_list_file(tmp_path):
  base = make_speech(tmp_path)
  (base / "validation_list.txt").unlink()
  with pytest.raises(DataError, match=r"validation_list.txt: missing file.*testing_list.txt"):
    data.build_task(config("speech", tmp_path, tmp_path), batch_size=5)


# ----------------------------------------------------------------------------
# The cache of parsed real data.


def test_real_data_is_cached_and_the_cache_follows_the_files(tmp_path, monkeypatch):
  folder = make_listops(tmp_path)
  c = config("listops", tmp_path, tmp_path, cache_real=True)
  first = all_eval(data.build_task(c, batch_size=4), "val")
  calls = []
  original = readers.READERS["listops"].read
  monkeypatch.setitem(
    readers.READERS,
    "listops",
    readers.Reader(readers.READERS["listops"].locate, lambda *a: calls.append(1) or original(*a)),
  )
  again = all_eval(data.build_task(c, batch_size=4), "val")
  assert not calls  # served from the cache
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  (folder / "basic_val.tsv").write_text("Source\tTarget\n( [SM 1 2 ] )\t3\n")
  changed = data.build_task(c, batch_size=4)
  assert calls and changed.num_examples["val"] == 1


def test_rows_are_compacted_in_place():
  x = np.arange(20).reshape(10, 2)
  keep = np.array([1, 0, 0, 1, 1, 0, 1, 1, 0, 1], bool)
  expected = x[keep].copy()
  out = pathfinder_speech.compact_rows(x, keep, chunk=2)
  np.testing.assert_array_equal(out, expected)
  assert np.shares_memory(out, x)
