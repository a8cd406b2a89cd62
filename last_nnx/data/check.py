r"""Checks a data folder before a long run.

  python -m last_nnx.data.check --task pathx --dir /data/lra_release

Finds the release under ``--dir`` the way the readers do (at any nesting
depth), counts the examples of every split without decoding them, compares
with the published sizes and says exactly what is missing. Exit status 0 when
the task is ready, 1 otherwise. Pathfinder uses ``pathfinder32`` and Path-X
``pathfinder128``, both in the hard ``curv_contour_length_14`` variant, unless
``--resolution`` / ``--variant`` say otherwise.
"""

import dataclasses
import glob
import os
import pickle
import sys

from absl import app, flags

from last_nnx.data import layout, readers
from last_nnx.data.config import SPECS, TASKS
from last_nnx.data.layout import DataError

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", None, list(TASKS), "Task to check.")
flags.DEFINE_string("dir", None, "The folder you pass as --config.data.dir.")
flags.DEFINE_string("variant", "curv_contour_length_14",
                    "Pathfinder/Path-X difficulty folder (default: the hard one LRA uses).")
flags.DEFINE_integer("resolution", None, "Pathfinder image side (default 32; Path-X 128).")


@dataclasses.dataclass
class Report:
  """What was found: the release folder, examples per split, and problems."""

  task: str
  fmt: dict = dataclasses.field(default_factory=dict)  # Pathfinder's res and variant
  base: str | None = None
  counts: dict = dataclasses.field(default_factory=dict)
  expected: dict = dataclasses.field(default_factory=dict)
  problems: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)

  @property
  def ready(self) -> bool:
    return not self.problems


def _lines(path: str) -> int:
  with open(path, "rb") as f:
    return sum(1 for line in f if line.strip())


def _files(report: Report, base: str, names: dict[str, str], header: bool) -> None:
  """Counts the lines of one tab-separated file per split."""
  for split, name in names.items():
    path = os.path.join(base, name)
    if os.path.isfile(path):
      report.counts[split] = _lines(path) - int(header)
    else:
      report.problems.append(f"missing {path}")


def _listops(report: Report, base: str, **_) -> None:
  _files(report, base, {s: f"basic_{s}.tsv" for s in ("train", "val", "test")}, header=True)


def _aan(report: Report, base: str, **_) -> None:
  _files(report, base, {s: f"new_aan_pairs.{f}.tsv" for s, f in
                        (("train", "train"), ("val", "eval"), ("test", "test"))}, header=False)


def _imdb(report: Report, base: str, **_) -> None:
  for split in ("train", "test"):
    n = 0
    for sentiment in ("pos", "neg"):
      folder = os.path.join(base, split, sentiment)
      if os.path.isdir(folder):
        n += len(glob.glob(os.path.join(folder, "*.txt")))
      else:
        report.problems.append(f"missing folder {folder}")
    report.counts[split] = n
  report.notes.append("val is the test set unless data.val_fraction > 0 (LRA has no IMDB val)")


def _held_out(n: int, fraction: float) -> tuple[int, int]:
  val = int(round(n * fraction))
  return n - val, val


def _cifar(report: Report, base: str, **_) -> None:
  def labels(name):
    path = os.path.join(base, name)
    if not os.path.isfile(path):
      report.problems.append(f"missing {path}")
      return 0
    try:
      with open(path, "rb") as f:
        return len(pickle.load(f, encoding="bytes")[b"labels"])
    except Exception as e:  # pylint: disable=broad-except (any unpickling failure)
      report.problems.append(f"{path} is not a CIFAR-10 python batch ({type(e).__name__})")
      return 0

  train = sum(labels(f"data_batch_{i}") for i in range(1, 6))
  report.counts["train"], report.counts["val"] = _held_out(train, 0.1)
  report.counts["test"] = labels("test_batch")
  report.notes.append(f"{train} training images; 10% held out as val (data.val_fraction)")


def _pathfinder(report: Report, base: str, task: str, fmt: dict) -> None:
  try:
    entries = readers.metadata_entries(base, task, **fmt)
  except DataError as e:
    report.problems.append(str(e))
    return
  missing = [p for p, _ in entries if not os.path.isfile(p)]
  empty = [p for p, _ in entries if os.path.isfile(p) and os.path.getsize(p) == 0]
  if missing:
    report.problems.append(f"{len(missing)} of {len(entries)} images listed in "
                           f"{base}/metadata are missing, e.g. {missing[0]}")
  if empty:
    report.notes.append(f"{len(empty)} zero-byte images will be skipped (LRA drops them too)")
  n = len(entries) - len(missing) - len(empty)
  a, b = int(0.8 * n), int(0.9 * n)
  report.counts.update(train=a, val=b - a, test=n - b)
  report.notes.append(f"{len(entries)} metadata lines in "
                      f"{len(readers.metadata_files(base))} files; split 80/10/10 in order")


def _speech(report: Report, base: str, **_) -> None:
  lists = {}
  for split, name in (("val", "validation_list.txt"), ("test", "testing_list.txt")):
    path = os.path.join(base, name)
    if os.path.isfile(path):
      with open(path) as f:
        lists[split] = {line.strip() for line in f if line.strip()}
    else:
      report.problems.append(f"missing {path}")
      lists[split] = set()
  missing = [w for w in readers.SPEECH_WORDS if not os.path.isdir(os.path.join(base, w))]
  if missing:
    report.problems.append(f"missing word folders under {base}: {', '.join(missing)}")
  present = {f"{w}/{os.path.basename(p)}" for w in readers.SPEECH_WORDS
             for p in glob.glob(os.path.join(base, w, "*.wav"))}
  for split in ("val", "test"):
    absent = lists[split] - present
    if absent:
      report.problems.append(f"{len(absent)} files of the {split} list are missing, e.g. "
                             f"{sorted(absent)[0]}")
    report.counts[split] = len(lists[split] & present)
  report.counts["train"] = len(present - lists["val"] - lists["test"])


_COUNTERS = {"listops": _listops, "text": _imdb, "retrieval": _aan, "image": _cifar,
             "pathfinder": _pathfinder, "pathx": _pathfinder, "speech": _speech}


def check(task: str, root: str, variant: str = "curv_contour_length_14",
          resolution: int | None = None) -> Report:
  """Finds ``task``'s release under ``root`` and counts its splits."""
  fmt = {}
  if SPECS[task].resolution:
    fmt = dict(res=resolution or SPECS[task].resolution, variant=variant)
  release = layout.release(task, **fmt)
  report = Report(task, fmt, expected=dict(release.expected))
  try:
    found = layout.find(root, task, **fmt)
  except DataError as e:
    report.problems.append(str(e))
    return report
  base = found if os.path.isdir(found) else os.path.dirname(found)
  report.base = base
  _COUNTERS[task](report, base, task=task, fmt=fmt)
  for split, expected in report.expected.items():
    n = report.counts.get(split, 0)
    if n < expected:
      report.problems.append(f"{split}: {n} examples, the release has {expected} "
                             f"({expected - n} missing)")
    elif n > expected:
      report.notes.append(f"{split}: {n} examples, more than the release's {expected}")
  return report


def format_report(report: Report) -> str:
  r = layout.release(report.task, **report.fmt)
  lines = [f"{report.task}: {r.name}", f"  expected layout: {r.layout}",
           f"  found: {report.base or '-'}"]
  if report.counts:
    lines.append(f"  {'split':<6} {'found':>8} {'expected':>9}")
    for split in ("train", "val", "test"):
      if split in report.counts or split in report.expected:
        lines.append(f"  {split:<6} {report.counts.get(split, 0):>8} "
                     f"{report.expected.get(split, '-'):>9}")
  lines += [f"  note: {n}" for n in report.notes]
  if report.ready:
    lines.append("READY")
  else:
    lines.append("NOT READY:")
    lines += [f"  - {p}" for p in report.problems]
  return "\n".join(lines)


def main(argv):
  del argv
  if not FLAGS.task or not FLAGS.dir:
    sys.exit("usage: python -m last_nnx.data.check --task TASK --dir DATA_DIR "
             f"(TASK in {', '.join(TASKS)})")
  report = check(FLAGS.task, FLAGS.dir, FLAGS.variant, FLAGS.resolution)
  print(format_report(report))  # the report is this tool's output
  sys.exit(0 if report.ready else 1)


if __name__ == "__main__":
  app.run(main)
