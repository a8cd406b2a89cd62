"""The data checker finds releases however they are nested, names what is missing and tells
a subset of the release (a warning, exit 0) from a broken folder (exit 1)."""

import os
import re
import subprocess
import sys

import pytest

from last_nnx.cli import check_data as check
from tests.test_data_readers import (
  make_aan,
  make_cifar,
  make_imdb,
  make_listops,
  make_pathfinder,
  make_speech,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_listops_nested_twice_is_found_and_a_subset_is_a_warning(tmp_path):
  folder = make_listops(tmp_path, n=5)
  report = check.check("listops", str(tmp_path))
  assert report.base == str(folder)
  assert report.counts == {"train": 5, "val": 5, "test": 5}
  assert report.ready and not report.full and not report.problems
  assert "train: 5 examples, the release has 96000 (95995 fewer)" in report.short
  assert report.exit_status() == check.EXIT_READY
  assert report.exit_status(expect_full=True) == check.EXIT_NOT_FULL
  text = check.format_report(report)
  assert "WARNING: smaller than the release" in text and text.endswith("READY (a subset)")
  assert check.format_report(report, True).endswith("NOT THE FULL RELEASE (--expect_full)")


def test_an_empty_split_is_broken(tmp_path):
  folder = make_listops(tmp_path, n=5)
  (folder / "basic_test.tsv").write_text("Source\tTarget\n")
  report = check.check("listops", str(tmp_path))
  assert "test: no examples" in report.problems and not report.ready
  assert report.exit_status() == check.EXIT_BROKEN


def test_missing_split_file_is_named(tmp_path):
  folder = make_aan(tmp_path)
  (folder / "new_aan_pairs.eval.tsv").unlink()
  report = check.check("retrieval", str(tmp_path))
  assert f"missing {folder / 'new_aan_pairs.eval.tsv'}" in report.problems
  assert report.counts["train"] == 6 and "val" not in report.counts
  assert report.exit_status() == check.EXIT_BROKEN
  assert check.format_report(report).splitlines()[-2] == "NOT READY:"


def test_pathx_picks_pathfinder128_hard_variant(tmp_path):
  make_pathfinder(tmp_path, 32)
  make_pathfinder(tmp_path, 128, n_files=2)
  make_pathfinder(tmp_path, 128, variant="curv_baseline")
  report = check.check("pathx", str(tmp_path))
  assert report.base.endswith(os.path.join("pathfinder128", "curv_contour_length_14"))
  assert report.counts == {"train": 16, "val": 2, "test": 2}
  assert check.check("pathfinder", str(tmp_path)).counts == {"train": 24, "val": 3, "test": 3}
  assert check.check("pathx", str(tmp_path), variant="curv_baseline").counts["train"] == 24


def test_pathfinder_missing_images_and_folder(tmp_path):
  base = make_pathfinder(tmp_path, 32)
  (base / "imgs" / "2" / "sample_4.png").unlink()
  (base / "imgs" / "2" / "sample_5.png").write_bytes(b"")
  report = check.check("pathfinder", str(base))  # pointed right at the variant folder
  assert report.base == str(base)
  assert any("1 of 30 images listed" in p and "sample_4.png" in p for p in report.problems)
  assert any("1 zero-byte images will be skipped" in n for n in report.notes)
  assert report.exit_status(expect_full=False) == check.EXIT_BROKEN  # the reader would fail
  report = check.check("pathx", str(tmp_path))
  assert "no pathfinder128/curv_contour_length_14 found" in report.problems[0]


def test_other_releases_are_counted(tmp_path):
  make_imdb(tmp_path)
  assert check.check("text", str(tmp_path)).counts == {"train": 20, "test": 20}
  make_cifar(tmp_path)
  assert check.check("image", str(tmp_path)).counts == {"train": 45, "val": 5, "test": 10}
  base = make_speech(tmp_path / "sc")
  report = check.check("speech", str(tmp_path))
  assert report.counts == {"train": 35, "val": 35, "test": 35}
  with open(base / "testing_list.txt", "a") as f:
    f.write("yes/not_there.wav\n")
  # A list naming absent clips is a partial copy (the reader skips them): a warning.
  report = check.check("speech", str(tmp_path))
  assert "1 files of the test list are not there, e.g. yes/not_there.wav" in report.short
  assert report.ready and report.counts == {"train": 35, "val": 35, "test": 35}
  # A word folder missing is broken (the reader refuses it).
  for f in (base / "zero").iterdir():
    f.unlink()
  (base / "zero").rmdir()
  report = check.check("speech", str(tmp_path))
  assert [p for p in report.problems if "missing word folders" in p and "zero" in p]
  assert len(report.problems) == 1 and not report.ready


def test_search_does_not_enter_image_folders(tmp_path):
  make_pathfinder(tmp_path, 32)
  decoy = tmp_path / "lra_release" / "pathfinder32" / "curv_contour_length_14" / "imgs" / "0"
  (decoy / "listops-1000").mkdir()
  (decoy / "listops-1000" / "basic_train.tsv").write_text("Source\tTarget\n")
  assert "no basic_train.tsv found" in check.check("listops", str(tmp_path)).problems[0]


@pytest.mark.parametrize(
  "complete,expect_full,status",
  [
    (True, False, 0),  # a consistent subset: warning, ready
    (True, True, 2),  # ... but not the full release that --expect_full asks for
    (False, False, 1),  # an image listed in the metadata is missing: broken
  ],
)
def test_cli_report_and_exit_status(tmp_path, complete, expect_full, status):
  base = make_pathfinder(tmp_path, 128, n_files=1)
  if not complete:
    (base / "imgs" / "0" / "sample_1.png").unlink()
  cmd = [sys.executable, "-m", "last_nnx.cli.check_data", "--task", "pathx", "--dir", str(tmp_path)]
  cmd += ["--expect_full"] if expect_full else []
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == status, done.stdout + done.stderr
  assert "pathfinder128/curv_contour_length_14/metadata/*.npy" in done.stdout
  train = 8 if complete else 7  # 80% of the images there
  assert re.search(rf"train +{train} +160000", done.stdout), done.stdout
  assert "WARNING: smaller than the release" in done.stdout
  assert f"{160000 - train} fewer" in done.stdout
  assert ("NOT READY" in done.stdout) == (status == 1)
  assert ("1 of 10 images listed" in done.stdout) != complete
  assert done.stdout.rstrip().endswith(
    {0: "READY (a subset)", 1: "sample_1.png", 2: "NOT THE FULL RELEASE (--expect_full)"}[status]
  )


def test_cli_without_task_or_dir_exits_broken():
  done = subprocess.run(
    [sys.executable, "-m", "last_nnx.cli.check_data", "--task", "pathx"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode == 1 and "usage:" in done.stderr


def test_reference_counts_follow_the_reference_rule(tmp_path):
  base = make_pathfinder(tmp_path, 32)
  (base / "imgs" / "10" / "sample_9.png").unlink()  # 29 lines, one fewer in the metadata
  meta = base / "metadata" / "10.npy"
  meta.write_text("".join(meta.read_text().splitlines(True)[:9]))
  assert check.check("pathfinder", str(tmp_path)).counts == {"train": 23, "val": 3, "test": 3}
  report = check.check("pathfinder", str(tmp_path), splits="reference")
  assert report.counts == {"train": 25, "val": 2, "test": 2} and report.ready
  assert "torch's random_split, seed 42" in report.notes[-1]
  # A zero-byte image leaves the split the reference's draw put it in.
  from last_nnx.data import splits

  order = splits.reference_pathfinder_order(29, 42).tolist()
  first_test = order[27]  # metadata line of the first test example
  k, i = ((0, 2, 10)[first_test // 10], first_test % 10)
  (base / "imgs" / str(k) / f"sample_{i}.png").write_bytes(b"")
  report = check.check("pathfinder", str(tmp_path), splits="reference")
  assert report.counts == {"train": 25, "val": 2, "test": 1}
  assert check.check("image", str(tmp_path), splits="reference").problems  # no CIFAR here


def test_ready_when_the_counts_match(tmp_path, monkeypatch):
  import dataclasses

  from last_nnx.data import layout

  make_listops(tmp_path, n=5)
  small = dataclasses.replace(
    layout.RELEASES["listops"], expected={"train": 5, "val": 5, "test": 5}
  )
  monkeypatch.setitem(layout.RELEASES, "listops", small)
  report = check.check("listops", str(tmp_path))
  assert report.ready and check.format_report(report).endswith("READY")
