"""The loop-overhead benchmark times the real loop between its sync points."""

import pytest

from last_nnx.bench import loop as bench_loop
from last_nnx.train import loop
from tests.test_train_loop import get_config


def _tiny_config(tmp_path):
  config = get_config("listops", "s5,smoke")
  config.data.cache_dir = str(tmp_path / "cache")
  config.model.n_layers = 1
  config.train.log_every_steps = 2
  config.train.eval_test = False
  config.data.synthetic.update(dict(n_train=16 * 6, n_val=16, n_test=16))
  return config


def test_loop_overhead_reads_the_window_between_sync_points(tmp_path):
  checked = loop._checked_scalars
  out = bench_loop.loop_overhead(_tiny_config(tmp_path), windows=2, rounds=1)
  assert loop._checked_scalars is checked  # the timing hook is removed again
  assert (out["window_steps"], out["log_every_steps"], out["rounds"]) == (4, 2, 1)
  assert len(out["loop_step_s_rounds"]) == len(out["bare_step_s_rounds"]) == 1
  assert 0 < out["bare_step_s"] and 0 < out["loop_step_s"]
  assert out["loop_vs_bare"] == pytest.approx(out["bare_step_s"] / out["loop_step_s"])


def test_loop_overhead_refuses_a_train_split_too_small_for_the_window(tmp_path):
  config = _tiny_config(tmp_path)
  config.data.synthetic.n_train = 16 * 3
  with pytest.raises(ValueError, match="needs 6"):
    bench_loop.loop_overhead(config, windows=2, rounds=1)


def test_dispatch_times_both_ways_of_calling_the_step():
  import numpy as np
  import optax
  from flax import nnx

  from last_nnx.model import SequenceModel

  def make():
    model = SequenceModel(
      n_classes=3,
      vocab_size=7,
      d_model=8,
      n_layers=1,
      ssm="s5",
      ssm_config=dict(state_size=4),
      rngs=nnx.Rngs(0),
    )
    return model, nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

  batch = (np.ones((2, 8), np.int32), np.full(2, 8, np.int32), np.zeros(2, np.int32))
  out = bench_loop.dispatch_s(make, batch, n_calls=3)
  assert set(out) == {"nnx_jit_dispatch_s", "bound_dispatch_s"}
  assert all(v > 0 for v in out.values())
