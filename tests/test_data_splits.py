"""data.splits='reference': the paper's code's split membership and class ids.

The expected memberships come from an independent transcription of the
reference's rule written here (a pure-Python MT19937, torch's randperm pass,
random_split's cuts), never from `last_nnx.data.splits`; with torch importable
the transcription in the package is also compared with torch itself.
"""

import numpy as np
import pytest

from last_nnx import data
from last_nnx.data import pathfinder_speech, readers, splits
from tests.test_data_readers import (
  config,
  make_aan,
  make_cifar,
  make_imdb,
  make_listops,
  make_pathfinder,
  make_speech,
)

# ----------------------------------------------------------------------------
# An independent transcription of the reference's rule.


def mt19937(seed):
  """The 32-bit outputs of MT19937 initialized by ``init_genrand(seed)`` (Matsumoto and
  Nishimura's reference algorithm), the engine of torch's CPU generator."""
  mt = [seed & 0xFFFFFFFF]
  for i in range(1, 624):
    mt.append((1812433253 * (mt[-1] ^ (mt[-1] >> 30)) + i) & 0xFFFFFFFF)
  while True:
    for i in range(624):
      y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
      mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
    for y in mt:
      y ^= y >> 11
      y ^= (y << 7) & 0x9D2C5680
      y ^= (y << 15) & 0xEFC60000
      yield y ^ (y >> 18)


def randperm(n, seed):
  """torch's CPU randperm for small n: identity, then swap i with i + r % (n - i)."""
  draws, perm = mt19937(seed), list(range(n))
  for i in range(n - 1):
    j = i + next(draws) % (n - i)
    perm[i], perm[j] = perm[j], perm[i]
  return perm


def random_split(lengths, seed):
  """torch.utils.data.random_split's index lists for ``lengths`` that sum to n."""
  perm, out, start = randperm(sum(lengths), seed), [], 0
  for k in lengths:
    out.append(perm[start : start + k])
    start += k
  return out


def reference_pathfinder(n, seed=42):
  """S4's PathFinder.setup: val = test = int(0.1 n), train the rest."""
  v = int(0.1 * n)
  return dict(zip(("train", "val", "test"), random_split([n - 2 * v, v, v], seed)))


def reference_cifar(n, seed=42, val_split=0.1):
  """S4's split_train_val: train = int(n * (1 - val_split)), val the rest."""
  train = int(n * (1.0 - val_split))
  return dict(zip(("train", "val"), random_split([train, n - train], seed)))


# ----------------------------------------------------------------------------
# The permutation.


def test_randperm_matches_the_transcription():
  for n in (0, 1, 2, 3, 29, 30, 97, 2000):
    for seed in (42, 0, 1234):
      np.testing.assert_array_equal(splits.torch_randperm(n, seed), randperm(n, seed))


def test_randperm_matches_a_value_recorded_from_torch():
  # torch 2.13.0+cpu: torch.randperm(30, generator=torch.Generator().manual_seed(42))
  recorded = [
    12,
    0,
    6,
    25,
    8,
    15,
    10,
    18,
    16,
    23,
    28,
    26,
    20,
    7,
    21,
    22,
    29,
    13,
    14,
    2,
    4,
    1,
    9,
    11,
    17,
    19,
    27,
    5,
    24,
    3,
  ]
  assert splits.torch_randperm(30, 42).tolist() == recorded
  assert randperm(30, 42) == recorded


def test_randperm_and_random_split_match_torch():
  torch = pytest.importorskip("torch")
  for n in (1, 2, 30, 1001, 50000, 200000):
    got = splits.torch_randperm(n, 42)
    want = torch.randperm(n, generator=torch.Generator().manual_seed(42)).numpy()
    np.testing.assert_array_equal(got, want)
  for n in (29, 30, 200000):
    sizes = splits.pathfinder_sizes(n, "reference")
    parts = torch.utils.data.random_split(
      range(n), list(sizes), generator=torch.Generator().manual_seed(42)
    )
    for ours, theirs in zip(splits.torch_random_split(sizes, 42), parts):
      assert ours.tolist() == list(theirs.indices)
  train, val = splits.reference_held_out(50000, 0.1, 42)
  parts = torch.utils.data.random_split(
    range(50000), (45000, 5000), generator=torch.Generator().manual_seed(42)
  )
  assert train.tolist() == list(parts[0].indices) and val.tolist() == list(parts[1].indices)


def test_sizes_follow_each_rule():
  assert splits.pathfinder_sizes(200000, "reference") == (160000, 20000, 20000)
  assert splits.pathfinder_sizes(200000, "default") == (160000, 20000, 20000)
  assert splits.pathfinder_sizes(29, "reference") == (25, 2, 2)
  assert splits.pathfinder_sizes(29, "default") == (23, 3, 3)
  assert splits.held_out_sizes(50000, 0.1, "reference") == (45000, 5000)
  assert splits.held_out_sizes(45, 0.1, "reference") == (40, 5)  # train int(40.5) = 40
  assert splits.held_out_sizes(45, 0.1, "default") == (41, 4)  # val round(4.5) = 4


def test_unknown_rule_is_refused(tmp_path):
  make_listops(tmp_path)
  with pytest.raises(ValueError, match=r"data.splits='paper'.*'reference'"):
    data.build_task(config("listops", tmp_path, tmp_path, splits="paper"), batch_size=4)


# ----------------------------------------------------------------------------
# Membership on fixtures.


def gray_levels(split):
  """Pathfinder fixture images are uniform: gray ``10 k + i`` identifies file k, sample i."""
  return np.asarray(split.inputs[:, 0], int).tolist()


def fixture_levels(files=(0, 2, 10), per_file=10):
  """The gray levels of `make_pathfinder`'s images in metadata order."""
  return [10 * k + i for k in files for i in range(per_file)]


@pytest.mark.parametrize("task_name,res,n_files", [("pathfinder", 32, 3), ("pathx", 128, 2)])
def test_pathfinder_reference_membership(tmp_path, task_name, res, n_files):
  make_pathfinder(tmp_path, res, n_files=n_files)
  task = data.build_task(config(task_name, tmp_path, tmp_path, splits="reference"), batch_size=2)
  levels = fixture_levels((0, 2, 10)[:n_files])
  for name, index in reference_pathfinder(len(levels)).items():
    split = task.splits[name]
    assert gray_levels(split) == [levels[i] for i in index], name  # same order, too
    assert split.labels.tolist() == [levels[i] % 10 % 2 for i in index]
  default = data.build_task(config(task_name, tmp_path, tmp_path), batch_size=2)
  assert gray_levels(default.splits["test"]) == levels[int(0.9 * len(levels)) :]
  assert set(gray_levels(default.splits["test"])) != set(gray_levels(task.splits["test"]))


def test_pathfinder_reference_drops_empty_images_from_their_split(tmp_path, caplog):
  base = make_pathfinder(tmp_path, 32)
  (base / "imgs" / "2" / "sample_4.png").write_bytes(b"")
  task = data.build_task(config("pathfinder", tmp_path, tmp_path, splits="reference"), batch_size=2)
  levels = fixture_levels()
  for name, index in reference_pathfinder(30).items():  # split over all 30 lines
    assert gray_levels(task.splits[name]) == [levels[i] for i in index if levels[i] != 24]
  assert "the reference's reader cannot open them" in caplog.text


def test_pathfinder_reference_leaves_out_s4s_blacklisted_image(tmp_path):
  from PIL import Image

  base = make_pathfinder(tmp_path, 32, variant="curv_baseline")
  Image.fromarray(np.full((32, 32), 250, np.uint8)).save(base / "imgs" / "0" / "sample_172.png")
  with open(base / "metadata" / "0.npy", "a") as f:
    f.write("imgs/0 sample_172.png 172 1 3 14 0.5\n")
  c = config("pathfinder", tmp_path, tmp_path, variant="curv_baseline")
  assert sum(data.build_task(c, batch_size=2).num_examples.values()) == 31
  c.splits = "reference"
  task = data.build_task(c, batch_size=2)
  levels = fixture_levels()
  for name, index in reference_pathfinder(30).items():
    assert gray_levels(task.splits[name]) == [levels[i] for i in index]


def test_cifar_reference_val_membership(tmp_path):
  folder = make_cifar(tmp_path)
  task = data.build_task(config("image", tmp_path, tmp_path, splits="reference"), batch_size=5)
  import pickle

  rows, labels = [], []
  for i in range(1, 6):
    with open(folder / f"data_batch_{i}", "rb") as f:
      batch = pickle.load(f, encoding="bytes")
    rows.append(batch[b"data"])
    labels += batch[b"labels"]
  gray = readers.grayscale(np.concatenate(rows))
  for name, index in reference_cifar(50).items():
    np.testing.assert_array_equal(task.splits[name].inputs, gray[index])
    assert task.splits[name].labels.tolist() == [labels[i] for i in index]
  default = data.build_task(config("image", tmp_path, tmp_path), batch_size=5)
  assert default.num_examples == task.num_examples == {"train": 45, "val": 5, "test": 10}
  np.testing.assert_array_equal(default.splits["test"].inputs, task.splits["test"].inputs)
  assert not np.array_equal(default.splits["val"].inputs, task.splits["val"].inputs)


def test_speech_reference_class_ids(tmp_path):
  make_speech(tmp_path)
  ref = data.build_task(config("speech", tmp_path, tmp_path, splits="reference"), batch_size=5)
  default = data.build_task(config("speech", tmp_path, tmp_path), batch_size=5)
  assert sorted(splits.REFERENCE_SPEECH_WORDS) == list(pathfinder_speech.SPEECH_WORDS)
  # Read off the reference's ALL_CLASSES: bed 0, yes 16, backward 17, zero 34.
  ids = {w: k for k, w in enumerate(splits.REFERENCE_SPEECH_WORDS)}
  assert (ids["bed"], ids["yes"], ids["backward"], ids["zero"]) == (0, 16, 17, 34)
  for name in ("train", "val", "test"):
    # A clip of alphabetical word w holds the constant 100 (w + 1): it names its word.
    for split, words in (
      (ref.splits[name], splits.REFERENCE_SPEECH_WORDS),
      (default.splits[name], pathfinder_speech.SPEECH_WORDS),
    ):
      clip_words = [pathfinder_speech.SPEECH_WORDS[v // 100 - 1] for v in split.inputs[:, 0]]
      assert [words[k] for k in split.labels] == clip_words
    same = lambda s: sorted(map(tuple, np.asarray(s.inputs[:, :8003])))
    assert same(ref.splits[name]) == same(default.splits[name])  # same members
  assert ref.n_classes == default.n_classes == 35


def test_tasks_without_a_random_rule_read_the_same(tmp_path):
  make_listops(tmp_path / "l")
  make_imdb(tmp_path / "t")
  make_aan(tmp_path / "r")
  for task_name, root, fields in (
    ("listops", "l", {}),
    ("text", "t", {"seq_len": 64}),
    ("retrieval", "r", {"seq_len": 64}),
  ):
    a, b = (
      data.build_task(
        config(task_name, tmp_path / root, tmp_path, splits=s, **fields), batch_size=2
      )
      for s in ("default", "reference")
    )
    for name in ("train", "val", "test"):
      for field in ("inputs", "lengths", "labels"):
        np.testing.assert_array_equal(
          getattr(a.splits[name], field), getattr(b.splits[name], field)
        )


def test_imdb_reference_refuses_a_held_out_val(tmp_path):
  make_imdb(tmp_path)
  c = config("text", tmp_path, tmp_path, seq_len=64, splits="reference", val_fraction=0.2)
  with pytest.raises(ValueError, match=r"validates IMDB on test.*val_fraction=0"):
    data.build_task(c, batch_size=2)


def test_cache_keeps_the_two_rules_apart(tmp_path):
  make_pathfinder(tmp_path, 32)
  c = config("pathfinder", tmp_path, tmp_path, cache_real=True)
  default = data.build_task(c, batch_size=2)
  c.splits = "reference"
  ref = data.build_task(c, batch_size=2)
  levels = fixture_levels()
  assert gray_levels(ref.splits["test"]) == [levels[i] for i in reference_pathfinder(30)["test"]]
  c.splits = "default"
  again = data.build_task(c, batch_size=2)  # from the cache
  assert gray_levels(again.splits["test"]) == gray_levels(default.splits["test"])
