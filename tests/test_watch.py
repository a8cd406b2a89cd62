"""The per-epoch watch of the states and the 'settled' pruning schedule."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import types

import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.cli import plot_watch
from last_nnx.model import SequenceModel
from last_nnx.pruning import allocate, criteria
from last_nnx.pruning.schedule import (
  PruningSchedule,
  is_settled,
  jaccard,
  settle_targets,
  settled_target,
)
from last_nnx.ssm.base import live_states
from last_nnx.train import loop, plan, run_state, watch
from tests.test_train_loop import ROOT, _cache, _smoke, get_config  # noqa: F401 (autouse fixture)

# ----------------------------------------------------------------------------
# Pure decisions.


def test_jaccard():
  assert jaccard({1, 2, 3}, {2, 3, 4}) == pytest.approx(0.5)
  assert jaccard([("a", 0)], [("a", 0)]) == 1.0
  assert jaccard([], []) == 1.0
  assert jaccard({1}, {2}) == 0.0


def test_settle_targets_ramp_and_end_exactly_at_the_target():
  assert settle_targets(0.8) == [0.8]
  cubic = settle_targets(0.8, 3, "cubic")
  assert cubic == pytest.approx([0.8 * (1 - (2 / 3) ** 3), 0.8 * (1 - (1 / 3) ** 3), 0.8])
  assert settle_targets(0.6, 3, "linear") == pytest.approx([0.2, 0.4, 0.6])
  with pytest.raises(ValueError, match="settle_steps"):
    settle_targets(0.5, 0)


def test_is_settled_needs_enough_known_stable_epochs():
  assert not is_settled([None, 0.0], 0.05, 2)  # the first epoch has nothing to compare with
  assert not is_settled([0.0], 0.05, 2)  # too few epochs
  assert is_settled([0.5, 0.0, 0.04], 0.05, 2)
  assert not is_settled([0.0, 0.0, 0.06], 0.05, 2)
  assert not is_settled([0.0, None, 0.0], 0.05, 2)  # a pruning event in between resets


def test_settled_fires_when_stable_not_before_and_at_the_deadline():
  # Keep-set changes per epoch: unstable for 3 epochs, then stable.
  changes = [None, 0.4, 0.3, 0.02, 0.0, 0.0]
  kw = dict(targets=[0.5], tolerance=0.05, epochs=2, start_epoch=2, end_epoch=8)
  fired = [settled_target(epoch=e, changes=changes[:e], steps_done=0, **kw) for e in range(1, 7)]
  assert fired == [None, None, None, None, 0.5, 0.5]  # epoch 5: two stable epochs in a row
  # Not before start_epoch, even when stable.
  assert (
    settled_target(epoch=3, changes=[None, 0.0, 0.0], steps_done=0, **dict(kw, start_epoch=4))
    is None
  )
  # Never stable: the deadline prunes to the final target, nothing after it.
  never = [None] + [0.5] * 9
  assert settled_target(epoch=8, changes=never[:8], steps_done=0, **kw) == 0.5
  assert settled_target(epoch=7, changes=never[:7], steps_done=0, **kw) is None
  assert settled_target(epoch=9, changes=never[:9], steps_done=0, **kw) is None
  # Steps: the next pending target; all done: nothing more.
  steps = dict(kw, targets=[0.3, 0.5])
  assert settled_target(epoch=5, changes=changes[:5], steps_done=1, **steps) == 0.5
  assert settled_target(epoch=5, changes=changes[:5], steps_done=0, **steps) == 0.3
  assert settled_target(epoch=8, changes=never[:8], steps_done=0, **steps) == 0.5
  assert settled_target(epoch=5, changes=changes[:5], steps_done=2, **steps) is None


def test_settled_schedule_has_no_fixed_events():
  schedule = PruningSchedule(kind="settled", target_ratio=0.5, start_epoch=2, end_epoch=5)
  assert schedule.events() == {}


def test_settled_plan_marks_the_window_and_fine_tunes_after_the_deadline():
  config = get_config("listops", "s5,smoke")
  config.train.epochs = 6
  config.pruning.update(schedule="settled", start_epoch=2, end_epoch=4, finetune_epochs=1)
  p = plan.epoch_plan(config)
  assert [(s.train_epoch, s.finetune, s.settle) for s in p] == [
    (1, False, False),
    (2, False, True),
    (3, False, True),
    (4, False, True),
    (4, True, False),
    (5, False, False),
    (6, False, False),
  ]
  assert all(s.target_ratio is None for s in p)
  plan.validate_config(config)


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("pruning.criterion", "calibrated", "needs calibration data"),
    ("pruning.criterion", "balanced", "a projection"),
    ("watch.enabled", False, "watch.enabled is False"),
    ("pruning.settle_tolerance", 1.0, "settle_tolerance"),
    ("pruning.settle_epochs", 0, "settle_epochs"),
    ("watch.criterion", "nope", "watch.criterion='nope' is unknown"),
  ],
)
def test_settled_config_errors(field, value, message):
  config = get_config("listops", "s5,smoke")
  config.pruning.schedule = "settled"
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(ValueError, match=message):
    plan.validate_config(config)


def test_calibrated_criterion_is_watched_by_a_data_free_one():
  config = get_config("listops", "s5,smoke")
  config.pruning.update(schedule="settled", criterion="calibrated")
  config.watch.criterion = "last"
  plan.validate_config(config)


# ----------------------------------------------------------------------------
# What one epoch's watch records.


def _observed_and_pruned(model, criterion: str, target: float):
  """The watch's record and scores at ``target``, its decoded keep sets, and the report
  of an event pruning a copy of ``model`` as far; and the model's initial live states."""
  initial = sum(live_states(l) for l in model.prunable_layers().values())
  record, scores = watch.observe(
    model,
    criterion=criterion,
    target=target,
    initial_states=initial,
    bidirectional="sum",
    horizon=None,
    min_per_layer=1,
    seed=0,
  )
  report = pruning.prune(nnx.clone(model), target, criterion=criterion, mode="mask")
  return record, scores, watch.decode_keep(record["keep"], record["layout"]), report, initial


def test_observe_predicts_the_keep_set_an_event_prunes_to():
  model = SequenceModel(
    n_classes=4,
    vocab_size=11,
    d_model=8,
    n_layers=3,
    ssm="s5",
    ssm_config=dict(state_size=16, bidirectional=True),
    rngs=nnx.Rngs(0),
  )
  record, scores, keep, report, initial = _observed_and_pruned(model, "last", 0.6)
  for path, layer in report.layers.items():
    assert np.flatnonzero(keep[path]).tolist() == layer.kept
    assert record["states_kept"][path] == layer.states_after
    assert record["energy_kept"][path] == pytest.approx(layer.energy_kept)
  assert sum(record["states_kept"].values()) == allocate.target_count(initial, 0.6)
  assert set(scores) == set(keep) and record["ratio"] == pytest.approx(0.6)
  logs = watch.log10_scores(scores[next(iter(scores))])
  assert logs.max() == pytest.approx(0.0)  # LAST's strongest state scores 1


def test_observe_on_a_selective_model_keeps_a_state_per_group():
  """Mamba-2: the data-free `magnitude` is watched, allocated as an event would (>= 1 per group)."""
  model = SequenceModel(
    n_classes=4,
    vocab_size=11,
    d_model=8,
    n_layers=2,
    ssm="mamba2",
    ssm_config=dict(state_size=4, head_dim=4, n_groups=2, chunk_size=4, bidirectional=False),
    rngs=nnx.Rngs(0),
  )
  record, _, keep, report, _ = _observed_and_pruned(model, "magnitude", 0.8)
  for path, layer in report.layers.items():
    assert np.flatnonzero(keep[path]).tolist() == layer.kept
    assert keep[path].reshape(2, 4).any(axis=1).all()  # each group keeps a state
  assert 0 < record["energy_kept_mean"] <= 1


def test_settled_on_a_selective_model_names_the_watchable_criteria():
  config = get_config("digits", "mamba2")
  config.pruning.schedule = "settled"  # its criterion, calibrated, needs data
  with pytest.raises(ValueError, match="needs calibration data.*magnitude, random"):
    plan.validate_config(config)
  config.watch.criterion = "last"  # LTI only
  with pytest.raises(ValueError, match="does not score selective layers"):
    plan.validate_config(config)
  config.watch.criterion = "magnitude"
  plan.validate_config(config)


def test_a_criterion_that_needs_data_is_not_watched(caplog):
  config = get_config("listops", "s5,smoke")
  config.pruning.criterion = "calibrated"
  ctx = types.SimpleNamespace(config=config)
  run = run_state.RunState()
  spec = plan.EpochSpec(1, False, 0.5)
  with caplog.at_level(logging.INFO):
    watch.epoch_end(ctx, model=None, run=run, spec=spec)
  assert plan.event_target(config, spec, run) == 0.5
  assert run.watch == []
  assert "watch: skipped, criterion 'calibrated' needs calibration data" in caplog.text


# ----------------------------------------------------------------------------
# End to end: scripted keep sets, so the schedule must fire at epoch 5 exactly.

A = np.array([4.0, 3.0, 2.0, 1.0])  # keeps slots 0, 1 of each layer at 50%
B = A[::-1].copy()  # keeps slots 2, 3: Jaccard 0 with A
SCRIPT = {1: A, 2: B, 3: A, 4: A, 5: A}  # changes: -, 1, 1, 0, 0 -> settled after epoch 5


@pytest.fixture
def scripted_scores(monkeypatch):
  """The watch's scores follow SCRIPT by training epoch (the events' too: one pipeline)."""
  now = {}
  evaluate = loop.evaluate_epoch

  def evaluate_and_note(ctx, run, spec, train_scalars):
    now["epoch"] = spec.train_epoch
    return evaluate(ctx, run, spec, train_scalars)

  def layer_scores(modes, criterion, **kw):
    valid = np.asarray(modes.valid, bool)
    s = SCRIPT.get(now["epoch"], A) if modes.num_slots == 4 else np.arange(modes.num_slots, 0, -1)
    return np.where(valid, s.astype(np.float64), -np.inf)

  monkeypatch.setattr(loop, "evaluate_epoch", evaluate_and_note)
  monkeypatch.setattr(criteria, "layer_scores", layer_scores)


def _settled_config(tmp_path):
  return _smoke(
    "listops",
    "s5",
    tmp_path,
    **{
      "train.epochs": 6,
      "train.keep_checkpoints": 20,
      "pruning.schedule": "settled",
      "pruning.start_epoch": 2,
      "pruning.end_epoch": 6,
      "pruning.settle_tolerance": 0.0,
      "pruning.settle_epochs": 2,
      "pruning.finetune_epochs": 0,
      "model.dropout": 0.1,
    },
  )


@pytest.fixture
def settled_run(tmp_path, scripted_scores):
  workdir = tmp_path / "full"
  summary = loop.train_and_evaluate(_settled_config(tmp_path), str(workdir))
  return summary, workdir


def _tensors(workdir, tag):
  import tensorflow as tf
  from tensorboard.backend.event_processing import event_accumulator as ea

  acc = ea.EventAccumulator(str(workdir), size_guidance={ea.TENSORS: 0})
  acc.Reload()
  return [(t.step, tf.make_ndarray(t.tensor_proto)) for t in acc.Tensors(tag)]


@pytest.mark.slow  # two short training runs (~30 s of CPU)
def test_settled_run_end_to_end(settled_run, tmp_path, scripted_scores):
  summary, workdir = settled_run
  # Fires when stable (after epoch 5), not before: one applied event, at epoch 5.
  assert [(e["train_epoch"], e["status"], e["target"]) for e in summary["pruning_events"]] == [
    (5, "applied", 0.5)
  ]
  states = [e["states/total"] for e in summary["epochs"]]
  assert states == [8, 8, 8, 8, 8, 4]  # logged before the epoch's event
  # summary.json: one watch record per epoch, overlaps as scripted.
  with open(workdir / "summary.json") as f:
    records = json.load(f)["watch"]
  assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
  assert [r["overlap_prev"] for r in records] == [None, 0.0, 0.0, 1.0, 1.0, None]
  # The final keep set at the dense size is epoch 5's (A): B's epoch 2 shares nothing.
  assert [r["overlap_final"] for r in records[:5]] == [1.0, 0.0, 1.0, 1.0, 1.0]
  assert [r["final_epoch"] for r in records] == [5, 5, 5, 5, 5, 6]
  assert records[0]["states_kept"] == {"blocks.0.ssm": 2, "blocks.1.ssm": 2}
  assert all(0.0 < v <= 1.0 for r in records for v in r["energy_kept"].values())
  assert "keep" not in records[0]
  # TensorBoard: score histograms (one count per live state) and the overlap scalar.
  hist = _tensors(workdir, "watch/log10_score/blocks.0.ssm")
  assert len(hist) == 6
  assert hist[0][1][:, 2].sum() == 4 and hist[-1][1][:, 2].sum() == 2  # (left, right, count)
  assert np.log10(4.0) == pytest.approx(hist[0][1][:, 1].max())
  overlap = [(s, float(v)) for s, v in _tensors(workdir, "watch/overlap_prev")]
  assert overlap == [
    (r["step"], r["overlap_prev"]) for r in records if r["overlap_prev"] is not None
  ]
  kept = _tensors(workdir, "watch/states_kept/blocks.1.ssm")
  assert [int(v) for _, v in kept] == [2] * 6
  # The figure.
  out = tmp_path / "watch.png"
  plot_watch.plot(*plot_watch.load(str(workdir)), str(out))
  assert out.stat().st_size > 10_000

  # Resume after a kill inside the settling window: checkpoints after epoch 4 (one
  # stable epoch so far) are lost; the rerun must still prune after epoch 5, which it
  # can only if the watch history came back with the checkpoint.
  part = tmp_path / "part"
  shutil.copytree(workdir, part)
  ckpt_dir = part / "checkpoints"
  epoch4 = records[3]["step"]
  for s in os.listdir(ckpt_dir):
    if s.isdigit() and int(s) > epoch4:
      shutil.rmtree(ckpt_dir / s)
  os.remove(part / "summary.json")
  resumed = loop.train_and_evaluate(_settled_config(tmp_path), str(part))
  assert [(e["train_epoch"], e["status"]) for e in resumed["pruning_events"]] == [(5, "applied")]
  assert resumed["states_final"] == summary["states_final"]
  assert [r["overlap_prev"] for r in resumed["watch"]] == [r["overlap_prev"] for r in records]
  for ref, e in zip(summary["epochs"], resumed["epochs"]):
    assert e["val/loss"] == pytest.approx(ref["val/loss"], rel=1e-5), e["epoch"]
  assert resumed["final"]["test"] == pytest.approx(summary["final"]["test"], rel=1e-5)
  assert [d["epoch"] for d in watch.read_scores(str(part))] == [1, 2, 3, 4, 5, 6]


@pytest.mark.slow  # two short training processes
def test_settled_run_killed_in_the_settling_window_resumes_and_decides_the_same(tmp_path):
  """A real SIGKILL after epoch 2 of a settled run (mid-epoch checkpoints on), then the
  same command: the watch history comes back, the event fires once, where the history says."""
  workdir = tmp_path / "run"
  cmd = [
    sys.executable,
    "-m",
    "last_nnx.train",
    "--config",
    os.path.join(ROOT, "experiments/configs/listops.py") + ":s5,smoke",
    "--workdir",
    str(workdir),
    "--config.train.epochs=6",
    "--config.pruning.schedule=settled",
    "--config.pruning.start_epoch=2",
    "--config.pruning.end_epoch=5",
    "--config.pruning.finetune_epochs=0",
    "--config.train.max_steps_per_epoch=8",
    "--config.train.checkpoint_every_steps=3",
  ]
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )
  killed = False
  for line in proc.stderr:
    assert "settled schedule:" not in line, "pruned before the kill"
    if "epoch 2/6:" in line:
      proc.send_signal(signal.SIGKILL)
      killed = True
      break
  proc.wait()
  assert killed, "the run finished before it could be killed"
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "resumed from" in done.stderr
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  records = summary["watch"]
  assert [r["epoch"] for r in records] == list(range(1, 7))  # nothing lost across the kill
  events = summary["pruning_events"]
  assert len(events) == 1 and events[0]["status"] == "applied"
  # The event epoch is the first one at which the recorded history says "settled".
  changes = [None if r["overlap_prev"] is None else 1 - r["overlap_prev"] for r in records]
  expected = next(
    e
    for e in range(1, 7)
    if settled_target(
      epoch=e,
      changes=changes[:e],
      steps_done=0,
      targets=[0.5],
      tolerance=0.05,
      epochs=2,
      start_epoch=2,
      end_epoch=5,
    )
    is not None
  )
  assert events[0]["train_epoch"] == expected
  assert f"keep set stable after epoch {expected}" in done.stderr or expected == 5
