"""Prunability regularizers: exact values, gradients against finite differences, the loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from last_nnx.ssm import S4D, S5, StateModes
from last_nnx.train import regularizers


def _real_system(modes: StateModes, n_channels: int):
  """Full complex state space with conjugates completed and channels embedded."""
  lam = np.asarray(modes.poles, np.complex128)
  b = np.asarray(modes.B, np.complex128) * np.asarray(modes.valid)[:, None]
  c = np.concatenate(list(np.asarray(modes.C, np.complex128)), axis=0)
  if modes.channel is not None:  # SISO channels -> block-diagonal MIMO
    ch = np.asarray(modes.channel)
    b_full = np.zeros((len(lam), n_channels), complex)
    b_full[np.arange(len(lam)), ch] = b[:, 0]
    d = modes.C.shape[0]
    c_full = np.zeros((d * n_channels, len(lam)), complex)
    for k in range(d):
      c_full[k * n_channels + ch, np.arange(len(lam))] = np.asarray(modes.C)[k, 0]
    b, c = b_full, c_full
  if modes.output_scale == 2.0:
    lam = np.concatenate([lam, lam.conj()])
    b = np.concatenate([b, b.conj()])
    c = np.concatenate([c, c.conj()], axis=1)
  return np.diag(lam), b, c


def _numpy_hankel_sum(modes, n_channels):
  a, b, c = _real_system(modes, n_channels)
  p = scipy.linalg.solve_discrete_lyapunov(a, b @ b.conj().T)
  q = scipy.linalg.solve_discrete_lyapunov(a.conj().T, c.conj().T @ c)
  return float(np.sum(np.sqrt(np.abs(np.linalg.eigvals(p @ q)))))


@pytest.mark.parametrize(
  "layer_fn,channels",
  [
    (lambda: S5(4, 8, blocks=2, bidirectional=False, dt_min=0.05, dt_max=0.5, rngs=nnx.Rngs(0)), 4),
    (lambda: S5(4, 8, blocks=2, bidirectional=True, dt_min=0.05, dt_max=0.5, rngs=nnx.Rngs(1)), 4),
    (lambda: S4D(3, 6, bidirectional=True, dt_min=0.05, dt_max=0.5, rngs=nnx.Rngs(2)), 3),
  ],
)
def test_hankel_nuclear_matches_lyapunov_reference(layer_fn, channels):
  layer = layer_fn()
  modes = layer.state_modes()
  expected = _numpy_hankel_sum(modes, channels)
  assert float(regularizers.hankel_nuclear(modes)) == pytest.approx(expected, rel=2e-3)


def test_modal_l1_values():
  modes = S5(4, 8, bidirectional=True, rngs=nnx.Rngs(0)).state_modes()
  norms = np.sqrt(
    np.asarray(jnp.sum(jnp.abs(modes.C) ** 2, axis=(0, 1)))
    * np.asarray(jnp.sum(jnp.abs(modes.B) ** 2, axis=1))
    / ((1 - np.abs(np.asarray(modes.poles))) ** 2 + 1e-8)
  )
  modal = float(regularizers.modal_l1(modes, normalize="none"))
  assert modal == pytest.approx(norms.sum(), rel=1e-4)
  ratio = norms.sum() / np.sqrt((norms**2).sum())
  assert float(regularizers.modal_l1(modes)) == pytest.approx(ratio, rel=1e-4)


def _modes_from(params, n_states=3, h=2, bidirectional=True, scale=2.0):
  re, im, b_re, b_im, c_re, c_im = params
  return StateModes(
    poles=jax.lax.complex(re, im),
    B=jax.lax.complex(b_re, b_im),
    C=jax.lax.complex(c_re, c_im),
    valid=jnp.ones(n_states, bool),
    output_scale=scale,
  )


@pytest.mark.parametrize(
  "kind", ["modal_l1_hinf", "modal_l1_h2", "modal_l1_hinf_T16", "modal_l1_h2_T16", "hankel"]
)
def test_gradients_match_finite_differences(kind):
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    radius = rng.uniform(0.3, 0.9, 3)
    angle = rng.uniform(0.2, 2.5, 3)
    params = [
      jnp.asarray(v, jnp.float64)
      for v in (
        radius * np.cos(angle),
        radius * np.sin(angle),
        rng.normal(size=(3, 2)),
        rng.normal(size=(3, 2)),
        rng.normal(size=(2, 2, 3)),
        rng.normal(size=(2, 2, 3)),
      )
    ]

    def f(*p):
      modes = _modes_from(p)
      if kind == "hankel":
        return regularizers.hankel_nuclear(modes)
      horizon = 16 if kind.endswith("_T16") else None
      return regularizers.modal_l1(
        modes, norm=kind.split("_")[2], normalize="layer", horizon=horizon
      )

    grads = jax.jit(jax.grad(f, argnums=tuple(range(6))))(*params)
    f = jax.jit(f)  # the same function, compiled once for the ~50 evaluations below
    eps = 1e-6
    for i, (p, g) in enumerate(zip(params, grads)):
      flat = np.asarray(p).ravel()
      for j in range(0, flat.size, max(1, flat.size // 4)):
        up, down = flat.copy(), flat.copy()
        up[j] += eps
        down[j] -= eps
        args_up = list(params)
        args_up[i] = jnp.asarray(up.reshape(p.shape))
        args_down = list(params)
        args_down[i] = jnp.asarray(down.reshape(p.shape))
        fd = (float(f(*args_up)) - float(f(*args_down))) / (2 * eps)
        assert float(np.asarray(g).ravel()[j]) == pytest.approx(fd, rel=1e-4, abs=1e-6), (i, j)


def test_weight_schedules():
  assert regularizers.weight_at(3, 0.1, "off", 1) == 0.0
  assert regularizers.weight_at(3, 0.1, "constant", 1) == 0.1
  assert regularizers.weight_at(1, 0.1, "ramp", 4) == pytest.approx(0.025)
  assert regularizers.weight_at(9, 0.1, "ramp", 4) == pytest.approx(0.1)
  with pytest.raises(ValueError):
    regularizers.weight_at(1, 0.1, "sometimes", 1)
  with pytest.raises(ValueError, match="regularizer.kind"):
    regularizers.RegularizerSpec(kind="l2")


@pytest.mark.parametrize("kind", ["modal_l1", "hankel"])
def test_loop_logs_the_penalty_and_it_falls(kind, tmp_path, monkeypatch):
  from last_nnx.train import loop
  from tests.test_train_loop import _base

  monkeypatch.setenv("LAST_NNX_CACHE", str(tmp_path / "cache"))
  # test_train_loop's BASE (one layer, 3 epochs), without pruning.
  config = _base(
    tmp_path, **{"pruning.schedule": "none", "regularizer.kind": kind, "regularizer.weight": 1.0}
  )
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  penalties = [e["train/penalty"] for e in summary["epochs"]]
  assert all(np.isfinite(penalties)) and penalties[-1] < penalties[0]
