""" "How far can I prune?": the bisection, and the prune CLI's --max_drop end to end."""

import json
import math
import os
import subprocess
import sys

import pytest

from last_nnx.pruning import search
from last_nnx.sweeps import saved
from last_nnx.train import checkpoint, events
from tests.saved_run import trained  # noqa: F401 (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("n,boundary", [(64, 20), (64, 64), (64, 1), (37, 5), (1, 1)])
def test_bisection_finds_the_exact_boundary_of_a_monotone_curve(n, boundary):
  # Accuracy 0.9 while at least `boundary` states are kept, 0.5 below.
  calls = []

  def accuracy_at(ratio):
    kept = math.floor(n * (1 - ratio) + 1e-9)
    calls.append(kept)
    return 0.9 if kept >= boundary else 0.5

  result = search.max_ratio_within(accuracy_at, 0.9, 1.0, n)
  assert result.kept == boundary
  assert result.ratio == pytest.approx(1 - boundary / n)
  assert len(calls) <= math.ceil(math.log2(n)) if n > 1 else not calls
  assert result.probes == [(1 - k / n, 0.9 if k >= boundary else 0.5) for k in calls]


def test_tolerance_is_in_points_and_min_kept_bounds_the_search():
  acc = {k: 0.9 - 0.003 * (64 - k) for k in range(65)}  # loses 0.3 points per state removed
  at = lambda r: acc[math.floor(64 * (1 - r) + 1e-9)]
  assert search.max_ratio_within(at, 0.9, 1.0, 64).kept == 61  # 3 x 0.3 <= 1 < 4 x 0.3
  assert search.max_ratio_within(at, 0.9, 100.0, 64, min_kept=4).kept == 4
  with pytest.raises(ValueError, match="points"):
    search.max_ratio_within(at, 0.9, -1.0, 64)


def test_how_far_bisects_reports_and_writes_each_criterions_model(trained, tmp_path):
  out = str(tmp_path / "far")
  summary = saved.how_far(trained, 2.0, ["last", "balanced_refit@L"], out, calibration_batches=2)
  dense = summary["dense"]
  assert [r["criterion"] for r in summary["results"]] == ["last", "balanced_refit@L"]
  for r in summary["results"]:
    # Within the tolerance on val, at the ratio found (the written model is that model).
    assert 100 * (dense["val_accuracy"] - r["val_accuracy"]) <= 2.0 + 1e-6
    model, _, meta = checkpoint.load_model(r["out_dir"])
    states = sum(events.states_per_layer(model).values())
    assert states == r["kept"] == r["states"]
    assert r["ratio"] == pytest.approx(1 - r["kept"] / 8)  # 2 layers x 4 stored states
    assert meta.pruning["criterion"] == r["criterion"]
    # Every probe that pruned more than the answer failed the tolerance.
    for ratio, acc in r["probes"]:
      if ratio > r["ratio"] + 1e-9:
        assert 100 * (dense["val_accuracy"] - acc) > 2.0
  with open(os.path.join(out, "max_drop.json")) as f:
    assert json.load(f)["results"][0]["criterion"] == "last"
  assert "| balanced_refit@L |" in saved.how_far_table(summary)


@pytest.mark.slow
def test_cli_max_drop_runs_a_list_of_criteria(trained, tmp_path):
  out = str(tmp_path / "cli")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "last_nnx.cli.prune",
      "--workdir",
      trained,
      "--max_drop",
      "100",
      "--criterion",
      "last,balanced",
      "--out",
      out,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "| last |" in proc.stdout and "| balanced |" in proc.stdout
  with open(os.path.join(out, "max_drop.json")) as f:
    results = json.load(f)["results"]
  # A 100-point tolerance accepts everything: down to one state per layer.
  assert [r["kept"] for r in results] == [2, 2]
  assert sorted(os.listdir(out)) == ["balanced", "last", "max_drop.json"]
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "last_nnx.cli.prune",
      "--workdir",
      trained,
      "--max_drop",
      "1",
      "--criterion",
      "nonsense",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode != 0 and "nonsense" in (proc.stderr + proc.stdout)
