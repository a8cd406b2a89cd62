"""S5 and S4D layers against naive recurrences built from their own parameters."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx.ssm import S4D, S5, PrunableSSM, find_prunable_layers, hippo
from tests.compiled import forward
from tests.reference import modes_output, np_discretize, run_recurrence

jax.config.update("jax_enable_x64", False)


def _pair(x):
  x = np.asarray(x, np.float64)
  return x[..., 0] + 1j * x[..., 1]


def s5_naive(layer: S5, u: np.ndarray) -> np.ndarray:
  """S5 output from raw parameters: numpy discretization + step-by-step recurrence."""
  re = np.asarray(layer.Lambda_re[...], np.float64)
  if layer.clip_eigs:
    re = np.minimum(re, -1e-4)
  lam = re + 1j * np.asarray(layer.Lambda_im[...], np.float64)
  step = layer.step_rescale * np.exp(np.asarray(layer.log_step[...], np.float64))
  lam_bar, b_bar = np_discretize(lam, _pair(layer.B[...]), step, layer.discretization)
  b_bar = b_bar * np.asarray(layer.state_mask[...])[:, None]
  c = _pair(layer.C[...])
  scale = 2.0 if layer.conj_sym else 1.0
  y = scale * (run_recurrence(lam_bar, b_bar, u) @ c[0].T).real
  if layer.bidirectional:
    y += scale * (run_recurrence(lam_bar, b_bar, u, reverse=True) @ c[1].T).real
  return y + np.asarray(layer.D[...]) * u


def s4d_naive(layer: S4D, u: np.ndarray) -> np.ndarray:
  """S4D output: every channel its own SISO recurrence."""
  lam = np.minimum(np.asarray(layer.Lambda_re[...], np.float64), -1e-4) + 1j * np.asarray(
    layer.Lambda_im[...], np.float64
  )
  step = layer.step_rescale * np.exp(np.asarray(layer.log_step[...], np.float64))
  b = _pair(layer.B[...]) * np.asarray(layer.state_mask[...])
  c = _pair(layer.C[...])
  y = np.zeros_like(u)
  for h in range(u.shape[1]):
    lam_bar, b_bar = np_discretize(lam[h], b[h][:, None], step[h], layer.discretization)
    for d in range(c.shape[0]):
      x = run_recurrence(lam_bar, b_bar, u[:, h : h + 1], reverse=(d == 1))
      y[:, h] += 2.0 * (x @ c[d, h]).real
  return y + np.asarray(layer.D[...]) * u


def _input(length=24, h=6, seed=0):
  return np.random.default_rng(seed).normal(size=(length, h))


def _make_s5(conj_sym, bidirectional, discretization, **kw):
  return S5(
    6,
    8,
    blocks=2,
    conj_sym=conj_sym,
    bidirectional=bidirectional,
    discretization=discretization,
    dt_min=0.01,
    dt_max=0.5,
    rngs=nnx.Rngs(0),
    **kw,
  )


def _make_s4d(bidirectional, discretization):
  layer = S4D(
    6,
    8,
    bidirectional=bidirectional,
    discretization=discretization,
    dt_min=0.01,
    dt_max=0.5,
    rngs=nnx.Rngs(1),
  )
  # A non-trivial B, so that B_bar is not just the discretization factor.
  layer.B.set_value(jax.random.normal(jax.random.key(3), layer.B.shape))
  return layer


S5_CASES = list(itertools.product([True, False], [True, False], ["zoh", "bilinear"]))
S4D_CASES = list(itertools.product([True, False], ["zoh", "bilinear"]))


def _apply(layer, u):
  return np.asarray(forward(layer, jnp.asarray(u[None], jnp.float32))[0], np.float64)


@pytest.mark.parametrize("conj_sym,bidirectional,disc", S5_CASES)
def test_s5_equals_naive_recurrence(conj_sym, bidirectional, disc):
  layer = _make_s5(conj_sym, bidirectional, disc)
  u = _input()
  np.testing.assert_allclose(_apply(layer, u), s5_naive(layer, u), atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("bidirectional,disc", S4D_CASES)
def test_s4d_equals_naive_recurrence(bidirectional, disc):
  layer = _make_s4d(bidirectional, disc)
  u = _input()
  np.testing.assert_allclose(_apply(layer, u), s4d_naive(layer, u), atol=2e-4, rtol=1e-4)


_LAYER_MAKERS = [
  lambda: _make_s5(True, True, "zoh"),
  lambda: _make_s5(False, False, "bilinear"),
  lambda: _make_s4d(True, "zoh"),
  lambda: _make_s4d(False, "zoh"),
]


def _layers():
  return [make() for make in _LAYER_MAKERS]


@pytest.mark.parametrize("idx", range(4))
def test_output_is_sum_of_state_modes(idx):
  layer = _LAYER_MAKERS[idx]()
  u = _input()
  np.testing.assert_allclose(
    _apply(layer, u), modes_output(layer.state_modes(), u), atol=2e-4, rtol=1e-4
  )


@pytest.mark.parametrize("idx", range(4))
def test_prune_all_true_changes_nothing(idx):
  layer = _LAYER_MAKERS[idx]()
  u = _input()
  before = _apply(layer, u)
  shapes = {k: getattr(layer, k).shape for k in layer.STATE_AXES}
  layer.prune_states(np.ones(int(np.prod(layer.state_shape)), bool))
  assert {k: getattr(layer, k).shape for k in layer.STATE_AXES} == shapes
  np.testing.assert_allclose(_apply(layer, u), before, atol=1e-6)


@pytest.mark.parametrize("idx", range(4))
def test_prune_equals_dropping_those_subsystems(idx):
  layer = _LAYER_MAKERS[idx]()
  u = _input()
  n_slots = int(np.prod(layer.state_shape))
  keep = np.random.default_rng(idx).random(n_slots) < 0.5
  keep[0] = True
  expected = modes_output(layer.state_modes(), u, keep=keep)
  masked = _LAYER_MAKERS[idx]()
  masked.mask_states(keep)
  np.testing.assert_allclose(_apply(masked, u), expected, atol=2e-4, rtol=1e-4)
  layer.prune_states(keep)
  np.testing.assert_allclose(_apply(layer, u), expected, atol=2e-4, rtol=1e-4)
  assert int(np.asarray(layer.state_modes().valid).sum()) == keep.sum()
  if isinstance(layer, S5):
    assert layer.state_shape == (keep.sum(),)
  else:  # ragged: padded to the channel with most kept states
    assert layer.state_shape[1] == keep.reshape(6, -1).sum(axis=1).max()


def test_layers_implement_protocol():
  for layer in _layers():
    assert isinstance(layer, PrunableSSM)


@pytest.mark.parametrize("idx", [0, 2])
def test_gradients_finite_at_path_x_length(idx):
  layer = _LAYER_MAKERS[idx]()
  u = jax.random.normal(jax.random.key(0), (1, 16384, 6))

  @nnx.jit  # one compiled program (eagerly, the backward pass runs op by op)
  def grad(layer, u):
    return nnx.grad(lambda layer: jnp.mean(layer(u) ** 2))(layer)

  grads = grad(layer, u)
  for path, g in jax.tree_util.tree_leaves_with_path(nnx.state(grads, nnx.Param)):
    assert np.all(np.isfinite(np.asarray(g))), path


def test_hippo_n_real_parts_are_minus_half():
  lam, v = hippo.hippo_n_eig(16)
  np.testing.assert_allclose(lam.real, -0.5, atol=1e-12)
  # V is unitary and diagonalizes the normal part of HiPPO-LegS.
  p = np.sqrt(np.arange(16) + 0.5)
  s = hippo.hippo_legs(16) + np.outer(p, p)
  np.testing.assert_allclose(v @ np.diag(lam) @ v.conj().T, s, atol=1e-9)
  # Eigenvalues come in conjugate pairs: the first half mirrors the second.
  np.testing.assert_allclose(np.sort(lam.imag[:8]), np.sort(-lam.imag[8:]), atol=1e-9)


def test_block_init_and_conj_sym_halves_states():
  lam, v, v_inv = hippo.block_hippo_n(16, 4, conj_sym=True)
  assert lam.shape == (8,) and v.shape == (16, 8) and v_inv.shape == (8, 16)
  np.testing.assert_allclose(v_inv @ v, np.eye(8), atol=1e-9)
  with pytest.raises(ValueError, match="divisible"):
    hippo.block_hippo_n(16, 3, conj_sym=True)


def test_s4d_inits():
  lin = hippo.s4d_init("lin", 4)
  np.testing.assert_allclose(lin.imag, np.pi * np.arange(4))
  inv = hippo.s4d_init("inv", 4)
  np.testing.assert_allclose(inv.real, -0.5)
  assert np.all(np.diff(inv.imag) < 0)
  with pytest.raises(ValueError):
    hippo.s4d_init("nope", 4)


def test_clip_eigs_keeps_layer_stable():
  layer = _make_s5(True, False, "zoh", clip_eigs=True)
  layer.Lambda_re.set_value(jnp.abs(layer.Lambda_re[...]))  # unstable without clipping
  assert np.all(np.abs(np.asarray(layer.state_modes().poles)) < 1)
  u = _input()
  np.testing.assert_allclose(_apply(layer, u), s5_naive(layer, u), atol=2e-4, rtol=1e-4)


def test_find_prunable_layers_paths():
  class Two(nnx.Module):
    def __init__(self):
      self.a = _make_s5(True, False, "zoh")
      self.b = nnx.List([_make_s4d(False, "zoh")])

  assert sorted(find_prunable_layers(Two())) == ["a", "b.0"]


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_methods_agree(reverse):
  from last_nnx.ssm.scan import diagonal_recurrence

  rng = np.random.default_rng(0)
  lam = jnp.asarray(0.95 * np.exp(1j * rng.uniform(0, 3, 5)), jnp.complex64)
  bu = jnp.asarray(rng.normal(size=(2, 40, 5)) + 1j * rng.normal(size=(2, 40, 5)), jnp.complex64)
  a = diagonal_recurrence(lam, bu, reverse=reverse, method="associative")
  s = diagonal_recurrence(lam, bu, reverse=reverse, method="sequential")
  expected = run_recurrence(np.asarray(lam), np.eye(5), np.asarray(bu[0]), reverse=reverse)
  np.testing.assert_allclose(a[0], expected, atol=1e-4)
  np.testing.assert_allclose(s[0], expected, atol=1e-4)
  np.testing.assert_allclose(a, s, atol=1e-4)


@pytest.mark.parametrize("reverse", [False, True])
def test_parallel_scan_gradient_equals_autodiff_through_associative_scan(reverse):
  """The associative path's hand-written transpose (a reverse scan) against JAX's own
  differentiation of ``lax.associative_scan``, for the poles and the driven inputs."""
  from last_nnx.ssm.scan import diagonal_recurrence

  rng = np.random.default_rng(1)
  lam = jnp.asarray(0.9 * np.exp(1j * rng.uniform(0, 3, 5)), jnp.complex64)
  bu = jnp.asarray(rng.normal(size=(2, 37, 5)) + 1j * rng.normal(size=(2, 37, 5)), jnp.complex64)
  w = jnp.asarray(rng.normal(size=(2, 37, 5)) + 1j * rng.normal(size=(2, 37, 5)), jnp.complex64)

  def autodiff_scan(lam, bu):
    a = jnp.broadcast_to(lam, bu.shape)
    return jax.lax.associative_scan(
      lambda l, r: (r[0] * l[0], r[0] * l[1] + r[1]), (a, bu), axis=1, reverse=reverse
    )[1]

  def loss(scan):
    return lambda lam, bu: jnp.sum((scan(lam, bu) * w).real)

  # Compiled (eagerly, the backward passes would run op by op).
  ours = jax.jit(
    jax.grad(
      loss(lambda l, b: diagonal_recurrence(l, b, reverse=reverse, method="associative")), (0, 1)
    )
  )(lam, bu)
  expected = jax.jit(jax.grad(loss(autodiff_scan), (0, 1)))(lam, bu)
  for g, e in zip(ours, expected):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(e))))


@pytest.mark.parametrize("bidirectional", [True, False])
def test_scan_methods_give_the_same_gradients(bidirectional):
  """A one-layer S5 model: loss and every parameter's gradient agree between the
  associative (GPU) and the sequential (CPU) scan."""
  from last_nnx.model import SequenceModel

  x = jax.random.randint(jax.random.key(2), (3, 48), 1, 11)
  lengths, labels = jnp.array([48, 30, 41]), jnp.array([0, 3, 1])

  def loss_and_grads(method):
    model = SequenceModel(
      n_classes=4,
      d_model=8,
      n_layers=1,
      ssm="s5",
      vocab_size=11,
      ssm_config=dict(state_size=8, blocks=2, bidirectional=bidirectional, scan_method=method),
      rngs=nnx.Rngs(1),
    )

    def loss(model):
      logits = model(x, lengths)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    value, grads = nnx.jit(lambda m: nnx.value_and_grad(loss)(m))(model)
    return value, dict(jax.tree_util.tree_leaves_with_path(nnx.state(grads, nnx.Param)))

  value_a, grads_a = loss_and_grads("associative")
  value_s, grads_s = loss_and_grads("sequential")
  np.testing.assert_allclose(value_a, value_s, rtol=1e-6)
  assert grads_a.keys() == grads_s.keys()
  for path, g in grads_s.items():
    scale = float(np.max(np.abs(g))) + 1e-12
    np.testing.assert_allclose(
      grads_a[path], g, rtol=1e-4, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)
    )


# Both output layouts (narrow states side by side, wide states per direction) on the
# associative path, where they differ; one case of each other branch.
@pytest.mark.parametrize(
  "states,channels,bidirectional,method",
  [
    (3, 8, True, "associative"),
    (6, 4, True, "associative"),
    (3, 8, False, "associative"),
    (3, 8, True, "sequential"),
  ],
)
def test_mimo_system_output_and_gradients_in_both_output_layouts(
  states, channels, bidirectional, method
):
  """``mimo_diagonal_system`` (one matmul over both directions' states side by side when
  they are narrower than the output, else one per direction) against the plain form,
  one complex einsum per direction, differentiated by JAX: same outputs, same
  gradients for B, C and u."""
  from last_nnx.ssm.scan import diagonal_recurrence, mimo_diagonal_system

  rng = np.random.default_rng(4)
  cplx = lambda *shape: jnp.asarray(
    rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex64
  )
  lam = jnp.asarray(0.9 * np.exp(1j * rng.uniform(0, 3, states)), jnp.complex64)
  b, c = cplx(states, channels), cplx(2, channels, states)
  u = jnp.asarray(rng.normal(size=(2, 19, channels)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(2, 19, channels)), jnp.float32)

  def plain(b, c, u):
    bu = jnp.einsum("blh,sh->bls", u.astype(b.dtype), b)
    y = jnp.einsum("bls,hs->blh", diagonal_recurrence(lam, bu, method="sequential"), c[0]).real
    if not bidirectional:
      return y
    back = diagonal_recurrence(lam, bu, reverse=True, method="sequential")
    return y + jnp.einsum("bls,hs->blh", back, c[1]).real

  ours = lambda b, c, u: mimo_diagonal_system(
    lam, b, c, u, bidirectional=bidirectional, method=method
  )
  np.testing.assert_allclose(jax.jit(ours)(b, c, u), jax.jit(plain)(b, c, u), rtol=1e-5, atol=1e-5)
  grads = [
    jax.jit(jax.grad(lambda *a, f=f: jnp.sum(f(*a) * w), (0, 1, 2)))(b, c, u) for f in (ours, plain)
  ]
  for g, e in zip(*grads):
    np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(e))))
