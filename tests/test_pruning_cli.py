"""`python -m last_nnx.cli.prune`: its core `prune_saved_model`, with checkpoints faked or real."""

import json
import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import build_model
from last_nnx.ssm import StateMask
from last_nnx.sweeps import saved
from last_nnx.train import checkpoint

MODEL = dict(
  d_model=8,
  n_layers=2,
  ssm="s5",
  norm="layer",
  ssm_config=dict(state_size=16, bidirectional=True, blocks=2),
)
SPEC = dict(n_classes=4, vocab_size=11, in_dim=1, retrieval=False)


def _config():
  return ml_collections.ConfigDict(dict(seed=0, model=MODEL))


def _dense():
  model = build_model(ml_collections.ConfigDict(MODEL), seed=0, **SPEC)
  model.eval()
  return model


def _assert_same_model(a, b):
  """Same parameters and state masks, exactly (so the same outputs)."""
  arrays = (nnx.Param, StateMask)
  flat_a = nnx.to_flat_state(nnx.state(a, arrays))
  flat_b = nnx.to_flat_state(nnx.state(b, arrays))
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  for (path, x), (_, y) in zip(flat_a, flat_b):
    np.testing.assert_array_equal(
      np.asarray(x.get_value()), np.asarray(y.get_value()), err_msg=str(path)
    )


class FakeCheckpoints:
  """Stands in for `checkpoint.load_model`/`save_model` (in memory)."""

  def __init__(self, model, meta):
    self.model, self.meta, self.saved, self.loads = model, meta, {}, 0

  def load_model(self, workdir, which="latest"):
    self.loads += 1
    return (
      self.model,
      _config(),
      checkpoint.CheckpointMeta.from_dict(json.loads(json.dumps(self.meta))),
    )

  def save_model(self, out_dir, model, config, meta, step=0):
    self.saved[out_dir] = (model, config, json.loads(json.dumps(meta.to_dict())))


@pytest.fixture
def fake(monkeypatch):
  def install(model, meta):
    f = FakeCheckpoints(model, meta)
    monkeypatch.setattr(checkpoint, "load_model", f.load_model)
    monkeypatch.setattr(checkpoint, "save_model", f.save_model)
    return f

  return install


def test_prunes_saves_and_records_history(fake, tmp_path):
  dense = _dense()
  f = fake(nnx.clone(dense), dict(model_spec=SPEC, run=dict(events=[], initial_states={})))
  out = str(tmp_path / "out")
  summary = saved.prune_saved_model(
    str(tmp_path / "run"), 0.5, "last", "compact", out, evaluate=False
  )
  model, _, meta = f.saved[out]
  assert summary["states_before"] == 16 and summary["states_after"] == 8
  assert sum(l.state_shape[0] for l in model.prunable_layers().values()) == 8  # compacted
  assert meta["model_spec"] == SPEC
  event = meta["run"]["events"][-1]
  assert event["criterion"] == "last" and event["status"] == "applied"
  assert pruning.PruneReport.from_dict(event["report"]).states_after == 8
  # The saved history rebuilds the saved model from the dense one.
  history = pruning.PruningHistory.from_json(meta["pruning"]["history"])
  replayed = nnx.clone(dense)
  pruning.replay(replayed, history)
  _assert_same_model(replayed, model)
  with open(os.path.join(out, "prune_report.json")) as fh:
    assert json.load(fh)["report"]["criterion"] == "last"
  assert summary["before"] == {} and summary["splits"] == {}


def test_appends_to_a_training_runs_history_and_evaluates(fake, tmp_path):
  dense = _dense()
  trained = nnx.clone(dense)
  first = pruning.prune(trained, 0.25, mode="mask")
  run = dict(
    initial_states={p: 8 for p in first.layers},
    events=[
      dict(status="applied", report=json.loads(first.to_json())),
      dict(status="rolled_back", report=json.loads(first.to_json())),
    ],
  )
  f = fake(trained, dict(model_spec=SPEC, run=run))
  calls = []

  def evaluate_fn(model, config, splits):
    calls.append(splits)
    return {s: dict(accuracy=0.5, loss=1.0) for s in splits}

  out = str(tmp_path / "out")
  summary = saved.prune_saved_model(
    str(tmp_path / "run"),
    0.5,
    "energy",
    "compact",
    out,
    eval_splits=("val", "test"),
    evaluate_fn=evaluate_fn,
  )
  assert calls == [("val", "test")] * 2
  assert summary["before"] == dict(accuracy=0.5, loss=1.0)
  assert set(summary["splits"]) == {"val", "test"}
  report = pruning.PruneReport.from_dict(summary["report"])
  assert report.states_before == 12 and report.states_after == 6
  assert report.ratio_achieved_total == pytest.approx(1 - 6 / 16)
  model, _, meta = f.saved[out]
  history = pruning.PruningHistory.from_json(meta["pruning"]["history"])
  assert [e.mode for e in history.events] == ["mask", "compact"]
  replayed = nnx.clone(dense)
  pruning.replay(replayed, history)
  _assert_same_model(replayed, model)


def test_bad_inputs_fail_before_loading(fake, tmp_path):
  f = fake(_dense(), dict(model_spec=SPEC))
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    saved.prune_saved_model(str(tmp_path), 1.0, evaluate=False)
  with pytest.raises(ValueError, match="registered"):
    saved.prune_saved_model(str(tmp_path), 0.3, "nope", evaluate=False)
  with pytest.raises(ValueError, match="mode"):
    saved.prune_saved_model(str(tmp_path), 0.3, "last", "shrink", evaluate=False)
  with pytest.raises(ValueError, match="workdir itself"):
    saved.prune_saved_model(str(tmp_path), 0.3, out_dir=str(tmp_path), evaluate=False)
  with pytest.raises(ValueError, match="horizon -3"):
    saved.prune_saved_model(str(tmp_path), 0.3, "last@-3", evaluate=False)
  assert f.loads == 0


def test_horizon_reaches_the_scores_and_the_report(fake, tmp_path):
  dense = _dense()
  f = fake(nnx.clone(dense), dict(model_spec=SPEC, run=dict(events=[], initial_states={})))
  out = str(tmp_path / "out")
  summary = saved.prune_saved_model(
    str(tmp_path / "run"), 0.5, "last@8", "mask", out, evaluate=False
  )
  assert summary["report"]["horizon"] == 8
  expected = nnx.clone(dense)
  pruning.prune(expected, 0.5, mode="mask", horizon=8)
  _assert_same_model(f.saved[out][0], expected)


def test_real_checkpoint_round_trip(tmp_path):
  """Saved with orbax, pruned, loaded back at the pruned size, same outputs."""
  dense = _dense()
  workdir = str(tmp_path / "run")
  checkpoint.save_model(workdir, dense, _config(), dict(model_spec=SPEC, run=dict(events=[])))
  out = str(tmp_path / "pruned")
  summary = saved.prune_saved_model(workdir, 0.5, "last", "compact", out, evaluate=False)
  model, _, meta = checkpoint.load_model(out)
  assert [l.state_shape for l in model.prunable_layers().values()] == [
    (summary["report"]["layers"][p]["states_after"],) for p in model.prunable_layers()
  ]
  expected = nnx.clone(dense)
  pruning.replay(expected, pruning.PruningHistory.from_json(meta.pruning["history"]))
  _assert_same_model(model, expected)


@pytest.mark.slow
def test_command_line(tmp_path):
  workdir = str(tmp_path / "run")
  checkpoint.save_model(workdir, _dense(), _config(), dict(model_spec=SPEC, run=dict(events=[])))
  out = str(tmp_path / "pruned")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "last_nnx.cli.prune",
      f"--workdir={workdir}",
      "--ratio=0.5",
      "--criterion=last",
      "--mode=mask",
      f"--out={out}",
      "--eval_splits=",
    ],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  assert "total" in result.stdout and out in result.stdout
  model, _, _ = checkpoint.load_model(out)
  assert (
    sum(int(np.asarray(l.state_mask[...]).sum()) for l in model.prunable_layers().values()) == 8
  )
  bad = subprocess.run(
    [
      sys.executable,
      "-m",
      "last_nnx.cli.prune",
      f"--workdir={workdir}",
      "--ratio=1.5",
      "--eval_splits=",
    ],
    cwd=root,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert bad.returncode != 0 and "[0, 1)" in bad.stderr
