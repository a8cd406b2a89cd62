"""The Mamba-2 layer: SSD scan == recurrence, streaming == forward, mask == compact, statistics.

Tiny shapes throughout (one layer, a few heads): these tests check the math, not speed
(speed: `python -m last_nnx.bench mamba2`).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from last_nnx.model import SequenceModel
from last_nnx.ssm import make_ssm, ssd
from last_nnx.ssm.mamba2 import Mamba2, causal_conv
from last_nnx.train import optim, steps

D_MODEL = 8
# 4 heads of 4 channels in 2 groups, 6 states per group, chunks of 5 steps.
OPTIONS = dict(state_size=6, head_dim=4, n_groups=2, chunk_size=5, dt_min=0.01, dt_max=0.5)


# Everything runs jitted: eager JAX compiles each operation on its own, which here costs
# more than compiling the whole function once.
_chunked = jax.jit(ssd.ssd_chunked, static_argnums=(5,))
_sequential = jax.jit(ssd.ssd_sequential)
_forward = nnx.jit(lambda m, u: m(u))


def _layer(seed=0, **overrides):
  return make_ssm("mamba2", D_MODEL, dict(OPTIONS, **overrides), rngs=nnx.Rngs(seed))


def _inputs(length=13, batch=2, seed=1):
  return jax.random.normal(jax.random.key(seed), (batch, length, D_MODEL))


def _rel(a, b):
  return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def _random_scan_inputs(length, seed=0, b=2, h=6, p=3, g=3, n=5):
  k = jax.random.split(jax.random.key(seed), 6)
  x = jax.random.normal(k[0], (b, length, h, p))
  dt = jax.nn.softplus(jax.random.normal(k[1], (b, length, h)) - 1.0)
  a = -jnp.exp(jax.random.normal(k[2], (h,)))
  bm = jax.random.normal(k[3], (b, length, g, n))
  cm = jax.random.normal(k[4], (b, length, g, n))
  init = jax.random.normal(k[5], (b, h, n, p))
  return x, dt, a, bm, cm, init


@pytest.mark.parametrize("length", [1, 7, 13, 30])
def test_ssd_chunked_matches_sequential_recurrence(length):
  """float32 throughout; chunks of 4 and 8 never divide these L but one (L = 1 < T)."""
  x, dt, a, bm, cm, init = _random_scan_inputs(length)
  y_ref, h_ref = _sequential(x, dt, a, bm, cm)
  for chunk in (4, 8):
    y, h = _chunked(x, dt, a, bm, cm, chunk)
    assert y.shape == y_ref.shape and h.shape == h_ref.shape
    assert _rel(y, y_ref) < 1e-5 and _rel(h, h_ref) < 1e-5
  # With a state carried in (the inter-chunk recurrence starts from it).
  y_ref, h_ref = _sequential(x, dt, a, bm, cm, init)
  y, h = _chunked(x, dt, a, bm, cm, 4, init)
  assert _rel(y, y_ref) < 1e-5 and _rel(h, h_ref) < 1e-5


def test_sequential_reference_is_the_recurrence():
  """The reference itself against a numpy loop over heads and steps."""
  x, dt, a, bm, cm, _ = _random_scan_inputs(6, h=4, g=2)
  y, _ = _sequential(x, dt, a, bm, cm)
  x, dt, a, bm, cm = (np.asarray(v, np.float64) for v in (x, dt, a, bm, cm))
  b, length, h, p = x.shape
  r = h // bm.shape[2]
  want = np.zeros_like(x)
  for i in range(h):
    state = np.zeros((b, bm.shape[3], p))
    for t in range(length):
      state = (
        np.exp(dt[:, t, i] * a[i])[:, None, None] * state
        + bm[:, t, i // r, :, None] * (dt[:, t, i, None] * x[:, t, i])[:, None, :]
      )
      want[:, t, i] = np.einsum("bn,bnp->bp", cm[:, t, i // r], state)
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-6)


def test_causal_conv_is_the_left_padded_correlation():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 7, 3)))
  w = np.asarray(jax.random.normal(jax.random.key(1), (4, 3)))
  bias = np.array([0.5, -1.0, 2.0])
  want = np.zeros_like(x) + bias
  for t in range(7):
    for k in range(4):
      if t - 3 + k >= 0:
        want[:, t] += w[k] * x[:, t - 3 + k]
  np.testing.assert_allclose(np.asarray(causal_conv(jnp.asarray(x), w, bias)), want, rtol=1e-6)


def test_layer_shapes_and_options():
  layer = _layer()
  assert isinstance(layer, Mamba2) and layer.selective
  assert layer.state_shape == (2, 6) and layer.n_heads == 4 and layer.d_inner == 16
  assert layer.conv_dim == 16 + 2 * 2 * 6
  assert layer.fused_in_projection().shape == (D_MODEL, 2 * 16 + 2 * 12 + 4)
  y = _forward(layer, _inputs())
  assert y.shape == (2, 13, D_MODEL) and y.dtype == jnp.float32
  # softplus(dt_bias) starts inside [dt_min, dt_max]; -A inside [1, 16].
  dt = jax.nn.softplus(layer.dt_bias[...])
  assert np.all((dt >= 0.01 * 0.999) & (dt <= 0.5 * 1.001))
  assert np.all((jnp.exp(layer.A_log[...]) >= 1) & (jnp.exp(layer.A_log[...]) <= 16))
  with pytest.raises(ValueError, match="causal"):
    _layer(bidirectional=True)
  with pytest.raises(ValueError, match="n_groups"):
    _layer(n_groups=3)


def _stream(layer, u):
  step = nnx.jit(lambda m, s, x: m.step(s, x))
  state, ys = layer.init_state(u.shape[0]), []
  for t in range(u.shape[1]):
    state, y = step(layer, state, u[:, t])
    ys.append(y)
  return jnp.stack(ys, axis=1), state


@pytest.mark.parametrize("how", ["dense", "compact"])
def test_stream_equals_forward(how):
  layer, u = _layer(), _inputs()
  if how == "compact":
    layer.prune_states(np.random.default_rng(0).random(12) > 0.5)
  streamed, state = _stream(layer, u)
  np.testing.assert_allclose(
    np.asarray(streamed), np.asarray(_forward(layer, u)), atol=1e-5, rtol=1e-5
  )
  g, n = layer.state_shape
  assert state["ssm"].shape == (2, 4, n, 4) and state["conv"].shape == (2, 3, layer.conv_dim)


def test_compact_equals_mask_and_masked_states_contribute_nothing():
  layer, u = _layer(), _inputs()
  keep = np.array([[1, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0]], bool)  # ragged: 3 and 1 kept
  before = {k: np.asarray(getattr(layer, k)[...]) for k in Mamba2.STATE_AXES}
  layer.mask_states(keep.reshape(-1))
  masked = _forward(layer, u)
  # Anything in a masked state's B/C columns and conv channels is never used.
  for name in Mamba2.STATE_AXES:
    var = getattr(layer, name)
    noise = jax.random.normal(jax.random.key(3), var.shape)
    axis = Mamba2.STATE_AXES[name]
    dead = jnp.asarray(~keep).reshape((1,) * axis + keep.shape + (1,) * (var.ndim - axis - 2))
    var.set_value(var[...] + noise * dead)
  np.testing.assert_array_equal(np.asarray(_forward(layer, u)), np.asarray(masked))
  for name in Mamba2.STATE_AXES:
    getattr(layer, name).set_value(jnp.asarray(before[name]))

  transforms = layer.prune_states(keep)
  assert set(transforms) == set(Mamba2.STATE_AXES)
  assert layer.state_shape == (2, 3)
  np.testing.assert_array_equal(np.asarray(layer.state_mask[...]), [[1, 1, 1], [1, 0, 0]])
  np.testing.assert_allclose(np.asarray(_forward(layer, u)), np.asarray(masked), atol=1e-6)
  # The returned gathers map the old arrays (or optimizer moments shaped like them) onto
  # the new parameters.
  for name, fn in transforms.items():
    np.testing.assert_array_equal(
      np.asarray(fn(jnp.asarray(before[name]))), np.asarray(getattr(layer, name)[...])
    )
  np.testing.assert_array_equal(np.asarray(layer.in_B[...])[:, 0], before["in_B"][:, 0, [0, 2, 3]])


def _naive_statistics(layer, u, lengths):
  """Float64 loops over steps: the states H_t,h of every head, then the three means."""
  inputs = nnx.jit(lambda m, x: m.scan_inputs(x))(layer, u)
  _, x, dt, a, bm, cm = (np.asarray(v, np.float64) for v in inputs)
  b, length, h, p = x.shape
  g, n = bm.shape[2:]
  r = h // g
  out = {k: np.zeros((g, n)) for k in ("output_energy", "controllability", "observability")}
  count = 0
  for i in range(b):
    state = np.zeros((h, n, p))
    for t in range(length):
      state = (
        np.exp(dt[i, t] * a)[:, None, None] * state
        + bm[i, t, np.arange(h) // r, :, None] * (dt[i, t, :, None] * x[i, t])[:, None]
      )
      if t >= lengths[i]:
        continue
      count += 1
      for head in range(h):
        k = head // r
        out["output_energy"][k] += np.sum((cm[i, t, k, :, None] * state[head]) ** 2, axis=-1)
        out["controllability"][k] += np.sum(state[head] ** 2, axis=-1)
      out["observability"] += cm[i, t] ** 2
  return {k: v / count for k, v in out.items()}


def test_state_statistics_match_naive_loop():
  layer, u = _layer(), _inputs(length=12, batch=3)
  layer.mask_states(np.arange(12) % 5 != 2)  # two dead slots, which must read 0
  lengths = np.array([12, 7, 3])
  stats = nnx.jit(lambda m, x, n: m.state_statistics(x, n))(layer, u, jnp.asarray(lengths))
  want = _naive_statistics(layer, u, lengths)
  dead = ~(np.arange(12) % 5 != 2).reshape(2, 6)
  for key, value in want.items():
    got = np.asarray(stats[key])
    assert got.shape == (2, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-12)
    assert np.all(got[dead] == 0) and np.all(got[~dead] > 0)


def test_tiny_model_trains_through_the_train_step():
  model = SequenceModel(
    n_classes=3,
    vocab_size=9,
    d_model=D_MODEL,
    n_layers=1,
    ssm="mamba2",
    ssm_config=OPTIONS,
    rngs=nnx.Rngs(0),
  )
  c = ml_collections.ConfigDict(
    dict(
      ssm_lr=1e-2,
      lr_factor=1.0,
      weight_decay=0.05,
      opt_config="standard",
      dt_global=False,
      warmup_epochs=0.0,
      lr_min=0.0,
      schedule="constant",
      grad_clip=0.0,
      grad_accum=1,
    )
  )
  optimizer, _ = optim.make_optimizer(model, c, total_steps=20, steps_per_epoch=20)
  labels = optim.param_labels(
    nnx.state(model, nnx.Param), "standard", roles=optim.param_roles(model)
  )
  flat = {
    path[-1]: v.get_value()
    for path, v in nnx.to_flat_state(labels)
    if "ssm" in [str(p) for p in path]
  }
  assert {k for k, v in flat.items() if v == "ssm"} == {"A_log", "D", "dt_bias"}
  assert flat["in_B"] == flat["out"] == "regular"

  batch = (
    jax.random.randint(jax.random.key(0), (4, 12), 1, 9),
    jnp.array([12, 8, 5, 12]),
    jnp.array([0, 1, 2, 1]),
  )
  losses = [float(steps.fit(model, optimizer, [batch]).metrics.compute()["loss"]) for _ in range(8)]
  assert np.all(np.isfinite(losses)) and losses[-1] < 0.8 * losses[0]


def test_model_streams_token_by_token():
  """`SequenceModel.step` carries each block's Mamba-2 state dict and equals the forward."""
  model = SequenceModel(
    n_classes=3,
    vocab_size=9,
    d_model=D_MODEL,
    n_layers=2,
    ssm="mamba2",
    ssm_config=OPTIONS,
    rngs=nnx.Rngs(0),
  )
  model.eval()
  x = jax.random.randint(jax.random.key(0), (2, 11), 1, 9)
  step = nnx.jit(lambda m, s, x_t: m.step(s, x_t))
  forward = nnx.jit(lambda m, x, n: m(x, n))
  state = model.init_state(2)
  for t in range(11):
    state, logits = step(model, state, x[:, t])
    if t in (4, 10):
      want = forward(model, x, jnp.full((2,), t + 1))
      np.testing.assert_allclose(np.asarray(logits), np.asarray(want), atol=1e-5)
