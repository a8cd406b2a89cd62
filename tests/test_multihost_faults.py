"""Two training processes through the paths a fault or a rarer option takes:
a calibrated criterion inside a scheduled event, BatchNorm recalibration after it,
a divergence rolled back on every process, and one process killed while the
event's checkpoint is being written.

Real processes of ``python -m last_nnx.train`` as in tests/test_multihost.py
(its helpers), started through tests/test_divergence.py's launcher where a
fault must be injected. Marked ``multihost`` and ``slow``; CI runs them with
``pytest -m multihost``.
"""

import json
import os
import pickle
import re
import subprocess

import numpy as np
import pytest

from tests.test_divergence import launcher
from tests.test_multihost import _close, _env, _kill, _launch, _params, _wait

pytestmark = [pytest.mark.multihost, pytest.mark.slow]

# The smoke run (18 steps, the event after step 6) pruned by the calibrated criterion,
# its BatchNorm statistics re-estimated on 2 batches after pruning.
CALIBRATED = ["--config.pruning.criterion=calibrated", "--config.pruning.recalibrate_batches=2"]

FAULTS = r"""
def dump_at_finish(prefix):
  # Each process's own copy of the final variables, before the summary.
  import pickle
  import jax
  import numpy as np
  from flax import nnx
  from last_nnx.train import loop
  from last_nnx.train.checkpoint import flatten_state
  finish = loop.finish

  def dumping(ctx, run, *args, **kwargs):
    flat = {k: np.asarray(v.addressable_data(0)) for k, v in
            flatten_state(nnx.state(run.model)).items()}
    with open(f"{prefix}.p{jax.process_index()}.pkl", "wb") as f:
      pickle.dump(flat, f)
    return finish(ctx, run, *args, **kwargs)
  loop.finish = dumping


def kill_in_event_save(process):
  # SIGKILL right after the event's checkpoint was handed to orbax (written asynchronously).
  import signal
  import jax
  from last_nnx.train import checkpoint
  save = checkpoint.Checkpointer.save

  def save_then_die(self, step, model, optimizer, meta):
    save(self, step, model, optimizer, meta)
    if (jax.process_index() == process and meta.events
        and os.path.basename(self.directory) == "checkpoints"):
      os.kill(os.getpid(), signal.SIGKILL)
  checkpoint.Checkpointer.save = save_then_die


if os.environ.get("LAST_NNX_TEST_DUMP"):
  HOOKS.append(lambda: dump_at_finish(os.environ["LAST_NNX_TEST_DUMP"]))
if os.environ.get("LAST_NNX_TEST_KILL_IN_EVENT_SAVE"):
  HOOKS.append(lambda: kill_in_event_save(int(os.environ["LAST_NNX_TEST_KILL_IN_EVENT_SAVE"])))
"""
LAUNCHER = launcher(FAULTS)
# No pruning, no test-split evaluation: 12 steps, the shortest run with a roll-back.
SHORT = ["--config.pruning.schedule=none", "--config.train.eval_test=False"]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
  """Workdirs ``one`` and ``two``: the `CALIBRATED` run on one and on two processes."""
  root = tmp_path_factory.mktemp("calibrated")
  env = _env(root)
  one = _launch(root / "one", str(root / "one"), 1, env, CALIBRATED)
  two = _launch(root / "two", str(root / "two"), 2, env, CALIBRATED)
  try:
    _wait(two, str(root / "two"), timeout=900)
    _wait(one, str(root / "one"), timeout=300)
  finally:
    _kill(one + two)
  return root


def _run_both(workdir, logs: str, env: dict, extra, launcher: str | None = None) -> list[str]:
  """Runs two processes to their end (both must exit 0); their logs."""
  procs = _launch(workdir, logs, 2, env, extra, launcher=launcher)
  try:
    _wait(procs, logs, timeout=900)
  finally:
    _kill(procs)
  return [open(f"{logs}.p{i}.log").read() for i in range(2)]


def _summary(workdir) -> dict:
  with open(os.path.join(workdir, "summary.json")) as f:
    return json.load(f)


def _events(workdir) -> list[dict]:
  """The run's event records with their pruning reports (summary.json leaves those out)."""
  from last_nnx.train.checkpoint import Checkpointer

  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"))
  events = ckpt.latest_usable()[1]["run"]["events"]
  ckpt.close()
  return events


def test_calibrated_event_keeps_the_states_one_process_keeps(calibrated):
  """Every process scores the same global calibration batches a single process reads
  (each process's keep set is checked against the others' inside the run)."""
  a, b = (_events(calibrated / d) for d in ("one", "two"))
  assert [e["status"] for e in a] == [e["status"] for e in b] == ["applied"]
  ra, rb = a[0]["report"], b[0]["report"]
  assert ra["criterion"] == rb["criterion"] == "calibrated"
  assert ra["layers"].keys() == rb["layers"].keys()
  for path, la in ra["layers"].items():
    lb = rb["layers"][path]
    assert lb["kept"] == la["kept"] and len(la["kept"]) < la["states_before"], path
    # The scores come from the calibration data: the same rows give the same energies.
    assert lb["min_kept_score"] == pytest.approx(la["min_kept_score"], rel=1e-3), path
    assert lb["energy_kept"] == pytest.approx(la["energy_kept"], rel=1e-3), path


def test_batch_norm_recalibration_after_the_event_matches_one_process(calibrated):
  a, b = (_summary(calibrated / d) for d in ("one", "two"))
  ea, eb = a["pruning_events"][0], b["pruning_events"][0]
  assert ea["recalibrated_batches"] == eb["recalibrated_batches"] == 2
  for key in ("loss", "accuracy"):
    assert _close(ea["val_after"][key], eb["val_after"][key]), key
    assert _close(a["final"]["val"][key], b["final"]["val"][key]), key
  pa, pb = _params(calibrated / "one"), _params(calibrated / "two")
  stats = [k for k in pa if k.endswith(("/mean", "/var"))]
  assert stats and pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_allclose(pb[k], pa[k], rtol=1e-3, atol=1e-5, err_msg=k)


def test_divergence_rolls_back_on_both_processes_and_goes_on(tmp_path):
  """A NaN after step 5 on both processes (2 epochs of 6 steps, no pruning): the sync at
  the epoch end sees it, both roll back to the checkpoint of step 4 and finish the run
  with the same parameters."""
  env = dict(_env(tmp_path), LAST_NNX_TEST_NAN_AT="5", LAST_NNX_TEST_DUMP=str(tmp_path / "final"))
  for log in _run_both(tmp_path / "w", str(tmp_path / "w"), env, SHORT, launcher=LAUNCHER):
    assert re.search(
      r"non-finite parameter .* at step 6: rolling back to the last checkpoint "
      r"and retrying with lr x0\.5",
      log,
    ), log[-3000:]
    assert re.search(r"resumed from \S+/checkpoints/4: continuing", log), log[-3000:]
  summary = _summary(tmp_path / "w")
  assert summary["steps"] == 12 and len(summary["epochs"]) == 2
  assert all(np.isfinite(e["train/loss"]) for e in summary["epochs"])
  p0, p1 = (pickle.load(open(tmp_path / f"final.p{i}.pkl", "rb")) for i in range(2))
  assert p0.keys() == p1.keys() and len(p0) > 10
  for k in p0:
    if p0[k].dtype.kind == "f":
      assert np.isfinite(p0[k]).all(), k
    np.testing.assert_array_equal(p0[k], p1[k], err_msg=k)
  saved = _params(tmp_path / "w")  # and what the checkpoint holds
  for k in saved:
    np.testing.assert_array_equal(saved[k], p0[k], err_msg=k)


def test_one_process_killed_in_the_event_checkpoint_then_both_rerun(calibrated, tmp_path):
  """Process 1 dies by SIGKILL while the pruning event's checkpoint (step 6) is in flight
  (process 0 then fails at its next collective, or is killed); the same two commands
  rerun resume from the last committed checkpoint and end where the uninterrupted
  two-process run ends."""
  env = _env(tmp_path)
  workdir = tmp_path / "w"
  first = _launch(
    workdir,
    str(tmp_path / "first"),
    2,
    dict(env, LAST_NNX_TEST_KILL_IN_EVENT_SAVE="1"),
    CALIBRATED,
    launcher=LAUNCHER,
  )
  try:
    assert first[1].wait(timeout=900) == -9, open(f"{tmp_path}/first.p1.log").read()[-3000:]
    try:  # the survivor fails at its next collective, saying what to do
      first[0].wait(timeout=120)
    except subprocess.TimeoutExpired:
      pass  # stuck in a collective that never times out: killed below
    else:
      last = open(f"{tmp_path}/first.p0.log").read().strip().splitlines()[-1]
      assert first[0].returncode == 1 and last.startswith("error: ") and "rerun all" in last, last
  finally:
    _kill(first)
  assert not os.path.exists(workdir / "summary.json")
  # Killed inside: the event's checkpoint never committed (orbax renames it into place).
  left = sorted(os.listdir(workdir / "checkpoints"))
  assert "4" in left and "6" not in left and "6.orbax-checkpoint-tmp" in left, left
  for log in _run_both(workdir, str(tmp_path / "second"), env, CALIBRATED):
    resumed = re.search(r"resumed from \S+/checkpoints/(\d+)", log)
    assert resumed and resumed.group(1) == "4", log[-3000:]

  a, b = _summary(calibrated / "two"), _summary(workdir)
  assert b["steps"] == a["steps"] == 18
  assert b["states_final"] == a["states_final"] != a["states_initial"]
  assert [(e["status"], e["states_after"]) for e in b["pruning_events"]] == [
    (e["status"], e["states_after"]) for e in a["pruning_events"]
  ]
  for split in ("val", "test"):
    for key in ("loss", "accuracy"):
      assert _close(a["final"][split][key], b["final"][split][key]), (split, key)
  for x, y in zip(a["epochs"], b["epochs"], strict=True):
    for key in ("train/loss", "train/accuracy", "val/loss", "val/accuracy"):
      assert _close(x[key], y[key]), (x["epoch"], key, x[key], y[key])
  pa, pb = _params(calibrated / "two"), _params(workdir)
  assert pa.keys() == pb.keys()
  for k in pa:
    np.testing.assert_allclose(pb[k], pa[k], rtol=1e-3, atol=1e-5, err_msg=k)
