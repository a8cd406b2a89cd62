"""LRU: the Linear Recurrent Unit (Orvieto et al., 2023), added only through `PrunableSSM`.

``x_t = lam * x_{t-1} + gamma * (B u_t)``, ``y_t = Re(C x_t) + D u_t`` with
``lam = exp(-exp(nu_log) + i exp(theta_log))`` (always stable), ring
initialization (``|lam|`` uniform on ``[r_min, r_max]`` in squared radius,
phase on ``[0, max_phase]``) and the normalization
``gamma = sqrt(1 - |lam|^2)`` so that every state starts with unit gain on
white noise. States are complex and unpaired: the layer outputs ``Re(C x)``
(``output_scale = 1``). This file is the worked example of docs/extending.md:
declare the state-carrying parameters, expose ``state_modes()``, and the
pruning engine, the optimizer, checkpoints and the training loop work as for
S5 and S4D.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.ssm import scan
from last_nnx.ssm.base import DiagonalSSM, StateMask, StateModes


def _complex(x: jax.Array) -> jax.Array:
  return jax.lax.complex(x[..., 0], x[..., 1])


class LRU(DiagonalSSM):
  """Linear Recurrent Unit layer.

  Args:
    d_model: channels H.
    state_size: number of complex states S.
    r_min, r_max: ring of initial pole radii.
    max_phase: largest initial pole phase.
    bidirectional: add a backward recurrence with its own C.
    scan_method: see `last_nnx.ssm.scan`.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  STATE_AXES = {"nu_log": 0, "theta_log": 0, "gamma_log": 0, "B": 0, "C": 2}
  output_scale = 1.0

  def __init__(self, d_model: int, state_size: int = 64, *, r_min: float = 0.9,
               r_max: float = 0.999, max_phase: float = 2 * np.pi, bidirectional: bool = False,
               scan_method: str = "auto", rngs: nnx.Rngs):
    self.bidirectional = bidirectional
    self.scan_method = scan.resolve_method(scan_method)
    key = rngs.params
    u1 = jax.random.uniform(key(), (state_size,))
    u2 = jax.random.uniform(key(), (state_size,))
    nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
    theta_log = jnp.log(max_phase * u2 + 1e-6)
    self.nu_log = nnx.Param(nu_log)
    self.theta_log = nnx.Param(theta_log)
    radius = jnp.exp(-jnp.exp(nu_log))
    self.gamma_log = nnx.Param(jnp.log(jnp.sqrt(1 - radius ** 2)))
    # Glorot-like complex init: real and imaginary parts each with variance 1/(2 fan_in).
    self.B = nnx.Param(jax.random.normal(key(), (state_size, d_model, 2)) / np.sqrt(2 * d_model))
    directions = 2 if bidirectional else 1
    self.C = nnx.Param(jax.random.normal(key(), (directions, d_model, state_size, 2))
                       / np.sqrt(state_size))
    self.D = nnx.Param(jax.random.normal(key(), (d_model,)))
    self.state_mask = StateMask(jnp.ones((state_size,), jnp.float32))

  def poles(self) -> jax.Array:
    return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log[...]), jnp.exp(self.theta_log[...])))

  def state_modes(self) -> StateModes:
    b = jnp.exp(self.gamma_log[...])[:, None] * _complex(self.B[...])
    return StateModes(poles=self.poles(), B=b, C=_complex(self.C[...]),
                      valid=self.state_mask[...] > 0, output_scale=self.output_scale,
                      feedthrough=self.D[...])

  def __call__(self, u: jax.Array) -> jax.Array:
    """``u`` ``(B, L, H)`` float32 -> ``(B, L, H)`` float32."""
    modes = self.state_modes()
    b = modes.B * self.state_mask[...][:, None]
    bu = jnp.einsum("blh,sh->bls", u.astype(b.dtype), b)
    y = jnp.einsum("bls,hs->blh",
                   scan.diagonal_recurrence(modes.poles, bu, method=self.scan_method),
                   modes.C[0]).real
    if self.bidirectional:
      back = scan.diagonal_recurrence(modes.poles, bu, reverse=True, method=self.scan_method)
      y = y + jnp.einsum("bls,hs->blh", back, modes.C[1]).real
    return y + self.D[...] * u
