"""One small trained run (the s5 smoke preset, no pruning), shared by the tests that only
read it (tests/test_sweep.py, tests/test_max_drop.py): trained once per test session,
even with xdist workers (the first worker to need it trains it, the others wait for it)."""

import pytest

from last_nnx.train import loop
from tests.session_once import once_per_session
from tests.test_train_loop import get_config


def _train(root) -> None:
  config = get_config("listops", "s5,smoke")
  config.data.cache_dir = str(root / "cache")
  config.pruning.schedule = "none"
  config.model.n_layers = 2
  loop.train_and_evaluate(config, str(root / "run"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """Workdir of a 2-layer S5 smoke run without pruning: 2 layers x 4 stored states."""
  return str(once_per_session(tmp_path_factory, "trained-s5-smoke", _train) / "run")
