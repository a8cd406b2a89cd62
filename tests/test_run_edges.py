"""What happens around a run: a second copy of it, a request to stop, a full disk, a step
too big for the memory (last_nnx/train/workdir.py, preemption.py, memory.py and the
training program's endings in last_nnx/cli/errors.py)."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time

import ml_collections
import pytest

from last_nnx.cli import errors
from last_nnx.train import memory, preemption, workdir
from tests.test_train_loop import base_run  # noqa: F401 (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------
# The lock.

HOLD = r"""
import sys, time
from last_nnx.train import workdir
workdir.WorkdirLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(600)
"""


def _holder(path) -> subprocess.Popen:
  """A process that takes ``path``'s lock and sleeps (started in a fraction of a second)."""
  proc = subprocess.Popen(
    [sys.executable, "-c", HOLD, str(path)],
    cwd=ROOT,
    env=dict(os.environ, PYTHONPATH=ROOT),
    stdout=subprocess.PIPE,
    text=True,
  )
  assert proc.stdout.readline().strip() == "held"
  return proc


def test_a_live_holder_refuses_a_second_start_and_a_killed_one_is_taken_over(tmp_path, caplog):
  w = tmp_path / "run"
  proc = _holder(w)
  try:
    with pytest.raises(workdir.WorkdirBusy) as e:
      workdir.WorkdirLock(str(w)).acquire()
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith(f"{w} is in use by process {proc.pid} on ")
    assert "since 20" in line and "s ago" in line  # since when
    assert f"kill {proc.pid}" in line and "give another --workdir" in line  # what to do
    assert json.loads((w / workdir.LOCK_NAME).read_text())["pid"] == proc.pid  # untouched
  finally:
    proc.kill()  # SIGKILL: the lock file stays, naming a process that is gone
    proc.wait()
    proc.stdout.close()
  os.makedirs(w / "checkpoints" / "3")
  os.makedirs(w / "checkpoints" / "6.orbax-checkpoint-tmp-1764784800")
  lock = workdir.hold_for_run(str(w))
  try:
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
      m.startswith(f"taking over {w / workdir.LOCK_NAME} from process {proc.pid}") for m in warnings
    ), warnings
    assert sorted(os.listdir(w / "checkpoints")) == ["3"]  # the half-written step is gone
    assert json.loads((w / workdir.LOCK_NAME).read_text())["pid"] == os.getpid()
  finally:
    lock.release()
  assert not (w / workdir.LOCK_NAME).exists()
  with workdir.WorkdirLock(str(w)) as again:  # released: taken without a warning
    assert again.held


# ----------------------------------------------------------------------------
# Signals.


def test_signals_ask_for_a_stop_and_a_second_one_does_not_hurry_it(caplog):
  # What the process had before (an xdist worker may run with SIGINT ignored).
  before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
  request = preemption.StopRequest().install()
  try:
    assert request.due(5, every=4) == 0
    os.kill(os.getpid(), signal.SIGTERM)
    assert request.due(5, every=4) == signal.SIGTERM  # one process: the next step boundary
    os.kill(os.getpid(), signal.SIGINT)  # while the checkpoint is written: noted, no more
    assert request.count == 2 and request.due(6, every=4) == signal.SIGTERM
  finally:
    request.uninstall()
  assert {s: signal.getsignal(s) for s in before} == before  # the handlers come off cleanly
  messages = [r.getMessage() for r in caplog.records]
  assert any(m.startswith("SIGTERM received: saving a checkpoint") for m in messages)
  assert any(m.startswith("SIGINT received again: still stopping") for m in messages)
  assert preemption.active().due(1, every=1) == 0  # none installed: never stops


class _Ckpt:
  directory = "/w/checkpoints"
  waited = False

  def wait(self):
    self.waited = True


def test_a_stop_ends_in_one_line_and_its_own_exit_code():
  ckpt, best = _Ckpt(), _Ckpt()
  request = preemption.StopRequest()
  request.signum = signal.SIGUSR1
  stopped = request.stopped(signal.SIGUSR1, 7, ckpt, best)
  assert ckpt.waited and best.waited  # committed before the line says so, none in flight
  code, line = errors.run_ending(stopped, "/w", None)
  assert code == errors.EXIT_STOPPED == 75
  assert line == (
    "stopped by SIGUSR1 at step 7: checkpoint /w/checkpoints/7 is committed; "
    "rerun the same command to resume"
  )


# ----------------------------------------------------------------------------
# The disk.


def test_a_full_disk_names_the_path_what_and_the_last_checkpoint(tmp_path):
  w = tmp_path / "run"
  os.makedirs(w / "checkpoints" / "4")
  os.makedirs(w / "checkpoints" / "8.orbax-checkpoint-tmp")
  full = OSError(
    errno.ENOSPC,
    "No space left on device",
    str(w / "checkpoints" / "8.orbax-checkpoint-tmp" / "model"),
  )
  try:  # as orbax raises it: wrapped
    raise RuntimeError("save failed") from full
  except RuntimeError as e:
    code, line = errors.run_ending(e, str(w), None)
  assert code == errors.EXIT_NO_SPACE == 74
  assert line == (
    f"cannot write {w}/checkpoints/8.orbax-checkpoint-tmp/model (the checkpoint "
    f"of step 8): no space left on the device; the last committed checkpoint is "
    f"{w}/checkpoints/4; free space, then rerun the same command to resume"
  )
  assert os.listdir(w / "checkpoints") == ["4"]  # nothing half-written for the rerun
  # TensorFlow's summary writer words it in its own error type.
  tf_like = Exception(f"{w}/events.out.tfevents.1.host; No space left on device")
  code, line = errors.run_ending(tf_like, str(w), None)
  assert code == 74 and "(the TensorBoard summaries)" in line
  read_only = PermissionError(errno.EACCES, "Permission denied", str(w / "log.txt"))
  code, line = errors.run_ending(read_only, str(tmp_path / "other"), None)
  assert "permission denied; no checkpoint was committed yet" in line
  assert f"make {tmp_path / 'other'} writable" in line


# ----------------------------------------------------------------------------
# Memory.


def _config(batch=64, accum=1, remat=False, budget_gb=1.0):
  c = ml_collections.ConfigDict()
  c.train = dict(batch_size=batch, memory_budget_gb=budget_gb)
  c.optim = dict(grad_accum=accum)
  c.model = dict(remat=remat, d_model=8, n_layers=2)
  return c


def test_a_step_too_big_is_refused_with_the_batch_that_fits():
  # 100 MiB fixed, 30 MiB per example: 64 examples need 2020 MiB; 1 GiB holds 30.
  measure = lambda rows: (100 + 30 * rows) * 2**20
  with pytest.raises(memory.DoesNotFit) as e:
    memory.check_fits(_config(), measure, 64, seq_len=16)
  line = str(e.value)
  assert line.startswith(
    "the train step at train.batch_size=64 needs 2.0 GiB per device, "
    "over the 1.0 GiB of train.memory_budget_gb=1: "
    "train.batch_size=30 fits; optim.grad_accum=4 keeps the batch of 64 "
    "in micro-batches of 16; model.remat=True recomputes"
  ), line
  assert memory.check_fits(_config(batch=16), measure, 16, seq_len=16) == 580 * 2**20
  assert memory.check_fits(_config(budget_gb=-1), measure, 64, seq_len=16) is None  # off
  # On two devices a batch splits evenly: the estimate rounds down to a multiple of 2.
  assert memory.largest_fitting(100, 30, 1024, 2) == 30
  assert (
    memory.largest_fitting(100, 30, 1000, 2) == 30 and memory.largest_fitting(100, 30, 990, 4) == 28
  )


def test_out_of_memory_at_run_time_gets_the_same_line():
  error = RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 274915944888 bytes.")
  code, line = errors.run_ending(error, "/nowhere", _config(batch=512))
  assert code == errors.EXIT_FAILED
  assert line == (
    "the train step at train.batch_size=512 asked for 256.0 GiB more and ran "
    "out of device memory: lower train.batch_size, or raise optim.grad_accum "
    "(same batch, smaller micro-batches); model.remat=True recomputes "
    "activations in the backward pass instead of storing them"
  )
  assert errors.run_ending(RuntimeError("a bug"), "/nowhere", None) is None  # a traceback


# ----------------------------------------------------------------------------
# The training program, end to end: a held workdir, a stop, a full disk, the rerun.

EDGES = r"""
def pause_after_step(at, gate):
  # After the at-th train step: say so (file gate + '.at'), then wait for the file gate.
  import time
  from last_nnx.train import steps
  bound, count = steps.bound_train_step, [0]

  def bind(model, optimizer):
    step = bound(model, optimizer)

    def pausing(*args, **kwargs):
      carry = step(*args, **kwargs)
      count[0] += 1
      if count[0] == at:
        open(gate + ".at", "w").close()
        while not os.path.exists(gate):
          time.sleep(0.05)
      return carry
    return pausing
  steps.bound_train_step = bind


def sigint_while_saving():
  # A second signal while the stop's checkpoint is being written.
  import signal
  from last_nnx.train import checkpoint, preemption
  save = checkpoint.Checkpointer.save

  def interrupted(self, step, *args):
    if preemption.active().signum:
      os.kill(os.getpid(), signal.SIGINT)
    return save(self, step, *args)
  checkpoint.Checkpointer.save = interrupted


def disk_full_from(first):
  # Every checkpoint from step `first` on fails as a full disk does, half-written.
  import errno
  from last_nnx.train import checkpoint

  def full(self, step, *args):
    if step >= first:
      partial = os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp")
      os.makedirs(partial, exist_ok=True)
      raise OSError(errno.ENOSPC, "No space left on device", os.path.join(partial, "model"))
  checkpoint.Checkpointer.save = full


if os.environ.get("LAST_NNX_TEST_PAUSE"):
  at, gate = os.environ["LAST_NNX_TEST_PAUSE"].split(":", 1)
  HOOKS.append(lambda: pause_after_step(int(at), gate))
  HOOKS.append(sigint_while_saving)
if os.environ.get("LAST_NNX_TEST_DISK_FULL_FROM"):
  HOOKS.append(lambda: disk_full_from(int(os.environ["LAST_NNX_TEST_DISK_FULL_FROM"])))
"""


def _last_line(stderr: str) -> str:
  return stderr.strip().splitlines()[-1]


# Six CLI processes (~1 min of CPU): their in-process twins below are in the default suite.
@pytest.mark.slow
def test_a_run_owns_its_workdir_stops_on_a_signal_and_resumes(tmp_path, base_run):
  """`base_run`'s config through the command line. A second start on a running run's
  workdir is refused, and the first finishes with base_run's figures. Another run:
  SIGTERM mid-epoch (and SIGINT while it saves) ends it with a checkpoint and exit code
  75; the rerun meets a full disk (exit 74, the last checkpoint named, nothing
  half-written left); the next rerun ends with base_run's figures."""
  from tests.test_divergence import launcher
  from tests.test_train_loop import BASE_RUN

  config, reference, _, _ = base_run
  env = dict(os.environ, PYTHONPATH=ROOT, LAST_NNX_CACHE=config.data.cache_dir)
  cmd = lambda w: [
    "last_nnx.train",
    "--config",
    "experiments/configs/listops.py:s5,smoke",
    "--workdir",
    str(w),
    *[f"--config.{k}={v}" for k, v in BASE_RUN.items()],
  ]
  run = lambda w, **hooks: subprocess.Popen(
    [sys.executable, "-c", launcher(EDGES), *cmd(w)],
    cwd=ROOT,
    env=dict(env, **hooks),
    stderr=subprocess.PIPE,
    text=True,
  )

  def paused(w, gate):
    proc = run(w, LAST_NNX_TEST_PAUSE=f"2:{gate}")
    deadline = time.time() + 300
    while not os.path.exists(gate + ".at"):  # paused after step 2 of epoch 1 (of 6 steps)
      assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:]
      time.sleep(0.1)
    return proc

  w, gate = tmp_path / "first", str(tmp_path / "gate1")
  first = paused(w, gate)
  try:
    second = subprocess.run(
      [sys.executable, "-m", *cmd(w)],
      cwd=ROOT,
      capture_output=True,
      text=True,
      env=env,
      timeout=300,
    )
    open(gate, "w").close()
    _, err = first.communicate(timeout=300)
  finally:
    first.kill()
  assert second.returncode == errors.EXIT_WORKDIR_BUSY == 73, second.stderr[-3000:]
  assert _last_line(second.stderr).startswith(f"error: {w} is in use by process {first.pid} on "), (
    second.stderr[-2000:]
  )
  assert "Traceback" not in second.stderr
  assert first.returncode == 0, err[-3000:]
  _same_figures(json.loads((w / "summary.json").read_text()), reference)
  assert not (w / workdir.LOCK_NAME).exists()

  w, gate = tmp_path / "stopped", str(tmp_path / "gate2")
  stopped = paused(w, gate)
  try:
    stopped.send_signal(signal.SIGTERM)
    open(gate, "w").close()
    _, err = stopped.communicate(timeout=300)
  finally:
    stopped.kill()
  assert stopped.returncode == errors.EXIT_STOPPED, err[-3000:]
  assert _last_line(err) == (
    f"stopped by SIGTERM at step 2: checkpoint {w}/checkpoints/2 is "
    "committed; rerun the same command to resume"
  ), err[-2000:]
  assert "SIGINT received again: still stopping" in err and "Traceback" not in err
  assert not (w / workdir.LOCK_NAME).exists() and not (w / "summary.json").exists()

  full = run(w, LAST_NNX_TEST_DISK_FULL_FROM="3")
  _, err = full.communicate(timeout=300)
  assert full.returncode == errors.EXIT_NO_SPACE, err[-3000:]
  assert _last_line(err) == (
    f"error: cannot write {w}/checkpoints/6.orbax-checkpoint-tmp/model (the checkpoint of "
    f"step 6): no space left on the device; the last committed checkpoint is "
    f"{w}/checkpoints/2; free space, then rerun the same command to resume"
  ), err[-2000:]
  assert sorted(os.listdir(w / "checkpoints")) == ["2"] and "Traceback" not in err

  last = run(w)
  _, err = last.communicate(timeout=300)
  assert last.returncode == 0, err[-3000:]
  assert "resumed from" in err and f"{w}/checkpoints/2" in err
  _same_figures(json.loads((w / "summary.json").read_text()), reference)


def _same_figures(summary: dict, reference: dict) -> None:
  """``summary`` ends where the uninterrupted ``reference`` run ends (base_run counts its
  recalibration batches apart: that one field is not compared)."""
  events = lambda s: [dict(e, recalibrated_batches=None) for e in s["pruning_events"]]
  assert events(summary) == events(reference)
  assert summary["states_final"] == reference["states_final"]
  for split in ("val", "test"):
    assert summary["final"][split] == pytest.approx(reference["final"][split], rel=1e-5)
  for ours, theirs in zip(summary["epochs"], reference["epochs"], strict=True):
    for k in ("train/loss", "val/accuracy", "val/loss"):
      assert ours[k] == pytest.approx(theirs[k], rel=1e-5, abs=1e-6), (ours["epoch"], k)


def test_sigterm_mid_epoch_then_a_full_disk_then_the_rerun_ends_as_if_uninterrupted(
  tmp_path, base_run, monkeypatch
):
  """In process (the CLI twin is above): SIGTERM after step 2 of 6, SIGINT while its
  checkpoint is written; the rerun's next checkpoint meets a full disk; the next rerun
  ends with the uninterrupted run's figures."""
  from last_nnx.train import checkpoint, loop, steps

  config, reference, _, _ = base_run
  w = tmp_path / "run"
  bound, save, taken = steps.bound_train_step, checkpoint.Checkpointer.save, [0]

  def bind(model, optimizer):
    step = bound(model, optimizer)

    def signalled(*args, **kwargs):
      taken[0] += 1
      if taken[0] == 2:
        os.kill(os.getpid(), signal.SIGTERM)
      return step(*args, **kwargs)

    return signalled

  def interrupted(self, step, *args):
    if preemption.active().signum:
      os.kill(os.getpid(), signal.SIGINT)
    return save(self, step, *args)

  request = preemption.install()
  try:
    with monkeypatch.context() as m:
      m.setattr(steps, "bound_train_step", bind)
      m.setattr(checkpoint.Checkpointer, "save", interrupted)
      with pytest.raises(preemption.Stopped) as e:
        loop.train_and_evaluate(config, str(w))
  finally:
    preemption.uninstall()
  assert request.count == 2 and e.value.step == 2
  assert errors.run_ending(e.value, str(w), config) == (
    75,
    (
      f"stopped by SIGTERM at step 2: checkpoint {w}/checkpoints/2 is committed; rerun the "
      "same command to resume"
    ),
  )

  def full(self, step, *args):
    os.makedirs(os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp"))
    raise OSError(errno.ENOSPC, "No space left on device", self.directory)

  with monkeypatch.context() as m:
    m.setattr(checkpoint.Checkpointer, "save", full)
    with pytest.raises(OSError) as e:
      loop.train_and_evaluate(config, str(w))
  code, line = errors.run_ending(e.value, str(w), config)
  assert code == 74 and line.startswith(
    f"cannot write {w}/checkpoints (a checkpoint): no space "
    f"left on the device; the last committed checkpoint "
    f"is {w}/checkpoints/2; free space"
  ), line
  assert sorted(os.listdir(w / "checkpoints")) == ["2"]

  _same_figures(loop.train_and_evaluate(config, str(w)), reference)


def test_a_step_too_big_for_the_budget_is_refused_before_it_runs(tmp_path, base_run):
  """base_run's step (one S5 layer, batch 16) needs about 3.8 MiB, 0.24 MiB per example:
  a 3 MB budget holds 12 examples."""
  from last_nnx.train import loop

  config = ml_collections.ConfigDict(base_run[0].to_dict())
  config.train.memory_budget_gb = 0.003
  with pytest.raises(memory.DoesNotFit) as e:
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  code, line = errors.run_ending(e.value, str(tmp_path / "run"), config)
  assert code == errors.EXIT_FAILED
  assert re.fullmatch(
    r"the train step at train.batch_size=16 needs 3\.\d MiB per device, over "
    r"the 3\.1 MiB of train.memory_budget_gb=0.003: train.batch_size=1[0-3] "
    r"fits; optim.grad_accum=2 keeps the batch of 16 in micro-batches of 8; "
    r"model.remat=True recomputes .*",
    line,
  ), line
  assert not os.listdir(tmp_path / "run" / "checkpoints")  # refused before the first step
