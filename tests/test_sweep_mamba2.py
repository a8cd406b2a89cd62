"""Sweeps and `prune --max_drop` on a selective model (Mamba-2): the criteria that apply
to it, calibration batches where they are needed, and the one-line refusal of the others.

A tiny 2-layer Mamba-2 (2 groups x 4 states per layer: 16 states) on short synthetic
ListOps, trained one short epoch and saved once per test session."""

import os
import subprocess
import sys

import numpy as np
import pytest

from last_nnx import data, pruning, sweeps
from last_nnx.model import build_model
from last_nnx.sweeps.saved import how_far, how_far_table, prune_saved_model
from last_nnx.train import checkpoint, events, steps, streams
from last_nnx.train.optim import make_optimizer
from tests.session_once import once_per_session
from tests.test_train_loop import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELECTIVE = ("calibrated", "gramian", "magnitude", "random", "uniform")


def _config(cache_dir: str):
  config = get_config("listops", "mamba2,smoke")
  config.data.cache_dir = cache_dir
  config.data.synthetic.seq_len = 24
  config.data.synthetic.max_length = 24
  config.data.synthetic.n_train = 64
  config.data.synthetic.n_val = 32
  config.data.synthetic.n_test = 32
  config.model.d_model = 8
  config.model.n_layers = 2
  config.model.ssm_config.update(state_size=4, head_dim=4, n_groups=2, chunk_size=4)
  config.train.batch_size = 16
  config.train.eval_batch_size = 32
  return config


def _task(config):
  return data.build_task(
    config.data,
    batch_size=config.train.batch_size,
    eval_batch_size=config.train.eval_batch_size,
    seed=config.seed,
  )


def _train_and_save(root) -> None:
  config = _config(str(root / "cache"))
  task = _task(config)
  spec = dict(
    n_classes=task.n_classes,
    vocab_size=task.vocab_size,
    in_dim=task.in_dim,
    retrieval=task.retrieval,
  )
  model = build_model(config.model, seed=config.seed, **spec)
  optimizer, _ = make_optimizer(
    model, config.optim, total_steps=task.steps_per_epoch, steps_per_epoch=task.steps_per_epoch
  )
  model.train()
  steps.fit(model, optimizer, task.train_batches(0))
  model.eval()
  checkpoint.save_model(
    str(root / "run"), model, config, dict(model_spec=spec, run=dict(events=[]))
  )


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
  """Workdir of the tiny Mamba-2, trained one epoch (4 steps) and saved: once per session
  (the first xdist worker to need it trains it; a module fixture trained it once per worker)."""
  return str(once_per_session(tmp_path_factory, "mamba2-saved", _train_and_save) / "run")


def _load(workdir):
  model, config, _ = checkpoint.load_model(workdir)
  return model, config, _task(config)


def _per_group(model):
  return [(np.asarray(l.state_mask[...]) > 0).sum(axis=1) for l in model.prunable_layers().values()]


def test_one_shot_measures_every_selective_criterion(saved, tmp_path):
  model, config, task = _load(saved)
  assert pruning.applicable(model) == SELECTIVE
  store = sweeps.PointStore(str(tmp_path))
  sweeps.one_shot(
    model, task, config, store, ratios=[0.5], seeds=2, calibration_batches=1
  )  # criteria: those that apply
  points = [p for p in store.points.values() if p["criterion"] != "dense"]
  assert sorted({p["criterion"] for p in points}) == list(SELECTIVE)
  assert len(points) == 4 + 2  # random over 2 seeds
  for p in points:  # 16 states, half pruned, each group keeps one (masked copies)
    assert sum(p["states"].values()) == 8 and p["ratio_achieved"] == pytest.approx(0.5)
    assert np.isfinite(p["val_accuracy"])
  assert sum(events.states_per_layer(model).values()) == 16  # the swept model is untouched
  text = sweeps.write_report(
    store, str(tmp_path), synthetic=True, model=model, calibration=sweeps.max_drop.calibration(task)
  )
  assert "| gramian |" in text and "| calibrated |" in text
  for name in ("accuracy_vs_ratio.png", "allocation.png", "scores.png"):
    assert os.path.getsize(tmp_path / name) > 0, name
  assert "gramian" in sweeps.plot_curves(
    list(store.points.values()), str(tmp_path / "c.png"), synthetic=True
  )
  # An LTI criterion, or a horizon, is refused before anything is measured.
  for spec, match in (
    ("last", "does not apply to selective.*calibrated, gramian"),
    ("calibrated@L", "horizon"),
  ):
    with pytest.raises(ValueError, match=match) as refused:
      sweeps.one_shot(
        model,
        task,
        config,
        sweeps.PointStore(str(tmp_path / spec)),
        ratios=[0.5],
        criteria=[spec],
        seeds=1,
      )
    assert "\n" not in str(refused.value)
    assert not os.listdir(tmp_path / spec)  # nothing measured


def test_iterative_calibrated_reads_calibration_batches_and_compacts(saved, tmp_path, monkeypatch):
  model, config, task = _load(saved)
  sweeps.own_buffers(model)
  from last_nnx.train import optim

  read, built = [], []
  real, real_optimizer = streams.calibration, optim.make_optimizer
  monkeypatch.setattr(streams, "calibration", lambda t, k: read.append(k) or real(t, k))
  monkeypatch.setattr(
    optim,
    "make_optimizer",
    lambda m, c, **kw: (
      built.append((kw["lr_scale"], c.warmup_epochs)) or real_optimizer(m, c, **kw)
    ),
  )
  store = sweeps.PointStore(str(tmp_path))
  sweeps.iterative(
    model,
    task,
    config,
    store,
    criterion="calibrated",
    target=0.5,
    steps=2,
    finetune_epochs=1,
    splits=("val",),
    calibration_batches=1,
    lr_scale=0.1,
  )
  assert read == [0, 1]  # other rows at each step
  assert built == [(0.1, 0), (0.1, 0)]  # fine-tuned at a tenth of the rates, no warmup
  done = sorted(store.points.values(), key=lambda p: p["ratio"])
  assert [round(p["ratio"], 2) for p in done] == [0.25, 0.5]
  assert done[-1]["ratio_achieved"] == pytest.approx(0.5)
  assert all(np.isfinite(p["val_accuracy"]) for p in done)
  # Compacted: the arrays hold the live states only, and every group kept some.
  for layer in model.prunable_layers().values():
    assert np.asarray(layer.state_mask[...]).size < 8
  assert all(np.all(g >= 1) for g in _per_group(model))


def test_max_drop_search_on_a_mamba2_workdir(saved, tmp_path):
  out = str(tmp_path / "far")
  summary = how_far(saved, 100.0, ["all"], out, calibration_batches=1)
  assert [r["criterion"] for r in summary["results"]] == list(SELECTIVE)
  for r in summary["results"]:
    # A 100-point tolerance accepts everything: one state per group (2 layers x 2 groups).
    assert r["kept"] == r["states"] == 4, r
    model, _, _ = checkpoint.load_model(r["out_dir"])
    assert sum(events.states_per_layer(model).values()) == 4
    assert all(np.all(g == 1) for g in _per_group(model))
  assert "| gramian |" in how_far_table(summary)
  # prune_saved_model: no criterion named -> calibrated; an LTI one refused before evaluating.
  result = prune_saved_model(
    saved, 0.5, None, out_dir=str(tmp_path / "p"), evaluate=False, calibration_batches=1
  )
  assert result["report"]["criterion"] == "calibrated" and result["states_after"] == 8
  never = lambda *a: pytest.fail("evaluated before refusing")
  with pytest.raises(ValueError, match="does not apply to selective"):
    prune_saved_model(saved, 0.5, "last", out_dir=str(tmp_path / "q"), evaluate_fn=never)
  with pytest.raises(ValueError, match="truncates LTI norms"):
    prune_saved_model(saved, 0.5, "gramian@L", out_dir=str(tmp_path / "q"), evaluate_fn=never)


def _refusal(saved, program, args, out):
  proc = subprocess.run(
    [sys.executable, "-m", program, f"--workdir={saved}", f"--out={out}", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode != 0, proc.stdout
  lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert "'last' does not apply to selective" in lines[0]
  assert "calibrated, gramian, magnitude, random, uniform" in lines[0]
  assert not os.path.exists(out) or not os.listdir(out)  # nothing measured


@pytest.mark.slow  # a subprocess (~5 s); the in-process refusal test stays in the default suite
def test_sweep_cli_refuses_an_lti_criterion_on_mamba2_in_one_line(saved, tmp_path):
  _refusal(saved, "last_nnx.cli.sweep", ["--criteria=calibrated,last"], str(tmp_path / "sweep"))


@pytest.mark.slow
def test_prune_cli_refuses_an_lti_criterion_on_mamba2_in_one_line(saved, tmp_path):
  _refusal(saved, "last_nnx.cli.prune", ["--criterion=last", "--eval_splits="], str(tmp_path / "p"))
  _refusal(
    saved, "last_nnx.cli.prune", ["--criterion=gramian,last", "--max_drop=1"], str(tmp_path / "far")
  )
