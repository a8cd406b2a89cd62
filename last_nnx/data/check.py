r"""Checks a data directory before a long run.

  python -m last_nnx.data.check --task pathx --dir /data/lra_release

Finds the release's folders at any nesting depth, counts examples per split
against the published sizes and says exactly what is missing. Exit code 0
when everything is there, 1 otherwise.
"""

import glob
import os
import sys

from absl import app, flags

from last_nnx.data import TASKS
from last_nnx.data.readers import LAYOUTS, DataError, find

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", None, list(TASKS), "Task to check.")
flags.DEFINE_string("dir", None, "Data directory (the one you pass as data.dir).")
flags.DEFINE_string("variant", "curv_contour_length_14",
                    "Pathfinder/Path-X difficulty folder (the hard variant by default).")

# Published split sizes (LRA paper / dataset releases).
EXPECTED = {
    "listops": {"train": 96000, "val": 2000, "test": 2000},
    "text": {"train": 25000, "test": 25000},
    "retrieval": {"train": 147086, "val": 18090, "test": 17437},
    "image": {"train": 50000, "test": 10000},
    "pathfinder": {"total": 200000},
    "pathx": {"total": 200000},
    "speech": {"train": 84843, "val": 9981, "test": 11005},
}


def _lines(path: str, skip_header: bool = False) -> int:
  with open(path, "rb") as f:
    n = sum(1 for line in f if line.strip())
  return n - 1 if skip_header else n


def count(task: str, root: str, variant: str) -> tuple[dict[str, int], list[str]]:
  """Examples per split found under ``root``, and a list of problems."""
  counts, problems = {}, []
  if task == "listops":
    folder = os.path.dirname(find(root, "listops-1000/basic_train.tsv", task))
    for split in ("train", "val", "test"):
      path = os.path.join(folder, f"basic_{split}.tsv")
      if os.path.exists(path):
        counts[split] = _lines(path, skip_header=True)
      else:
        problems.append(f"missing {path}")
  elif task == "text":
    base = find(root, "aclImdb", task)
    for split in ("train", "test"):
      counts[split] = sum(len(glob.glob(os.path.join(base, split, s, "*.txt")))
                          for s in ("pos", "neg"))
  elif task == "retrieval":
    folder = os.path.dirname(find(root, "new_aan_pairs.train.tsv", task))
    for split, suffix in (("train", "train"), ("val", "eval"), ("test", "test")):
      path = os.path.join(folder, f"new_aan_pairs.{suffix}.tsv")
      if os.path.exists(path):
        counts[split] = _lines(path)
      else:
        problems.append(f"missing {path}")
  elif task == "image":
    folder = find(root, "cifar-10-batches-py", task)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [n for n in names + ["test_batch"] if not os.path.exists(os.path.join(folder, n))]
    problems += [f"missing {os.path.join(folder, n)}" for n in missing]
    counts["train"] = 10000 * sum(n not in missing for n in names)
    counts["test"] = 0 if "test_batch" in missing else 10000
  elif task in ("pathfinder", "pathx"):
    res = 32 if task == "pathfinder" else 128
    base = find(root, os.path.join(f"pathfinder{res}", variant), task)
    total = 0
    for meta in glob.glob(os.path.join(base, "metadata", "*.npy")):
      total += _lines(meta)
    counts["total"] = total
    if not os.path.isdir(os.path.join(base, "imgs")):
      problems.append(f"missing {os.path.join(base, 'imgs')}")
  else:
    base = os.path.dirname(find(root, "testing_list.txt", task))
    val = _lines(os.path.join(base, "validation_list.txt"))
    test = _lines(os.path.join(base, "testing_list.txt"))
    wavs = len(glob.glob(os.path.join(base, "*", "*.wav")))
    counts.update(train=wavs - val - test, val=val, test=test)
  for split, expected in EXPECTED[task].items():
    found = counts.get(split, 0)
    if found < expected:
      problems.append(f"{split}: {found} examples, the release has {expected}")
  return counts, problems


def main(argv):
  del argv
  if not FLAGS.task or not FLAGS.dir:
    sys.exit("usage: python -m last_nnx.data.check --task TASK --dir DATA_DIR")
  try:
    counts, problems = count(FLAGS.task, os.path.expanduser(FLAGS.dir), FLAGS.variant)
  except DataError as e:
    print(f"{FLAGS.task}: NOT READY\n  {e}")
    sys.exit(1)
  print(f"{FLAGS.task}: layout {LAYOUTS[FLAGS.task]}")
  for split, n in counts.items():
    print(f"  {split:>6}: {n} examples (expected {EXPECTED[FLAGS.task].get(split, '?')})")
  if problems:
    print("NOT READY:\n  " + "\n  ".join(problems))
    sys.exit(1)
  print("ready")


if __name__ == "__main__":
  app.run(main)
