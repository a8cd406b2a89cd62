"""Pruning selective SSM layers (Mamba-2): criteria, refusal, groups, mask == compact."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.ssm.base import is_selective, live_states

OPTIONS = dict(state_size=4, head_dim=4, n_groups=2, chunk_size=4)


def _model(seed=0):
  return SequenceModel(
    n_classes=3,
    vocab_size=9,
    d_model=8,
    n_layers=2,
    ssm="mamba2",
    ssm_config=OPTIONS,
    rngs=nnx.Rngs(seed),
  )


def _batch():
  return (
    jax.random.randint(jax.random.key(0), (3, 12), 1, 9),
    jnp.array([12, 8, 5]),
    jnp.array([0, 1, 2]),
  )


def test_applicable_criteria_and_refusal():
  model = _model()
  assert all(is_selective(l) for l in model.prunable_layers().values())
  assert pruning.applicable(model) == ("calibrated", "gramian", "magnitude", "random", "uniform")
  with pytest.raises(ValueError, match="does not apply to selective.*use one of calibrated"):
    pruning.prune(nnx.clone(model), 0.5, criterion="last")
  with pytest.raises(ValueError, match="calibration="):
    pruning.prune(nnx.clone(model), 0.5, criterion="gramian")


@pytest.mark.parametrize("criterion", ["calibrated", "gramian", "magnitude", "uniform", "random"])
def test_every_group_keeps_a_state(criterion):
  model = _model()
  report = pruning.prune(model, 0.9, criterion=criterion, calibration=[_batch()])
  for layer in model.prunable_layers().values():
    per_group = (np.asarray(layer.state_mask[...]) > 0).sum(axis=1)
    assert np.all(per_group >= 1), per_group
  assert report.states_after < report.states_before


def test_calibrated_scores_follow_output_energy():
  model = _model()
  stats = pruning.selective.statistics(model, [_batch()])
  scores = pruning.score(model, "calibrated", calibration=[_batch()])
  for path, s in scores.items():
    e = stats[path]["output_energy"].reshape(-1)
    assert np.argmax(s) == np.argmax(e) and np.isclose(s.max(), 1.0)
    # Ranked as the energies are.
    np.testing.assert_array_equal(np.argsort(-s, kind="stable"), np.argsort(-e, kind="stable"))


@jax.jit
def _apply(graphdef, state, x, lengths):
  return nnx.merge(graphdef, state)(x, lengths)


def _eval(model):
  model.eval()
  x, lengths, _ = _batch()
  return np.asarray(_apply(*nnx.split(model), x, lengths))


def test_compact_equals_mask_and_moments_shrink():
  from last_nnx.train import steps

  compact = _model()
  masked = nnx.clone(compact)
  optimizer = nnx.Optimizer(compact, optax.adam(1e-2), wrt=nnx.Param)
  kw = dict(criterion="calibrated", calibration=[_batch()])
  r_c = pruning.prune(compact, 0.5, mode="compact", optimizer=optimizer, **kw)
  r_m = pruning.prune(masked, 0.5, mode="mask", **kw)
  assert [l.kept for l in r_c.layers.values()] == [l.kept for l in r_m.layers.values()]
  np.testing.assert_allclose(_eval(compact), _eval(masked), atol=1e-5)
  params = {
    tuple(str(k) for k in p): v.shape for p, v in nnx.to_flat_state(nnx.state(compact, nnx.Param))
  }
  for path, node in nnx.iter_graph(optimizer.opt_state):
    value = node.get_value() if isinstance(node, nnx.Variable) else None
    if getattr(value, "ndim", 0):
      key = tuple(str(k) for k in path)
      for pk, shape in params.items():
        if key[-len(pk) :] == pk:
          assert value.shape == shape, (key, value.shape, shape)
  compact.train()
  loss = steps.fit(compact, optimizer, [_batch()]).metrics.compute()["loss"]
  assert np.isfinite(float(loss))
  assert sum(live_states(l) for l in compact.prunable_layers().values()) == r_c.states_after
