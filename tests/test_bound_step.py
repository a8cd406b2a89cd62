"""The bound train step (graphs walked once) is the same program as `train_step`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.train import steps


def _model_and_optimizer():
  model = SequenceModel(
    n_classes=3,
    vocab_size=7,
    d_model=8,
    n_layers=2,
    ssm="s5",
    ssm_config=dict(state_size=8),
    dropout=0.1,
    rngs=nnx.Rngs(0),
  )
  return model, nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)


def _batches(n=3):
  rng = np.random.default_rng(0)
  return [
    (
      rng.integers(1, 7, (4, 12)).astype(np.int32),
      np.full(4, 12, np.int32),
      rng.integers(0, 3, 4).astype(np.int32),
    )
    for _ in range(n)
  ]


def _arrays(tree):
  return [
    np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
    for x in jax.tree.leaves(tree)
  ]


def test_bound_step_gives_bit_identical_model_optimizer_and_metrics():
  results = []
  for bound in (False, True):
    model, optimizer = _model_and_optimizer()
    carry = steps.TrainCarry.start(model)
    step = steps.bound_train_step(model, optimizer) if bound else None
    for batch in _batches():
      carry = (
        step(carry, *batch, jnp.float32(0.0))
        if bound
        else steps.train_step(model, optimizer, carry, *batch, jnp.float32(0.0))
      )
    results.append(_arrays((nnx.state((model, optimizer)), carry)))
  plain, bound = results
  assert len(plain) == len(bound)
  for a, b in zip(plain, bound):
    np.testing.assert_array_equal(a, b)


def test_bound_step_donates_and_rebinds_after_pruning():
  model, optimizer = _model_and_optimizer()
  carry = steps.TrainCarry.start(model)
  step = steps.bound_train_step(model, optimizer)
  batch = _batches(1)[0]
  carry = step(carry, *batch)
  old = model.blocks[0].ssm.C[...]
  carry = step(carry, *batch)
  assert old.is_deleted()  # donated: the new values live in the old buffers
  pruning.prune(model, 0.5, mode="compact", optimizer=optimizer)
  step = steps.bound_train_step(model, optimizer)  # new shapes: bind again
  carry = step(carry, *batch)
  steps.check_health(model, carry)
  assert int(np.asarray(optimizer.step[...])) == 3
