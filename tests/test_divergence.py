"""A run that diverges with nothing left to try ends in one line, and its workdir
stays usable: the command a new user types with a far too high lr, and
the fine-tuning of ``prune --max_drop`` and ``sweep --iterative``.

`LAUNCHER` runs a program (``python -c LAUNCHER last_nnx.train ...``) with
faults injected where no flag reaches (tests/test_multihost_faults.py uses it too):
``LAST_NNX_TEST_NAN_AT=k`` sends one parameter to NaN right after the ``k``-th
train step of the process (once; a roll-back's retry then goes on cleanly);
`launcher` puts in more hooks.
"""

import os
import subprocess
import sys

import pytest

from tests.saved_run import trained  # noqa: F401 (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "last_nnx.train", "--config", "experiments/configs/listops.py:smoke"]

_PRELUDE = r"""
import os, runpy, sys

HOOKS = []  # installed once the program's processes are up (after jax.distributed starts)


def poison_after(at):
  import jax
  import jax.numpy as jnp
  from flax import nnx
  from last_nnx.train import steps
  bound, count = steps.bound_train_step, [0]

  def bind(model, optimizer):
    step = bound(model, optimizer)

    def poisoned(*args, **kwargs):
      carry = step(*args, **kwargs)
      count[0] += 1
      if count[0] == at:  # every process does this at the same step: still one program
        leaves, tree = jax.tree.flatten(nnx.state(model, nnx.Param))
        i = next(i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.inexact))
        leaves[i] = leaves[i] * jnp.nan
        nnx.update(model, jax.tree.unflatten(tree, leaves))
      return carry
    return poisoned
  steps.bound_train_step = bind


if os.environ.get("LAST_NNX_TEST_NAN_AT"):
  HOOKS.append(lambda: poison_after(int(os.environ["LAST_NNX_TEST_NAN_AT"])))
"""

_MAIN = r"""

def install():  # once (train calls distributed.initialize twice)
  while HOOKS:
    HOOKS.pop(0)()


sys.argv = sys.argv[1:]
if sys.argv[0] == "last_nnx.train":  # nothing may touch the devices before jax.distributed
  from last_nnx.train import distributed
  initialize = distributed.initialize

  def initialize_then_install(*args, **kwargs):
    started = initialize(*args, **kwargs)
    install()
    return started
  distributed.initialize = initialize_then_install
else:
  install()
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def launcher(hooks: str = "") -> str:
  """`LAUNCHER` with ``hooks`` (Python appending functions to ``HOOKS``) put in."""
  return _PRELUDE + hooks + _MAIN


LAUNCHER = launcher()


def _env(tmp_path, **extra) -> dict:
  return dict(os.environ, LAST_NNX_CACHE=str(tmp_path / "cache"), PYTHONPATH=ROOT, **extra)


def _train(workdir, *overrides, env) -> subprocess.CompletedProcess:
  return subprocess.run(
    [*TRAIN, "--workdir", str(workdir), *overrides],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _launch(module: str, *args, env) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-c", LAUNCHER, module, *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )


def _ends_in_one_error_line(done: subprocess.CompletedProcess, start: str) -> str:
  """Asserts a non-zero exit, no traceback and one ``error:`` line, the last; returns it."""
  assert done.returncode != 0, done.stderr[-3000:]
  out = done.stdout + done.stderr
  assert "Traceback" not in out, out[-3000:]
  errors = [l for l in out.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, out[-3000:]
  # absl's own log lines go to stderr too: the program's message is the last line.
  assert done.stderr.strip().splitlines()[-1] == errors[0]
  assert errors[0].startswith(start), errors[0]
  return errors[0]


def _tree(directory) -> dict[str, tuple[int, int]]:
  """``{relative path: (size, mtime_ns)}`` of every file under ``directory``."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      st = os.stat(path)
      out[os.path.relpath(path, directory)] = (st.st_size, st.st_mtime_ns)
  return out


def test_divergence_with_no_retries_ends_train_in_one_line(tmp_path):
  """The fast case (default suite): no retry allowed, one epoch of two steps."""
  workdir = tmp_path / "w"
  done = _train(
    workdir,
    "--config.optim.ssm_lr=50",
    "--config.optim.lr_factor=100",
    "--config.train.nan_retries=0",
    "--config.train.epochs=1",
    "--config.train.max_steps_per_epoch=2",
    "--config.pruning.schedule=none",
    "--config.train.eval_test=False",
    env=_env(tmp_path),
  )
  last = _ends_in_one_error_line(done, "error: training diverged at step 2: non-finite ")
  assert "no retries left (train.nan_retries=0)" in last and "already retried" not in last
  assert "the rerun starts afresh" in last
  assert not os.listdir(workdir / "checkpoints")


@pytest.mark.slow
def test_divergence_before_any_checkpoint_ends_in_one_line_then_a_sane_rerun_trains(tmp_path):
  env = _env(tmp_path)
  workdir = tmp_path / "w"
  done = _train(workdir, "--config.optim.ssm_lr=50", "--config.optim.lr_factor=100", env=env)
  last = _ends_in_one_error_line(done, "error: training diverged at step ")
  assert "(already retried at lr x0.5)" in last  # the first-step retry from the initial weights
  assert "lower optim.ssm_lr (now 50)" in last and "the rerun starts afresh" in last
  assert "starting again from the initial weights" in done.stderr
  assert not os.listdir(workdir / "checkpoints")  # nothing half-written to resume from

  rerun = _train(workdir, "--config.train.epochs=1", "--config.pruning.schedule=none", env=env)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert (workdir / "summary.json").exists()
  assert "resumed from" not in rerun.stderr


@pytest.mark.slow
def test_prune_max_drop_finetuning_divergence_ends_in_one_line(trained, tmp_path):
  before = _tree(trained)
  out = tmp_path / "out"
  done = _launch(
    "last_nnx.cli.prune",
    f"--workdir={trained}",
    "--max_drop=100",
    "--criterion=last",
    "--finetune_epochs=1",
    f"--out={out}",
    env=_env(tmp_path, LAST_NNX_TEST_NAN_AT="1"),
  )
  last = _ends_in_one_error_line(done, "error: fine-tuning diverged: non-finite parameter ")
  assert "lower optim.ssm_lr or --finetune_epochs, then rerun" in last
  assert _tree(trained) == before  # the training run is untouched
  assert not (out / "max_drop.json").exists()  # no result claimed


@pytest.mark.slow
def test_sweep_iterative_divergence_ends_in_one_line_keeping_the_points(trained, tmp_path):
  before = _tree(trained)
  out = tmp_path / "sweep"
  args = (
    f"--workdir={trained}",
    f"--out={out}",
    "--ratios=0.5",
    "--criteria=last",
    "--seeds=1",
    "--iterative",
    "--target=0.5",
    "--steps=1",
    "--finetune_epochs=1",
  )
  done = _launch("last_nnx.cli.sweep", *args, env=_env(tmp_path, LAST_NNX_TEST_NAN_AT="1"))
  last = _ends_in_one_error_line(done, "error: fine-tuning diverged: non-finite parameter ")
  assert f"the points measured so far are kept in {out}" in last
  assert _tree(trained) == before
  with open(out / "points.jsonl") as f:
    kept = f.read().splitlines()
  assert len(kept) == 2  # the one-shot points: dense and last at 0.5
  # The rerun (no fault) measures only the iterative point, on top of those.
  rerun = _launch("last_nnx.cli.sweep", *args, env=_env(tmp_path))
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  with open(out / "points.jsonl") as f:
    again = f.read().splitlines()
  assert again[:2] == kept and len(again) == 3
