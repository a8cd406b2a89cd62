"""Balanced reduction: Gramians, the error bound, and reduced layers that stay normal layers."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.pruning import balanced
from last_nnx.ssm import LRU, S4D, S5, StateModes
from last_nnx.train import checkpoint
from tests.compiled import forward


def _modes(poles, b, c, scale=1.0):
  poles = np.asarray(poles, np.complex64)
  return StateModes(
    poles=jnp.asarray(poles),
    B=jnp.asarray(np.asarray(b, np.complex64)),
    C=jnp.asarray(np.asarray(c, np.complex64)),
    valid=jnp.ones(len(poles), bool),
    output_scale=scale,
  )


def _random_system(rng, n=5, h=3, d=1):
  poles = 0.95 * rng.uniform(0.2, 1.0, n) * np.exp(1j * rng.uniform(-np.pi, np.pi, n))
  b = rng.normal(size=(n, h)) + 1j * rng.normal(size=(n, h))
  c = rng.normal(size=(d, h, n)) + 1j * rng.normal(size=(d, h, n))
  return poles, b, c


def test_closed_form_gramians_solve_the_lyapunov_equations_and_sum_the_horizon():
  poles, b, c = _random_system(np.random.default_rng(0), d=2)
  p, q = balanced.gramians(poles, b, c)
  a = np.diag(poles)
  np.testing.assert_allclose(p, a @ p @ a.conj().T + b @ b.conj().T, atol=1e-9)
  cc = sum(c[k].conj().T @ c[k] for k in range(2))
  np.testing.assert_allclose(q, a.conj().T @ q @ a + cc, atol=1e-9)
  p8, q8 = balanced.gramians(poles, b, c, horizon=8)
  powers = [np.linalg.matrix_power(a, t) for t in range(8)]
  np.testing.assert_allclose(p8, sum(m @ b @ b.conj().T @ m.conj().T for m in powers), atol=1e-9)
  np.testing.assert_allclose(q8, sum(m.conj().T @ cc @ m for m in powers), atol=1e-9)


def _transfer(poles, b, c, z):
  """``(W, H_out, H_in)`` complex responses of ``sum_i c_i b_i^T / (z - lam_i)`` (direction 0)."""
  return np.einsum("hn,wn,nk->whk", c[0], 1.0 / (z[:, None] - poles[None, :]), b)


def _hinf(poles, b, c, poles_r, b_r, c_r):
  z = np.exp(1j * balanced_grid(np.concatenate([poles, poles_r])))
  err = _transfer(poles, b, c, z) - _transfer(poles_r, b_r, c_r, z)
  return float(np.linalg.svd(err, compute_uv=False)[:, 0].max())


def balanced_grid(poles):
  from last_nnx.pruning.hinf import frequency_grid

  return frequency_grid(poles, grid=4096, local=401)


def _cancelling_layer():
  """A causal S5 layer whose two dominant modes nearly cancel (huge modal norms, small sum)."""
  layer = S5(2, 4, conj_sym=False, rngs=nnx.Rngs(0))
  poles = np.array([0.9, 0.901, 0.5 + 0.3j, -0.3])
  m = 40.0
  b = np.array([[m, 0.0], [m, 0.0], [1.0, 1.0], [0.0, 0.7]])
  c = np.array([[[1.0, -1.0, 1.0, 0.2], [0.0, 0.0, 0.5, 1.0]]])
  layer.load_state_modes(_modes(poles, b, c))
  layer.D.set_value(jnp.zeros(2))
  return layer, poles, b, c


@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_balanced_beats_modal_truncation_within_the_bound_on_cancelling_modes(ratio):
  layer, poles, b, c = _cancelling_layer()
  modal = nnx.clone(layer)
  report = pruning.prune(layer, ratio, criterion="balanced")
  pruning.prune(modal, ratio, criterion="last")
  bound = report.layers[""].error_bound
  reduced, trunc = layer.state_modes(), modal.state_modes()
  assert reduced.num_slots == trunc.num_slots == int(4 * (1 - ratio))
  # H-inf error of the transfer functions, by a dense frequency sweep.
  to_np = lambda m: (
    np.asarray(m.poles, np.complex128),
    np.asarray(m.B, np.complex128),
    np.asarray(m.C, np.complex128),
  )
  err_bal = _hinf(poles, b, c, *to_np(reduced))
  err_modal = _hinf(poles, b, c, *to_np(trunc))
  assert err_bal <= bound * (1 + 1e-3) + 1e-6
  assert err_bal < 0.5 * err_modal
  # And on the layer's real output for a long random input (l2 gain <= H-inf).
  u = jnp.asarray(np.random.default_rng(1).normal(size=(2, 400, 2)), jnp.float32)
  dense = _cancelling_layer()[0]
  e_bal = float(jnp.linalg.norm(forward(dense, u) - forward(layer, u)))
  e_modal = float(jnp.linalg.norm(forward(dense, u) - forward(modal, u)))
  assert e_bal <= bound * float(jnp.linalg.norm(u)) * 1.01
  assert e_bal < e_modal


def test_bound_holds_for_conj_sym_and_per_channel_s4d():
  rng = np.random.default_rng(3)
  for layer in (S5(4, 8, blocks=2, rngs=nnx.Rngs(2)), S4D(3, 8, rngs=nnx.Rngs(2))):
    layer.D.set_value(jnp.zeros_like(layer.D[...]))
    layer.log_step.set_value(jnp.full_like(layer.log_step[...], np.log(0.3)))  # fast modes
    dense = nnx.clone(layer)
    report = pruning.prune(layer, 0.5, criterion="balanced")
    bound = sum(r.error_bound for r in report.layers.values())
    assert report.states_after == report.states_before // 2
    u = jnp.asarray(rng.normal(size=(3, 600, layer.d_model)), jnp.float32)
    err = float(jnp.linalg.norm(forward(dense, u) - forward(layer, u)))
    assert err <= bound * float(jnp.linalg.norm(u)) * 1.01, type(layer).__name__
    assert err > 0


@pytest.mark.parametrize(
  "make",
  [
    lambda: S5(4, 8, blocks=2, rngs=nnx.Rngs(0)),
    lambda: S5(4, 8, blocks=2, bidirectional=True, discretization="bilinear", rngs=nnx.Rngs(0)),
    lambda: S4D(4, 8, bidirectional=True, rngs=nnx.Rngs(0)),
    lambda: LRU(4, 6, rngs=nnx.Rngs(0)),
  ],
  ids=["s5", "s5-bidir-bilinear", "s4d-bidir", "lru"],
)
def test_load_state_modes_inverts_state_modes(make):
  layer = make()
  u = jnp.asarray(np.random.default_rng(0).normal(size=(2, 30, 4)), jnp.float32)
  before, modes = forward(layer, u), layer.state_modes()
  layer.load_state_modes(modes)
  after = layer.state_modes()
  np.testing.assert_allclose(np.asarray(after.poles), np.asarray(modes.poles), rtol=2e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(after.B), np.asarray(modes.B), rtol=2e-4, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(forward(layer, u)), np.asarray(before), rtol=1e-3, atol=1e-4
  )


def _model(ssm, n_layers=2, **cfg):
  config = ml_collections.ConfigDict(
    dict(seed=0, model=dict(d_model=8, n_layers=n_layers, ssm=ssm, ssm_config=cfg))
  )
  model = SequenceModel(
    n_classes=3, vocab_size=11, rngs=nnx.Rngs(params=0, dropout=1), **config.model
  )
  return model, config


@pytest.mark.parametrize(
  "ssm,cfg",
  [
    ("s5", dict(state_size=16, blocks=2)),
    pytest.param("s5", dict(state_size=8, bidirectional=True), marks=pytest.mark.slow),
    ("s4d", dict(state_size=8)),
    pytest.param("lru", dict(state_size=8), marks=pytest.mark.slow),
  ],
  ids=["s5", "s5-bidir", "s4d", "lru"],
)
def test_reduced_layer_trains_checkpoints_resumes_and_prunes_again(ssm, cfg, tmp_path):
  # One layer: what is checked (a reduced layer trains, saves, reloads, prunes again) is per
  # layer; every extra layer only lengthens the compiles.
  model, config = _model(ssm, n_layers=1, **cfg)
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.integers(0, 11, (4, 24)))
  lengths = jnp.full((4,), 24)
  labels = jnp.asarray(rng.integers(0, 3, (4,)))
  before = sum(
    int(np.asarray(l.state_modes().valid).sum()) for l in model.prunable_layers().values()
  )
  report = pruning.prune(model, 0.5, criterion="balanced", optimizer=optimizer)
  assert report.mode == "balanced" and report.states_after == before // 2
  for path, layer in model.prunable_layers().items():
    assert int(np.asarray(layer.state_modes().valid).sum()) == report.layers[path].states_after
    assert np.all(np.abs(np.asarray(layer.state_modes().poles)) < 1)

  def loss(m):
    logits = m(x, lengths)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @nnx.jit
  def step(m, opt):
    value, grads = nnx.value_and_grad(loss)(m)
    opt.update(m, grads)
    return value

  model.train()
  first = float(step(model, optimizer))
  for _ in range(3):
    last = float(step(model, optimizer))
  assert last < first  # trains on from the reduced parameters

  model.eval()
  logits = forward(model, x, lengths)
  meta = dict(model_spec=dict(n_classes=3, vocab_size=11, in_dim=1, retrieval=False))
  checkpoint.save_model(str(tmp_path), model, config, meta)
  restored, _, _ = checkpoint.load_model(str(tmp_path))
  np.testing.assert_allclose(
    np.asarray(forward(restored, x, lengths)), np.asarray(logits), atol=1e-5
  )
  again = pruning.prune(restored, 0.5, criterion="last")
  assert again.states_after == max(1, report.states_after // 2)
  assert forward(restored, x, lengths).shape == (4, 3)


def test_balanced_scores_and_replay_refusal():
  model, _ = _model("s5", state_size=8)
  scores = pruning.score(model, "balanced")
  for s in scores.values():
    assert s.max() == 1.0 and np.all(np.diff(s) <= 0)  # strongest direction first
  history = pruning.PruningHistory()
  pruning.prune(model, 0.5, criterion="balanced", history=history)
  fresh, _ = _model("s5", state_size=8)
  with pytest.raises(ValueError, match="balanced reduction"):
    pruning.replay(fresh, history)


class _Wrap(nnx.Module):
  """A bare layer called as a model ``(inputs, lengths)``."""

  def __init__(self, ssm):
    self.ssm = ssm

  def __call__(self, inputs, lengths):
    return self.ssm(inputs)


@pytest.mark.parametrize(
  "make",
  [lambda: S5(3, 12, blocks=3, rngs=nnx.Rngs(4)), lambda: S4D(3, 8, rngs=nnx.Rngs(4))],
  ids=["s5", "s4d"],
)
def test_least_squares_refit_lowers_the_output_error_on_the_calibration_data(make):
  rng = np.random.default_rng(0)
  batches = [
    (rng.normal(size=(4, 48, 3)).astype(np.float32), np.array([48, 40, 30, 48])) for _ in range(2)
  ]
  dense = _Wrap(make())
  errors = {}
  for method in ("calibrated_balanced", "balanced_refit"):
    model = nnx.clone(dense)
    report = pruning.prune(model, 0.5, criterion=method, calibration=batches)
    assert report.states_after == report.states_before // 2
    errors[method] = sum(
      float(jnp.sum((forward(model, jnp.asarray(x), n) - forward(dense, jnp.asarray(x), n)) ** 2))
      for x, n in batches
    )
  assert errors["balanced_refit"] < errors["calibrated_balanced"]
