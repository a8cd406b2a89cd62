"""One small trained run (the s5 smoke preset, no pruning), shared by the tests that only
read it (tests/test_sweep.py, tests/test_max_drop.py): trained once per test session,
even with xdist workers (the first worker to need it trains it, the others wait for it)."""

import fcntl
import os

import pytest

from last_nnx.train import loop
from tests.test_train_loop import get_config


def _train(root: str) -> None:
  config = get_config("listops", "s5,smoke")
  config.data.cache_dir = os.path.join(root, "cache")
  config.pruning.schedule = "none"
  config.model.n_layers = 2
  loop.train_and_evaluate(config, os.path.join(root, "run"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """Workdir of a 2-layer S5 smoke run without pruning: 2 layers x 4 stored states."""
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent  # the folder all workers' temporary folders share
  root = os.path.join(str(shared), "trained-s5-smoke")
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, "lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not os.path.exists(os.path.join(root, "done")):
      _train(root)
      open(os.path.join(root, "done"), "w").close()
  return os.path.join(root, "run")
