"""Pruning a saved run from the command line, and sweeps over criteria and ratios."""

import os

import numpy as np
import pytest

from last_nnx import data, sweeps
from last_nnx.sweeps import saved
from last_nnx.train import checkpoint, events, steps
from tests.saved_run import trained  # noqa: F401 (a fixture)


def test_prune_saved_model_writes_a_smaller_loadable_model(trained, tmp_path):
  out = str(tmp_path / "pruned")
  result = saved.prune_saved_model(trained, 0.5, "last", "compact", out)
  assert set(result) >= {"before", "after", "report"}
  model, config, meta = checkpoint.load_model(out)
  states = events.states_per_layer(model)
  assert sum(states.values()) == result["report"]["layers"]["blocks.0.ssm"]["states_after"] + sum(
    l["states_after"] for k, l in result["report"]["layers"].items() if k != "blocks.0.ssm"
  )
  assert sum(states.values()) == 4  # 2 layers x 4 stored states, half removed
  assert all(layer.state_shape[0] == states[p] for p, layer in model.prunable_layers().items())
  task = data.build_task(
    config.data,
    batch_size=config.train.batch_size,
    eval_batch_size=config.train.eval_batch_size,
    seed=config.seed,
  )
  again = steps.evaluate(model, task, "val")
  assert again["accuracy"] == pytest.approx(result["after"]["accuracy"])
  assert meta.events[-1]["criterion"] == "last"
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    saved.prune_saved_model(trained, 1.0, evaluate=False)
  with pytest.raises(FileNotFoundError, match="workdir of a training run"):
    saved.prune_saved_model(str(tmp_path / "nothing"), 0.3)


def test_one_shot_sweep_outputs_and_resume(trained, tmp_path, monkeypatch):
  model, config, _ = checkpoint.load_model(trained)
  task = data.build_task(
    config.data, batch_size=8, eval_batch_size=config.train.eval_batch_size, seed=config.seed
  )
  store = sweeps.PointStore(str(tmp_path))
  sweeps.one_shot(
    model, task, config, store, ratios=[0.25, 0.5], criteria=["last", "last@L", "random"], seeds=2
  )
  assert len(store.points) == 1 + 2 + 2 + 4  # dense; 2 ratios x (last, last@L, 2 randoms)
  text = sweeps.write_report(store, str(tmp_path), synthetic=True, model=model)
  for name in (
    "points.csv",
    "points.json",
    "points.jsonl",
    "table.md",
    "accuracy_vs_ratio.png",
    "allocation.png",
    "scores.png",
  ):
    assert os.path.getsize(tmp_path / name) > 0, name
  assert "Synthetic data" in text and "| last |" in text and "| random |" in text
  with open(tmp_path / "accuracy_vs_ratio.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  drawn = sweeps.plot_curves(
    list(store.points.values()), str(tmp_path / "again.png"), synthetic=True
  )
  assert drawn == ["last", "last@L", "random"]

  # A rerun measures nothing new.
  calls = []
  monkeypatch.setattr(sweeps.points, "split_metrics", lambda *a, **k: calls.append(1) or {})
  rerun = sweeps.PointStore(str(tmp_path))
  sweeps.one_shot(
    model, task, config, rerun, ratios=[0.25, 0.5], criteria=["last", "last@L", "random"], seeds=2
  )
  assert calls == [] and len(rerun.points) == 9


def test_one_shot_with_batch_norm_recalibration(trained, tmp_path, monkeypatch):
  from last_nnx.train import batchnorm

  model, config, _ = checkpoint.load_model(trained)
  task = data.build_task(
    config.data, batch_size=8, eval_batch_size=config.train.eval_batch_size, seed=config.seed
  )
  used = []
  real = batchnorm.recalibrate_batch_norm
  monkeypatch.setattr(
    batchnorm,
    "recalibrate_batch_norm",
    lambda m, b, max_batches: used.append(real(m, b, max_batches=max_batches)),
  )
  store = sweeps.PointStore(str(tmp_path))
  sweeps.one_shot(
    model,
    task,
    config,
    store,
    ratios=[0.5],
    criteria=["last"],
    seeds=1,
    splits=("val",),
    recalibrate_batches=3,
  )
  point = next(p for p in store.points.values() if p["criterion"] == "last")
  assert used == [3] and point["recalibrate_batches"] == 3
  assert 0.0 <= point["val_accuracy"] <= 1.0


def test_criterion_specs_with_a_horizon():
  assert sweeps.parse_criterion("last", 256) == ("last", None)
  assert sweeps.parse_criterion("last@L", 256) == ("last", 256)
  assert sweeps.parse_criterion("energy@1024", 256) == ("energy", 1024)
  for bad, message in (
    ("nope@L", "unknown criterion"),
    ("last@0", "after '@'"),
    ("last@x", "after '@'"),
  ):
    with pytest.raises(ValueError, match=message):
      sweeps.parse_criterion(bad, 256)


def test_compressibility_reads_the_curve_from_zero():
  points = [dict(kind="one_shot", criterion="dense", ratio=0.0, seed=0, test_accuracy=0.80)]
  for r, acc in ((0.1, 0.799), (0.2, 0.797), (0.3, 0.793), (0.4, 0.799), (0.5, 0.70)):
    points.append(dict(kind="one_shot", criterion="last", ratio=r, seed=0, test_accuracy=acc))
  comp = sweeps.compressibility(points)
  assert comp["last"] == {"within_0.5": 0.2, "within_1.0": 0.4}


def test_iterative_sweep_records_each_step(trained, tmp_path):
  model, config, _ = checkpoint.load_model(trained)
  task = data.build_task(
    config.data, batch_size=8, eval_batch_size=config.train.eval_batch_size, seed=config.seed
  )
  store = sweeps.PointStore(str(tmp_path))
  sweeps.iterative(
    model,
    task,
    config,
    store,
    criterion="last",
    target=0.5,
    steps=2,
    finetune_epochs=1,
    splits=("val",),
  )
  steps = sorted((p for p in store.points.values()), key=lambda p: p["ratio"])
  assert [round(p["ratio"], 2) for p in steps] == [0.25, 0.5]
  assert steps[-1]["ratio_achieved"] == pytest.approx(0.5)
  assert all(np.isfinite(p["val_accuracy"]) for p in steps)
