"""One small trained run (the s5 smoke preset, no pruning), shared by the tests that only
read it (tests/test_sweep.py, tests/test_max_drop.py): trained once per test process."""

import pytest

from last_nnx.train import loop
from tests.test_train_loop import get_config

# Each module that imports the fixture gets its own definition of it: the run itself is
# kept here, so that the second module reuses the first one's.
_RUNS = {}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
  """Workdir of a 2-layer S5 smoke run without pruning: 2 layers x 4 stored states."""
  if "s5" not in _RUNS:
    root = tmp_path_factory.mktemp("trained")
    config = get_config("listops", "s5,smoke")
    config.data.cache_dir = str(root / "cache")
    config.pruning.schedule = "none"
    config.model.n_layers = 2
    loop.train_and_evaluate(config, str(root / "run"))
    _RUNS["s5"] = str(root / "run")
  return _RUNS["s5"]
