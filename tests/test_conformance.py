"""Conformance suite: every registered SSM type works with all of pruning and training.

A new layer type adds one entry to SMALL_OPTIONS (options for a tiny layer) and
runs ``pytest tests/test_conformance.py``; `check_protocol` says what is missing.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.ssm import make_ssm, registered_ssms
from last_nnx.ssm.conformance import check_protocol
from last_nnx.train import checkpoint, loop
from tests.reference import modes_output

H = 4
SMALL_OPTIONS = {
    "s5": dict(state_size=8, blocks=2, dt_min=0.01, dt_max=0.5),
    "s4d": dict(state_size=8, dt_min=0.01, dt_max=0.5),
    "lru": dict(state_size=6, r_min=0.5, r_max=0.95),
}
STEP_ATOL = 1e-4  # float32 step-by-step vs parallel/sequential scan


def test_every_registered_type_has_small_options():
  assert set(registered_ssms()) <= set(SMALL_OPTIONS), "add the new type to SMALL_OPTIONS"


def _layer(name, bidirectional=False, seed=0):
  return make_ssm(name, H, dict(SMALL_OPTIONS[name], bidirectional=bidirectional),
                  rngs=nnx.Rngs(seed))


def _u(length=16, batch=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, length, H))


def _keep(layer, seed=0):
  n = int(np.prod(layer.state_shape))
  keep = np.random.default_rng(seed).random(n) < 0.5
  keep[0] = True
  return keep


TYPES = pytest.mark.parametrize("name", registered_ssms())
BIDI = pytest.mark.parametrize("bidirectional", [False, True])


@TYPES
@BIDI
def test_protocol(name, bidirectional):
  assert check_protocol(_layer(name, bidirectional), H) == []


def test_protocol_check_names_what_is_missing():
  problems = check_protocol(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 2)
  assert "missing attribute or method 'state_modes'" in problems


@TYPES
@BIDI
def test_output_is_sum_of_subsystems(name, bidirectional):
  layer = _layer(name, bidirectional)
  u = _u()
  expected = modes_output(layer.state_modes(), np.asarray(u[0], np.float64))
  np.testing.assert_allclose(layer(u)[0], expected, atol=2e-4, rtol=1e-4)


@TYPES
@BIDI
def test_mask_equals_compact(name, bidirectional):
  masked, compact = _layer(name, bidirectional), _layer(name, bidirectional)
  keep = _keep(masked)
  masked.mask_states(keep)
  compact.prune_states(keep)
  u = _u()
  np.testing.assert_allclose(masked(u), compact(u), atol=1e-5)
  expected = modes_output(_layer(name, bidirectional).state_modes(), np.asarray(u[0], np.float64),
                          keep=keep)
  np.testing.assert_allclose(compact(u)[0], expected, atol=2e-4, rtol=1e-4)


def _stream(layer, u):
  state = layer.init_state(u.shape[0])
  outs = []
  for t in range(u.shape[1]):
    state, y = layer.step(state, u[:, t])
    outs.append(y)
  return jnp.stack(outs, axis=1)


@TYPES
@pytest.mark.parametrize("pruned", ["dense", "mask", "compact"])
def test_step_mode_equals_scan(name, pruned):
  layer = _layer(name)
  if pruned == "mask":
    layer.mask_states(_keep(layer))
  elif pruned == "compact":
    layer.prune_states(_keep(layer))
  u = _u(length=24)
  np.testing.assert_allclose(_stream(layer, u), layer(u), atol=STEP_ATOL)


@TYPES
def test_bidirectional_layers_refuse_to_stream(name):
  with pytest.raises(ValueError, match="cannot run as a streaming RNN"):
    _layer(name, True).init_state(1)


def _model(name, seed=0):
  return SequenceModel(n_classes=3, vocab_size=9, d_model=H, n_layers=2, ssm=name,
                       ssm_config=dict(SMALL_OPTIONS[name], bidirectional=True),
                       rngs=nnx.Rngs(seed))


def _step(model, optimizer, x, lengths, y):
  """One training step of the real loop; returns the batch loss."""
  return loop.train_step(model, optimizer, x, lengths, y).compute()["loss"]


def _batch():
  return (jax.random.randint(jax.random.key(0), (3, 12), 1, 9), jnp.array([12, 8, 5]),
          jnp.array([0, 1, 2]))


@TYPES
def test_scores_prune_optimizer_and_train_on(name):
  model = _model(name)
  scores = pruning.score(model, "last")
  for path, layer in model.prunable_layers().items():
    assert scores[path].shape == (int(np.prod(layer.state_shape)),)
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  _step(model, optimizer, *_batch())
  masked = nnx.clone(model)
  report = pruning.prune(model, 0.5, optimizer=optimizer)
  pruning.prune(masked, 0.5, mode="mask")
  model.eval()
  masked.eval()
  x, lengths, _ = _batch()
  np.testing.assert_allclose(model(x, lengths), masked(x, lengths), atol=1e-5)
  model.train()
  params = {p: v.shape for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  for path, node in nnx.iter_graph(optimizer):
    if isinstance(node, nnx.Variable) and hasattr(node.get_value(), "shape"):
      matches = [s for p, s in params.items() if tuple(path[-len(p):]) == tuple(p)]
      if matches:
        assert node.get_value().shape == matches[0]
  assert np.isfinite(float(_step(model, optimizer, *_batch())))
  assert report.states_after < report.states_before


@TYPES
def test_checkpoint_round_trip_of_pruned_model(name, tmp_path):
  model = _model(name)
  pruning.prune(model, 0.5)
  ck = checkpoint.Checkpointer(str(tmp_path))
  ck.save(1, model, None, {})
  ck.wait()
  fresh = _model(name)
  step, meta = ck.latest_usable()
  checkpoint.resize_layers(fresh, meta["layer_shapes"])
  ck.restore(step, fresh, None)
  model.eval()
  fresh.eval()
  x, lengths, _ = _batch()
  np.testing.assert_allclose(model(x, lengths), fresh(x, lengths), atol=1e-6)


@pytest.mark.slow
def test_lru_smoke_trains_and_prunes(tmp_path, monkeypatch):

  from tests.test_train_loop import get_config
  monkeypatch.setenv("LAST_NNX_CACHE", str(tmp_path / "cache"))
  config = get_config("listops", "lru,smoke")
  config.data.cache_dir = str(tmp_path / "cache")
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert sum(summary["states_final"].values()) < sum(summary["states_initial"].values())
