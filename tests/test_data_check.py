"""The data checker finds releases however they are nested and names what is missing."""

import os
import re
import subprocess
import sys

import pytest

from last_nnx.data import check
from tests.test_data_readers import (make_aan, make_cifar, make_imdb, make_listops,
                                     make_pathfinder, make_speech)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_listops_nested_twice_is_found_and_short_splits_reported(tmp_path):
  folder = make_listops(tmp_path, n=5)
  report = check.check("listops", str(tmp_path))
  assert report.base == str(folder)
  assert report.counts == {"train": 5, "val": 5, "test": 5} and not report.ready
  assert "train: 5 examples, the release has 96000 (95995 missing)" in report.problems


def test_missing_split_file_is_named(tmp_path):
  folder = make_aan(tmp_path)
  (folder / "new_aan_pairs.eval.tsv").unlink()
  report = check.check("retrieval", str(tmp_path))
  assert f"missing {folder / 'new_aan_pairs.eval.tsv'}" in report.problems
  assert report.counts["train"] == 6 and "val" not in report.counts


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
  (base / "testing_list.txt").write_text("yes/not_there.wav\n")
  for f in (base / "zero").iterdir():
    f.unlink()
  (base / "zero").rmdir()
  report = check.check("speech", str(tmp_path))
  assert "1 files of the test list are missing, e.g. yes/not_there.wav" in report.problems
  assert any("missing word folders" in p and "zero" in p for p in report.problems)


def test_search_does_not_enter_image_folders(tmp_path):
  make_pathfinder(tmp_path, 32)
  decoy = tmp_path / "lra_release" / "pathfinder32" / "curv_contour_length_14" / "imgs" / "0"
  (decoy / "listops-1000").mkdir()
  (decoy / "listops-1000" / "basic_train.tsv").write_text("Source\tTarget\n")
  assert "no basic_train.tsv found" in check.check("listops", str(tmp_path)).problems[0]


@pytest.mark.parametrize("complete", [True, False])
def test_cli_report_and_exit_status(tmp_path, complete):
  base = make_pathfinder(tmp_path, 128, n_files=1)
  if not complete:
    (base / "imgs" / "0" / "sample_1.png").unlink()
  cmd = [sys.executable, "-m", "last_nnx.data.check", "--task", "pathx", "--dir", str(tmp_path)]
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1  # 10 examples are far from the release's 200000
  assert "pathfinder128/curv_contour_length_14/metadata/*.npy" in done.stdout
  train = 8 if complete else 7  # 80% of the images there
  assert re.search(rf"train +{train} +160000", done.stdout), done.stdout
  assert "NOT READY" in done.stdout and f"{160000 - train} missing" in done.stdout
  assert ("1 of 10 images listed" in done.stdout) != complete


def test_ready_when_the_counts_match(tmp_path, monkeypatch):
  import dataclasses
  from last_nnx.data import layout
  make_listops(tmp_path, n=5)
  small = dataclasses.replace(layout.RELEASES["listops"], expected={"train": 5, "val": 5,
                                                                    "test": 5})
  monkeypatch.setitem(layout.RELEASES, "listops", small)
  report = check.check("listops", str(tmp_path))
  assert report.ready and check.format_report(report).endswith("READY")
