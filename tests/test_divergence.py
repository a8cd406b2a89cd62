"""A run that diverges with nothing left to try ends in one line, and its workdir
stays usable (issue 28): the command a new user types with a far too high lr."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "last_nnx.train", "--config", "experiments/configs/listops.py:smoke"]


def _train(workdir, *overrides, env) -> subprocess.CompletedProcess:
  return subprocess.run([*TRAIN, "--workdir", str(workdir), *overrides], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_divergence_before_any_checkpoint_ends_in_one_line_then_a_sane_rerun_trains(tmp_path):
  env = dict(os.environ, LAST_NNX_CACHE=str(tmp_path / "cache"), PYTHONPATH=ROOT)
  workdir = tmp_path / "w"
  done = _train(workdir, "--config.optim.ssm_lr=50", "--config.optim.lr_factor=100", env=env)
  assert done.returncode != 0
  out = done.stdout + done.stderr
  assert "Traceback" not in out, out[-3000:]
  # absl's own log lines go to stderr too: the program's message is the last line.
  last = done.stderr.strip().splitlines()[-1]
  assert last.startswith("error: training diverged at step "), done.stderr[-3000:]
  assert "(already retried at lr x0.5)" in last  # the first-step retry from the initial weights
  assert "lower optim.ssm_lr (now 50)" in last and "the rerun starts afresh" in last
  assert "starting again from the initial weights" in done.stderr
  assert not os.listdir(workdir / "checkpoints")  # nothing half-written to resume from

  rerun = _train(workdir, "--config.train.epochs=1", "--config.pruning.schedule=none", env=env)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert (workdir / "summary.json").exists()
  assert "resumed from" not in rerun.stderr
