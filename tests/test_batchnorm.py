"""BatchNorm recalibration after pruning."""

import jax
import numpy as np
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.train.batchnorm import recalibrate_batch_norm


def _model():
  return SequenceModel(
    n_classes=3,
    vocab_size=7,
    d_model=8,
    n_layers=2,
    ssm="s5",
    ssm_config=dict(state_size=8),
    dropout=0.3,
    rngs=nnx.Rngs(0),
  )


def _batch(seed, n=16, length=32):
  rng = np.random.default_rng(seed)
  return (
    rng.integers(1, 7, size=(n, length)).astype(np.int32),
    rng.integers(8, length + 1, size=n).astype(np.int32),
  )


def test_one_batch_recalibration_makes_eval_equal_batch_statistics():
  model = _model()
  pruning.prune(model, 0.5, mode="mask")
  inputs, lengths = _batch(0)
  stale = [
    np.asarray(m.mean[...]) for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)
  ]
  assert recalibrate_batch_norm(model, [(inputs, lengths)], max_batches=1) == 1
  model.eval()
  with_running = np.asarray(model(inputs, lengths))
  # Batch statistics, no dropout: what the running statistics must now reproduce.
  model.set_attributes(use_running_average=False, raise_if_not_found=False)
  with_batch_stats = np.asarray(model(inputs, lengths))
  np.testing.assert_allclose(with_running, with_batch_stats, rtol=1e-4, atol=1e-4)
  fresh = [
    np.asarray(m.mean[...]) for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)
  ]
  assert not all(np.allclose(a, b) for a, b in zip(stale, fresh))


def test_statistics_average_over_batches_and_modes_are_restored():
  model = _model()
  model.train()
  batches = [_batch(s) for s in range(3)]
  per_batch = []
  for b in batches:
    single = nnx.clone(model)
    recalibrate_batch_norm(single, [b], max_batches=1)
    per_batch.append(
      [np.asarray(m.var[...]) for _, m in nnx.iter_graph(single) if isinstance(m, nnx.BatchNorm)]
    )
  assert recalibrate_batch_norm(model, iter(batches + [_batch(9)]), max_batches=3) == 3
  averaged = [
    np.asarray(m.var[...]) for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)
  ]
  for i, var in enumerate(averaged):
    np.testing.assert_allclose(var, np.mean([p[i] for p in per_batch], axis=0), rtol=1e-5)
  norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
  dropouts = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Dropout)]
  assert all(not m.use_running_average and m.momentum == 0.95 for m in norms)  # train mode back
  assert dropouts and all(not m.deterministic for m in dropouts)
  assert recalibrate_batch_norm(model, [], max_batches=3) == 0
  assert jax.tree.all(
    jax.tree.map(np.array_equal, [np.asarray(m.var[...]) for m in norms], averaged)
  )
