"""What happens around a run: a second copy of it, a request to stop, a full disk, a step
too big for the memory (last_nnx/train/workdir.py, preemption.py, memory.py and the
training program's endings in last_nnx/cli/errors.py)."""

import errno
import json
import os
import signal
import subprocess
import sys

import ml_collections
import pytest

from last_nnx.cli import errors
from last_nnx.train import memory, preemption, workdir

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
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
                          text=True)
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
  os.makedirs(w / "checkpoints" / "3")
  os.makedirs(w / "checkpoints" / "6.orbax-checkpoint-tmp-1764784800")
  lock = workdir.hold_for_run(str(w))
  try:
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(m.startswith(f"taking over {w / workdir.LOCK_NAME} from process {proc.pid}")
               for m in warnings), warnings
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
  request = preemption.StopRequest().install()
  try:
    assert request.due(5, every=4) == 0
    os.kill(os.getpid(), signal.SIGTERM)
    assert request.due(5, every=4) == signal.SIGTERM  # one process: the next step boundary
    os.kill(os.getpid(), signal.SIGINT)  # while the checkpoint is written: noted, no more
    assert request.count == 2 and request.due(6, every=4) == signal.SIGTERM
  finally:
    request.uninstall()
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
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
  ckpt = _Ckpt()
  request = preemption.StopRequest()
  request.signum = signal.SIGUSR1
  stopped = request.stopped(signal.SIGUSR1, 7, ckpt)
  assert ckpt.waited  # the checkpoint is committed before the line says so
  code, line = errors.run_ending(stopped, "/w", None)
  assert code == errors.EXIT_STOPPED == 75
  assert line == ("stopped by SIGUSR1 at step 7: checkpoint /w/checkpoints/7 is committed; "
                  "rerun the same command to resume")


# ----------------------------------------------------------------------------
# The disk.


def test_a_full_disk_names_the_path_what_and_the_last_checkpoint(tmp_path):
  w = tmp_path / "run"
  os.makedirs(w / "checkpoints" / "4")
  os.makedirs(w / "checkpoints" / "8.orbax-checkpoint-tmp")
  full = OSError(errno.ENOSPC, "No space left on device",
                 str(w / "checkpoints" / "8.orbax-checkpoint-tmp" / "model"))
  try:  # as orbax raises it: wrapped
    raise RuntimeError("save failed") from full
  except RuntimeError as e:
    code, line = errors.run_ending(e, str(w), None)
  assert code == errors.EXIT_NO_SPACE == 74
  assert line == (f"cannot write {w}/checkpoints/8.orbax-checkpoint-tmp/model (the checkpoint "
                  f"of step 8): no space left on the device; the last committed checkpoint is "
                  f"{w}/checkpoints/4; free space, then rerun the same command to resume")
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
  assert line.startswith("the train step at train.batch_size=64 needs 2.0 GiB per device, "
                         "over the 1.0 GiB of train.memory_budget_gb=1: "
                         "train.batch_size=30 fits; optim.grad_accum=4 keeps the batch of 64 "
                         "in micro-batches of 16; model.remat=True recomputes"), line
  assert memory.check_fits(_config(batch=16), measure, 16, seq_len=16) == 580 * 2**20
  assert memory.check_fits(_config(budget_gb=-1), measure, 64, seq_len=16) is None  # off
  # On two devices a batch splits evenly: the estimate rounds down to a multiple of 2.
  assert memory.largest_fitting(100, 30, 1024, 2) == 30
  assert memory.largest_fitting(100, 30, 1000, 2) == 30 and memory.largest_fitting(
      100, 30, 990, 4) == 28


def test_out_of_memory_at_run_time_gets_the_same_line():
  error = RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 274915944888 bytes.")
  code, line = errors.run_ending(error, "/nowhere", _config(batch=512))
  assert code == errors.EXIT_FAILED
  assert line == ("the train step at train.batch_size=512 asked for 256.0 GiB more and ran "
                  "out of device memory: lower train.batch_size, or raise optim.grad_accum "
                  "(same batch, smaller micro-batches); model.remat=True recomputes "
                  "activations in the backward pass instead of storing them")
  assert errors.run_ending(RuntimeError("a bug"), "/nowhere", None) is None  # a traceback


