r"""Checks a data folder before a long run.

  python -m last_nnx.cli.check_data --task pathx --dir /data/lra_release [--expect_full]

Finds the release under ``--dir`` the way the readers do (at any nesting
depth), counts the examples of every split without decoding them (under
``--splits default`` or ``reference``, as ``data.splits``), compares with the
published sizes and says exactly what is missing. Pathfinder uses
``pathfinder32`` and Path-X ``pathfinder128``, both in the hard
``curv_contour_length_14`` variant, unless ``--resolution`` / ``--variant`` say
otherwise.

Two kinds of shortfall are told apart:

* broken: the reader would fail or a split would be empty (a missing file or
  folder, an image listed in the metadata but absent, an unreadable batch);
* smaller than the release: everything present reads, but a split has fewer
  examples than the published release (a subset, a partial copy). A warning.

Exit status (`EXIT_READY`, ...): 0 ready (the full release, or a consistent
subset with a warning); 1 broken (also bad flags); 2 consistent but smaller
than the release when ``--expect_full`` asks for the full release.
"""

import dataclasses
import glob
import os
import pickle
import sys

import numpy as np
from absl import app, flags

from last_nnx.data import layout, pathfinder_speech
from last_nnx.data import splits as splits_lib
from last_nnx.data.config import SPECS, TASKS
from last_nnx.data.layout import DataError

EXIT_READY, EXIT_BROKEN, EXIT_NOT_FULL = 0, 1, 2

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Defined only when run as a program, so importing this module defines no flags."""
  flags.DEFINE_enum("task", None, list(TASKS), "Task to check.")
  flags.DEFINE_string("dir", None, "The folder you pass as --config.data.dir.")
  flags.DEFINE_string(
    "variant",
    "curv_contour_length_14",
    "Pathfinder/Path-X difficulty folder (default: the hard one LRA uses).",
  )
  flags.DEFINE_integer("resolution", None, "Pathfinder image side (default 32; Path-X 128).")
  flags.DEFINE_enum(
    "splits",
    "default",
    list(splits_lib.MODES),
    "Count the splits as data.splits would ('reference': the paper's code's).",
  )
  flags.DEFINE_bool(
    "expect_full", False, "Require the full release: a smaller (if consistent) folder exits 2."
  )


@dataclasses.dataclass
class Report:
  """What was found: the release folder, examples per split, and what is wrong.

  problems: the data is broken (a reader would fail or a split would be empty).
  short: the data reads but is smaller than the release (warnings).
  """

  task: str
  fmt: dict = dataclasses.field(default_factory=dict)  # Pathfinder's res and variant
  splits: str = "default"
  base: str | None = None
  counts: dict = dataclasses.field(default_factory=dict)
  expected: dict = dataclasses.field(default_factory=dict)
  problems: list = dataclasses.field(default_factory=list)
  short: list = dataclasses.field(default_factory=list)
  notes: list = dataclasses.field(default_factory=list)

  @property
  def ready(self) -> bool:
    """Whether the task can run on this folder (perhaps on fewer examples than the release)."""
    return not self.problems

  @property
  def full(self) -> bool:
    """Whether it is ready with every split at least the release's size."""
    return self.ready and not self.short

  def exit_status(self, expect_full: bool = False) -> int:
    if not self.ready:
      return EXIT_BROKEN
    return EXIT_NOT_FULL if expect_full and self.short else EXIT_READY


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
  _files(
    report,
    base,
    {
      s: f"new_aan_pairs.{f}.tsv"
      for s, f in (("train", "train"), ("val", "eval"), ("test", "test"))
    },
    header=False,
  )


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
  report.counts["train"], report.counts["val"] = splits_lib.held_out_sizes(
    train, 0.1, report.splits
  )
  report.counts["test"] = labels("test_batch")
  how = (
    "torch's random_split, seed 42, as the reference"
    if report.splits == "reference"
    else "a numpy permutation, seed 42"
  )
  report.notes.append(
    f"{train} training images; 10% held out as val by {how} (data.val_fraction, data.split_seed)"
  )


def _pathfinder(report: Report, base: str, task: str, fmt: dict) -> None:
  try:
    entries = pathfinder_speech.metadata_entries(base, task, **fmt)
  except DataError as e:
    report.problems.append(str(e))
    return
  lines = len(entries)
  reference = report.splits == "reference"
  if reference:
    entries = [
      e
      for e in entries
      if not splits_lib.reference_pathfinder_skipped(
        fmt["res"], fmt["variant"], os.path.relpath(e[0], base).replace(os.sep, "/")
      )
    ]
  missing = np.array([not os.path.isfile(p) for p, _ in entries], bool)
  empty = np.array([not m and os.path.getsize(p) == 0 for (p, _), m in zip(entries, missing)], bool)
  if missing.any():
    report.problems.append(
      f"{missing.sum()} of {len(entries)} images listed in "
      f"{base}/metadata are missing, e.g. "
      f"{entries[int(np.argmax(missing))][0]}"
    )
  if empty.any():
    report.notes.append(f"{empty.sum()} zero-byte images will be skipped (LRA drops them too)")
  gone = missing | empty
  if reference:  # the split is drawn over every line; what cannot be read leaves its part
    gone = gone[splits_lib.reference_pathfinder_order(len(entries), 42)]
    cuts = np.cumsum((0,) + splits_lib.pathfinder_sizes(len(entries), "reference"))
    sizes = [int((~gone[lo:hi]).sum()) for lo, hi in zip(cuts[:-1], cuts[1:])]
    rule = "split 80/10/10 at random (torch's random_split, seed 42, as the reference)"
  else:
    sizes = splits_lib.pathfinder_sizes(int((~gone).sum()), "default")
    rule = "split 80/10/10 in order"
  report.counts.update(zip(("train", "val", "test"), sizes))
  report.notes.append(
    f"{lines} metadata lines in {len(pathfinder_speech.metadata_files(base))} files; " + rule
  )


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
  missing = [w for w in pathfinder_speech.SPEECH_WORDS if not os.path.isdir(os.path.join(base, w))]
  if missing:
    report.problems.append(f"missing word folders under {base}: {', '.join(missing)}")
  present = {
    f"{w}/{os.path.basename(p)}"
    for w in pathfinder_speech.SPEECH_WORDS
    for p in glob.glob(os.path.join(base, w, "*.wav"))
  }
  for split in ("val", "test"):
    absent = lists[split] - present
    if absent:  # the reader takes the files that are there: a partial copy, not an error
      report.short.append(
        f"{len(absent)} files of the {split} list are not there, e.g. {sorted(absent)[0]}"
      )
    report.counts[split] = len(lists[split] & present)
  report.counts["train"] = len(present - lists["val"] - lists["test"])
  if report.splits == "reference":
    report.notes.append("classes numbered in the reference's word order (bed 0, cat 1, ...)")


_COUNTERS = {
  "listops": _listops,
  "text": _imdb,
  "retrieval": _aan,
  "image": _cifar,
  "pathfinder": _pathfinder,
  "pathx": _pathfinder,
  "speech": _speech,
}


def check(
  task: str,
  root: str,
  variant: str = "curv_contour_length_14",
  resolution: int | None = None,
  splits: str = "default",
) -> Report:
  """Finds ``task``'s release under ``root`` and counts its splits under the rule set
  ``splits`` ('default' or 'reference', as ``data.splits``)."""
  fmt = {}
  if SPECS[task].resolution:
    fmt = dict(res=resolution or SPECS[task].resolution, variant=variant)
  release = layout.release(task, **fmt)
  report = Report(task, fmt, splits, expected=dict(release.expected))
  try:
    found = layout.find(root, task, **fmt)
  except DataError as e:
    report.problems.append(str(e))
    return report
  base = found if os.path.isdir(found) else os.path.dirname(found)
  report.base = base
  _COUNTERS[task](report, base, task=task, fmt=fmt)
  for split, expected in report.expected.items():
    if split not in report.counts:
      continue  # its file or folder is missing: already a problem
    n = report.counts[split]
    if n == 0:
      report.problems.append(f"{split}: no examples")
    elif n < expected:
      report.short.append(
        f"{split}: {n} examples, the release has {expected} ({expected - n} fewer)"
      )
    elif n > expected:
      report.notes.append(f"{split}: {n} examples, more than the release's {expected}")
  return report


def format_report(report: Report, expect_full: bool = False) -> str:
  """The report as the command prints it; the last lines give the verdict."""
  r = layout.release(report.task, **report.fmt)
  lines = [
    f"{report.task}: {r.name}",
    f"  expected layout: {r.layout}",
    f"  found: {report.base or '-'}",
    f"  splits: {report.splits}",
  ]
  if report.counts:
    lines.append(f"  {'split':<6} {'found':>8} {'expected':>9}")
    for split in ("train", "val", "test"):
      if split in report.counts or split in report.expected:
        lines.append(
          f"  {split:<6} {report.counts.get(split, 0):>8} {report.expected.get(split, '-'):>9}"
        )
  lines += [f"  note: {n}" for n in report.notes]
  status = report.exit_status(expect_full)
  if report.short:
    lines.append(
      "WARNING: smaller than the release"
      + (
        " (fine for a subset; --expect_full requires the full release):"
        if status == EXIT_READY
        else ":"
      )
    )
    lines += [f"  - {s}" for s in report.short]
  if status == EXIT_BROKEN:
    lines.append("NOT READY:")
    lines += [f"  - {p}" for p in report.problems]
  elif status == EXIT_NOT_FULL:
    lines.append("NOT THE FULL RELEASE (--expect_full)")
  else:
    lines.append("READY (a subset)" if report.short else "READY")
  return "\n".join(lines)


def main(argv):
  del argv
  if not FLAGS.task or not FLAGS.dir:
    print(
      "usage: python -m last_nnx.cli.check_data --task TASK --dir DATA_DIR [--splits "
      f"reference] [--expect_full] (TASK in {', '.join(TASKS)})",
      file=sys.stderr,
    )
    sys.exit(EXIT_BROKEN)
  report = check(FLAGS.task, FLAGS.dir, FLAGS.variant, FLAGS.resolution, FLAGS.splits)
  print(format_report(report, FLAGS.expect_full))  # the report is this tool's output
  sys.exit(report.exit_status(FLAGS.expect_full))


if __name__ == "__main__":
  _define_flags()
  app.run(main)
