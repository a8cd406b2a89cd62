"""End-to-end training runs: smoke presets, resume after a kill, divergence handling."""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from last_nnx.train import batchnorm, events, loop, plan, run_state, steps, story
from tests.session_once import once_per_session, session_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx", "speech")


def get_config(task, arg):
  spec = importlib.util.spec_from_file_location(
    f"cfg_{task}", os.path.join(ROOT, "experiments", "configs", f"{task}.py")
  )
  module = importlib.util.module_from_spec(spec)
  sys.path.insert(0, ROOT)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _data_cache(tmp_path_factory):
  return str(tmp_path_factory.getbasetemp() / "data-cache")


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
  monkeypatch.setenv("LAST_NNX_CACHE", _data_cache(tmp_path_factory))


def _smoke(task, model, tmp_path, **overrides):
  config = get_config(task, f"{model},smoke")
  config.data.cache_dir = os.environ["LAST_NNX_CACHE"]
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split(".")
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


# The ListOps S5 smoke config most runs here (and in test_distributed, test_train_events,
# test_accelerator_ready, test_regularizers) start from: one layer (compiling a train step
# is most of a short run's cost), dropout on (a resume must restore the dropout RNG too),
# and 3 training epochs: epoch 1, its pruning event, fine-tuning, epochs 2 and 3. Runs that
# differ from it only in host-side settings (gates, a faked divergence, checkpoint cadence;
# the CLI runs of the kill -9 test) load its compiled steps from the compilation cache.
BASE = {"model.n_layers": 1, "model.dropout": 0.1, "train.epochs": 3}
BASE_RUN = dict(BASE, **{"pruning.recalibrate_batches": 2})  # base_run: BatchNorm recalibrated


def _base(tmp_path, **overrides):
  return _smoke("listops", "s5", tmp_path, **dict(BASE, **overrides))


def base_run_config():
  """`base_run`'s config."""
  return _base(None, **BASE_RUN)


@pytest.fixture(scope="session")
def base_run(tmp_path_factory):
  """One `base_run_config()` run that several tests inspect (also test_distributed's
  single-device reference), trained once per test session even with xdist workers (the
  first to need it trains it, the others wait for it): (config, summary, workdir,
  recalibration batch counts)."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("LAST_NNX_CACHE", str(session_folder(tmp_path_factory, "base-run") / "cache"))
    config = base_run_config()

  def fill(root):
    used, real = [], batchnorm.recalibrate_batch_norm
    with pytest.MonkeyPatch.context() as mp:
      mp.setattr(
        batchnorm,
        "recalibrate_batch_norm",
        lambda m, b, max_batches: used.append(real(m, b, max_batches=max_batches)),
      )
      loop.train_and_evaluate(config, str(root / "run"))
    (root / "used.json").write_text(json.dumps(used))

  root = once_per_session(tmp_path_factory, "base-run", fill)
  with open(root / "run" / "summary.json") as f:
    summary = json.load(f)
  return config, summary, root / "run", json.loads((root / "used.json").read_text())


def _check_summary(summary, workdir):
  assert summary["synthetic_data"] is True
  assert [e["status"] for e in summary["pruning_events"]] == ["applied"]
  initial, final = summary["states_initial"], summary["states_final"]
  assert sum(final.values()) < sum(initial.values())
  assert summary["ratio_achieved"] == pytest.approx(0.5, abs=0.13)
  before = summary["before_first_event"]
  assert "accuracy" in before["val"] and "accuracy" in summary["final"]["test"]
  assert before["epoch"] == summary["pruning_events"][0]["train_epoch"]
  assert summary["final"]["states"] == final and summary["dense_baseline"] is None
  event = summary["pruning_events"][0]
  assert "accuracy" in event["val_before"] and "accuracy" in event["val_after"]
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["states_final"] == final


# Every task and both models in the default suite (s5-listops end to end in
# test_smoke_listops_s5_..., s4d-listops in test_horizon_minus_one_...); the other pairs
# run with `make test-all`.
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
  "task,model",
  [
    pytest.param("listops", "s5", marks=_SLOW),
    pytest.param("listops", "s4d", marks=_SLOW),
    pytest.param("retrieval", "s5", marks=_SLOW),
    ("retrieval", "s4d"),
    pytest.param("pathfinder", "s5", marks=_SLOW),
    ("pathfinder", "s4d"),
  ],
)
def test_smoke_trains_and_prunes(task, model, tmp_path):
  # One layer: the task's data, encoder and the layer type end to end, compiled faster.
  config = _smoke(task, model, tmp_path, **{"model.n_layers": 1})
  summary = loop.train_and_evaluate(config, str(tmp_path))
  _check_summary(summary, str(tmp_path))


def test_smoke_listops_s5_trains_and_prunes(base_run):
  _, summary, workdir, _ = base_run
  _check_summary(summary, str(workdir))


def test_pruning_event_recalibrates_batch_norm(base_run):
  _, summary, _, used = base_run
  assert used == [2] and summary["pruning_events"][0]["status"] == "applied"


@pytest.mark.slow
@pytest.mark.parametrize("task", ["text", "image", "pathx", "speech"])
@pytest.mark.parametrize("model", ["s5", "s4d"])
def test_smoke_trains_and_prunes_other_tasks(task, model, tmp_path):
  config = _smoke(task, model, tmp_path, **{"model.n_layers": 1})
  summary = loop.train_and_evaluate(config, str(tmp_path))
  _check_summary(summary, str(tmp_path))


def interrupted_copy(workdir, part):
  """A copy of a finished run's ``workdir`` at ``part`` as a kill after its first
  checkpoint leaves it: later checkpoints and summary.json deleted."""
  shutil.copytree(workdir, part)
  ckpt_dir = part / "checkpoints"
  saved = sorted(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
  for s in saved[1:]:
    shutil.rmtree(ckpt_dir / str(s))
  os.remove(part / "summary.json")
  return part


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, base_run):
  config, full, full_dir, _ = base_run  # epoch 1, pruning event, fine-tuning, epochs 2, 3
  # Stop after epoch 2's checkpoint (pruned shapes, dropout RNG mid-run): delete everything
  # later, as a kill would. (The run is deterministic, so a copy of the full run's workdir
  # stands for a second run of the same config.)
  part = interrupted_copy(full_dir, tmp_path / "part")
  resumed = loop.train_and_evaluate(config, str(part))
  assert [e["epoch"] for e in resumed["epochs"]] == [1, 2, 3, 4]
  assert resumed["pruning_events"] == full["pruning_events"]
  assert resumed["states_final"] == full["states_final"]
  full_epochs = {e["epoch"]: e for e in full["epochs"]}
  for e in resumed["epochs"]:
    ref = full_epochs[e["epoch"]]
    for k in ("val/accuracy", "val/loss", "train/loss", "states/total"):
      assert e[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-6), (e["epoch"], k)
  for split in ("val", "test"):
    assert resumed["final"][split] == pytest.approx(full["final"][split], rel=1e-5)


# ~36 s cold (three CLI runs): CI's two-process tests (tests/test_multihost*.py, in .ci/run)
# kill a CLI run and rerun it; the in-process resume and config-change tests stay here.
@pytest.mark.slow
def test_kill_9_then_rerun_resumes_and_finishes(tmp_path):
  """A real SIGKILL mid-run (mid-epoch checkpoints on), then the same command again.

  The config is `base_run`'s (checkpoint cadence aside), so the CLI loads its compiled
  steps from the compilation cache when that ran first."""
  workdir = tmp_path / "run"
  cmd = [
    sys.executable,
    "-m",
    "last_nnx.train",
    "--config",
    os.path.join(ROOT, "experiments/configs/listops.py") + ":s5,smoke",
    "--workdir",
    str(workdir),
    "--config.train.checkpoint_every_steps=3",
  ]
  cmd += [f"--config.{k}={v}" for k, v in BASE_RUN.items()]
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen(
    cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
  )
  killed = False
  for line in proc.stderr:
    if "fine-tune 1/1 after epoch 1/3:" in line:  # after the event: pruned shapes on disk
      proc.send_signal(signal.SIGKILL)
      killed = True
      break
  proc.wait()
  assert killed, "the run finished before it could be killed"
  assert not (workdir / "summary.json").exists()
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-2000:]
  assert "resumed from" in done.stderr
  # Epochs are numbered by training epoch across resume, fine-tuning and pruning.
  assert re.search(r"continuing at (fine-tune 1/1 after epoch 1/3|epoch [23]/3) ", done.stderr)
  assert "epoch 3/3:" in done.stderr and "epoch 4/" not in done.stderr
  with open(workdir / "summary.json") as f:
    summary = json.load(f)
  assert sum(summary["states_final"].values()) < sum(summary["states_initial"].values())
  assert len(summary["epochs"]) == 4
  # The same workdir with another experiment's config is refused, not silently resumed.
  other = subprocess.run(
    cmd + ["--config.pruning.schedule=none"], cwd=ROOT, env=env, capture_output=True, text=True
  )
  assert other.returncode != 0
  assert "another config (pruning.schedule: 'one_shot' -> 'none')" in other.stderr
  assert "give a new --workdir" in other.stderr and "Traceback" not in other.stderr


def test_epoch_labels_count_training_epochs_and_fine_tuning_apart():
  config = get_config("listops", "s5,smoke")
  config.train.epochs, config.pruning.schedule = 3, "iterative"
  config.pruning.start_epoch, config.pruning.end_epoch, config.pruning.every = 1, 2, 1
  config.pruning.finetune_epochs = 2
  plan = loop.epoch_plan(config)
  labels = [loop.epoch_label(plan, i) for i in range(len(plan))]
  assert labels == [
    "epoch 1/3",
    "fine-tune 1/2 after epoch 1/3",
    "fine-tune 2/2 after epoch 1/3",
    "epoch 2/3",
    "fine-tune 1/2 after epoch 2/3",
    "fine-tune 2/2 after epoch 2/3",
    "epoch 3/3",
  ]


def test_resume_allows_logging_and_device_changes_only():
  config = get_config("listops", "s5,smoke")
  saved = json.loads(json.dumps(config.to_dict()))
  config.train.log_every_steps = 1000
  config.train.num_devices = 2
  run_state.check_same_run(saved, config, "w/checkpoints")
  config.optim.ssm_lr = 1.0
  with pytest.raises(ValueError, match=r"optim.ssm_lr: 0.001 -> 1.0"):
    run_state.check_same_run(saved, config, "w/checkpoints")


@pytest.mark.parametrize("persistent", [False, True])
def test_divergence_names_parameter_and_rolls_back(tmp_path, monkeypatch, caplog, persistent):
  # Step 8 is the 2nd fine-tuning step: the roll-back restores the pruned checkpoint.
  config = _base(tmp_path, **{"train.nan_retries": 1})
  real_step = steps.train_step
  calls = {"n": 0}

  def blow_up(model, optimizer, *batch, **kwargs):
    """An update that sends one SSM parameter to NaN (once, or every step from then on)."""
    calls["n"] += 1
    out = real_step(model, optimizer, *batch, **kwargs)
    if calls["n"] == 8 or (persistent and calls["n"] > 8):
      layer = model.blocks[0].ssm
      layer.log_step.set_value(layer.log_step[...] * np.nan)
    return out

  monkeypatch.setattr(steps, "train_step", blow_up)
  if persistent:
    with pytest.raises(
      steps.Diverged, match=r"'blocks'\]\[0\]\['ssm'\]\['log_step'.*no retries left"
    ):
      loop.train_and_evaluate(config, str(tmp_path))
  else:
    summary = loop.train_and_evaluate(config, str(tmp_path))
    assert len(summary["epochs"]) == 4 and all(
      np.isfinite(e["train/loss"]) for e in summary["epochs"]
    )
  assert "non-finite parameter ['blocks'][0]['ssm']['log_step'] at step" in caplog.text
  assert "rolling back to the last checkpoint and retrying with lr x0.5" in caplog.text


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("pruning.target_ratio", 1.2, r"\[0, 1\)"),
    ("pruning.criterion", "nope", "registered"),
    ("pruning.start_epoch", 99, "after the last training epoch"),
    ("data.dir", "/does/not/exist", "does not exist"),
    ("pruning.horizon", -2, "pruning horizon -2"),
  ],
)
def test_bad_config_one_line_errors(tmp_path, field, value, message):
  config = _smoke("listops", "s5", tmp_path, **{field: value})
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    loop.train_and_evaluate(config, str(tmp_path))


def test_pruning_off_leaves_its_epochs_unchecked(tmp_path):
  """With ``pruning.schedule=none`` a config's pruning epochs are never used, so a short dense
  run of a config whose pruning starts late is valid."""
  config = _smoke("pydocs", "mamba2", tmp_path, **{"pruning.start_epoch": 99})
  with pytest.raises(ValueError, match="after the last training epoch"):
    plan.validate_config(config)
  config.pruning.schedule = "none"
  plan.validate_config(config)


# The CLI's unknown-field and bad-option errors: tests/test_cli_errors.py
# (test_unknown_field_suggests_the_nearest, test_unknown_preset_names_presets_and_model_types).


@pytest.mark.parametrize("policy", ["rollback", "halve"])
def test_accuracy_guard_rail_undoes_a_harmful_event(tmp_path, monkeypatch, policy):
  config = _base(
    tmp_path,
    **{"pruning.max_acc_drop": 0.05, "pruning.on_violation": policy, "pruning.max_halvings": 2},
  )
  real_evaluate = steps.evaluate
  ratios, tried = [], []

  def evaluate(model, task, split, mesh=None):
    """Pruning 'hurts' (accuracy 1 -> 0.5) on the first two tries, not on the third."""
    result = real_evaluate(model, task, split, mesh)
    if len(tried) < len(ratios):  # the evaluation right after a try: its states
      tried.append(sum(events.states_per_layer(model).values()))
    result["accuracy"] = 0.5 if 0 < len(ratios) < 3 else 1.0
    return result

  monkeypatch.setattr(steps, "evaluate", evaluate)
  real_prune = events.pruning.prune
  monkeypatch.setattr(
    events.pruning,
    "prune",
    lambda model, ratio, **kw: ratios.append(ratio) or real_prune(model, ratio, **kw),
  )
  summary = loop.train_and_evaluate(config, str(tmp_path))
  event = summary["pruning_events"][0]
  assert summary["states_initial"] == {"blocks.0.ssm": 4}
  if policy == "rollback":
    assert ratios == [0.5] and tried == [2] and event["status"] == "rolled_back"
    assert summary["states_final"] == summary["states_initial"]
  else:  # 50% (keeps 2 of 4) -> 25% (3) -> 12.5% (floor(3.5) = 3: kept), each from the
    # dense model: a try pruning the previous try's model would keep at most 2.
    assert ratios == [0.5, 0.25, 0.125] and tried == [2, 3, 3] and event["status"] == "applied"
    assert summary["states_final"] == {"blocks.0.ssm": 3}


def test_horizon_minus_one_scores_over_the_sequence_length(tmp_path, monkeypatch):
  config = _smoke("listops", "s4d", tmp_path, **{"pruning.horizon": -1, "model.n_layers": 1})
  seen = []
  real_prune = events.pruning.prune
  monkeypatch.setattr(
    events.pruning,
    "prune",
    lambda model, ratio, **kw: seen.append(kw["options"].horizon) or real_prune(model, ratio, **kw),
  )
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert seen == [256]  # the smoke preset's synthetic L
  _check_summary(summary, str(tmp_path))  # the s4d-listops smoke run, end to end


def test_unstable_poles_are_warned_about(caplog):
  config = get_config("listops", "s5,smoke")
  story.warn_if_unstable(events.ssm_ranges(_unstable_s5_model()), config)
  assert "|lambda| = 1.0" in caplog.text and "clip_eigs=True" in caplog.text
  caplog.clear()
  story.warn_if_unstable({"ssm/pole_abs_max": 0.999}, config)
  assert caplog.text == ""


def _unstable_s5_model():
  from flax import nnx

  from last_nnx.model import SequenceModel

  model = SequenceModel(
    n_classes=3,
    vocab_size=7,
    d_model=8,
    n_layers=1,
    ssm="s5",
    ssm_config=dict(state_size=4),
    rngs=nnx.Rngs(0),
  )
  ssm = model.blocks[0].ssm
  ssm.Lambda_re[...] = ssm.Lambda_re[...].at[0].set(0.01)  # Re(lambda) > 0: |lambda_bar| > 1
  return model


def test_shallow_listops_preset(tmp_path):
  from last_nnx import data

  config = get_config("listops", "s5,demo,shallow")
  config.data.cache_dir = os.environ["LAST_NNX_CACHE"]
  task = data.build_task(config.data, batch_size=32)
  assert task.seq_len == 64 and config.model.d_model == 64  # demo model, shallow data
  x, lengths, _ = next(task.train_batches(0))
  assert x.shape == (32, 64) and lengths.max() <= 64
  with pytest.raises(ValueError, match="ListOps-only"):
    get_config("text", "shallow")


def test_minimum_reduction_gate_skips_tiny_events(tmp_path):
  config = _base(tmp_path, **{"pruning.min_reduction": 0.9})
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert summary["pruning_events"][0]["status"] == "skipped"
  assert summary["states_final"] == summary["states_initial"]
