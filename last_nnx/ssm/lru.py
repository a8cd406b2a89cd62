"""LRU: the Linear Recurrent Unit (Orvieto et al., 2023), added only through `PrunableSSM`.

"Resurrecting Recurrent Neural Networks for Long Sequences" (ICML 2023,
arXiv 2303.06349). One layer maps ``u (B, L, H)`` to ``y (B, L, H)``:

    x_t = lam * x_{t-1} + gamma * (B u_t)        (S complex states)
    y_t = Re(C x_t) + D * u_t

* **Exponential parameterization.** ``lam = exp(-exp(nu_log) + i exp(theta_log))``:
  ``|lam| = exp(-exp(nu_log)) < 1`` for every value of the parameters, so the
  layer is stable throughout training (no clipping needed).
* **Ring initialization.** ``lam`` is drawn uniformly on the ring
  ``r_min <= |lam| <= r_max`` restricted to phases ``[0, max_phase]``: uniform in
  *area*, i.e. ``|lam|^2`` uniform on ``[r_min^2, r_max^2]`` (the paper's
  sampler), and the phase uniform on ``[0, max_phase]``.
* **Gamma normalization.** ``gamma_log`` starts at ``log(sqrt(1 - |lam|^2))`` and
  is trained: it multiplies the rows of ``B`` so that every state starts with
  unit gain on white noise however close ``|lam|`` is to 1.
* **Glorot-like complex B and C.** Real and imaginary parts of ``B (S, H)`` are
  ``N(0, 1/(2H))``, of ``C (H, S)`` are ``N(0, 1/S)``; ``D (H,)`` is real ``N(0, 1)``.
* **No conjugate pairs.** Every stored state is one complex state and the
  layer outputs ``Re(C x)``: ``output_scale = 1`` and one stored state counts as
  one state of a pruning ratio.
* **Bidirectional (optional, like S5).** A backward recurrence over the same
  poles and input rows with its own output matrix ``C[1]``; then
  ``C`` is ``(2, H, S)`` and the layer cannot stream.

This file is the worked example of docs/extending.md: it declares its
state-carrying parameters in ``STATE_AXES`` and exposes ``state_modes()``;
masking, compaction (of parameters and optimizer moments), scores, checkpoints
and the training loop then work as for S5 and S4D.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.ssm import scan
from last_nnx.ssm.base import SSMLayer, StateMask, StateModes


def _complex(x: jax.Array) -> jax.Array:
  """``(..., 2)`` real pair -> ``(...)`` complex64."""
  return jax.lax.complex(x[..., 0], x[..., 1])


def ring_init(
  key: jax.Array, size: int, r_min: float, r_max: float, max_phase: float
) -> tuple[jax.Array, jax.Array]:
  """``(nu_log, theta_log)`` of poles drawn uniformly on a ring sector.

  ``|lam|^2 ~ U[r_min^2, r_max^2]`` (uniform in area), ``arg lam ~ U[0, max_phase]``.
  """
  k_radius, k_phase = jax.random.split(key)
  u1 = jax.random.uniform(k_radius, (size,))
  u2 = jax.random.uniform(k_phase, (size,))
  # |lam| = exp(-nu) with nu = -log(r) = -0.5 log(r^2).
  nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max**2 - r_min**2) + r_min**2))
  # The tiny offset keeps log finite for a phase drawn at exactly 0.
  theta_log = jnp.log(max_phase * u2 + 1e-8)
  return nu_log, theta_log


class LRU(SSMLayer):
  """Linear Recurrent Unit layer.

  Args:
    d_model: channels H.
    state_size: number S of complex states (each one state, not a conjugate pair).
    r_min, r_max: ring of initial pole radii, ``0 <= r_min < r_max < 1``.
    max_phase: largest initial pole phase (radians).
    bidirectional: add a backward recurrence with its own ``C``.
    scan_method: see `last_nnx.ssm.scan`.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  # Parameter name -> its (first) state axis. Compaction gathers these.
  STATE_AXES = {"nu_log": 0, "theta_log": 0, "gamma_log": 0, "B": 0, "C": 2}
  # The optimizer treats the pole parameterization like S5's Lambda and the input
  # normalization like B (SSM learning rate, no weight decay: decaying nu_log toward
  # 0 would pull |lam| toward exp(-1)).
  PARAM_ROLES = {"nu_log": "dynamics", "theta_log": "dynamics", "gamma_log": "input"}
  output_scale = 1.0

  def __init__(
    self,
    d_model: int,
    state_size: int = 64,
    *,
    r_min: float = 0.9,
    r_max: float = 0.999,
    max_phase: float = 2 * np.pi,
    bidirectional: bool = False,
    scan_method: str = "auto",
    rngs: nnx.Rngs,
  ):
    if not 0.0 <= r_min < r_max < 1.0:
      raise ValueError(f"LRU needs 0 <= r_min < r_max < 1, got r_min={r_min}, r_max={r_max}")
    if not 0.0 < max_phase <= 2 * np.pi:
      raise ValueError(f"LRU max_phase must be in (0, 2 pi], got {max_phase}")
    self.d_model = d_model
    self.bidirectional = bidirectional
    self.scan_method = scan.resolve_method(scan_method)
    directions = 2 if bidirectional else 1

    nu_log, theta_log = ring_init(rngs.params(), state_size, r_min, r_max, max_phase)
    self.nu_log = nnx.Param(nu_log)
    self.theta_log = nnx.Param(theta_log)
    radius = jnp.exp(-jnp.exp(nu_log))
    self.gamma_log = nnx.Param(jnp.log(jnp.sqrt(1 - radius**2)))
    # Complex matrices stored as (..., 2) real pairs (real, imaginary).
    self.B = nnx.Param(
      jax.random.normal(rngs.params(), (state_size, d_model, 2)) / np.sqrt(2 * d_model)
    )
    self.C = nnx.Param(
      jax.random.normal(rngs.params(), (directions, d_model, state_size, 2)) / np.sqrt(state_size)
    )
    self.D = nnx.Param(jax.random.normal(rngs.params(), (d_model,)))
    self.state_mask = StateMask(jnp.ones((state_size,), jnp.float32))

  def poles(self) -> jax.Array:
    """``(S,)`` complex64 ``lam = exp(-exp(nu_log) + i exp(theta_log))``."""
    return jnp.exp(jax.lax.complex(-jnp.exp(self.nu_log[...]), jnp.exp(self.theta_log[...])))

  def input_rows(self) -> jax.Array:
    """``(S, H)`` complex64 normalized input matrix ``gamma * B`` (unmasked)."""
    return jnp.exp(self.gamma_log[...])[:, None] * _complex(self.B[...])

  def state_modes(self) -> StateModes:
    return StateModes(
      poles=self.poles(),
      B=self.input_rows(),
      C=_complex(self.C[...]),
      valid=self.state_mask[...] > 0,
      output_scale=self.output_scale,
      feedthrough=self.D[...],
    )

  def load_state_modes(self, modes: StateModes) -> None:
    """Rewrites the parameters so that the layer's system is ``modes`` (k states).

    ``nu_log = log(-log|lam|)``, ``theta_log = log(arg lam)`` with the phase
    taken in ``(0, 2 pi)`` (``exp(theta_log)`` is positive; a real pole gets
    phase 1e-8), ``gamma`` recomputed as ``sqrt(1 - |lam|^2)`` and ``B`` the
    input rows divided by it. ``C`` is stored as is; ``D`` is kept.
    """
    poles = np.asarray(modes.poles, np.complex128)
    c = np.asarray(modes.C, np.complex128)
    if c.shape[:2] != self.C.shape[:2] or modes.output_scale != self.output_scale:
      raise ValueError(
        f"LRU.load_state_modes: modes with C {c.shape[:2]} and output_scale "
        f"{modes.output_scale}, expected {self.C.shape[:2]} and 1"
      )
    radius = np.clip(np.abs(poles), 1e-6, 1.0 - 1e-7)
    phase = np.maximum(np.mod(np.angle(poles), 2 * np.pi), 1e-8)
    gamma = np.sqrt(1.0 - radius**2)
    b = np.asarray(modes.B, np.complex128) / gamma[:, None]
    pair = lambda z: np.stack([z.real, z.imag], axis=-1).astype(np.float32)
    self.nu_log.set_value(jnp.asarray(np.log(-np.log(radius)), jnp.float32))
    self.theta_log.set_value(jnp.asarray(np.log(phase), jnp.float32))
    self.gamma_log.set_value(jnp.asarray(np.log(gamma), jnp.float32))
    self.B.set_value(jnp.asarray(pair(b)))
    self.C.set_value(jnp.asarray(pair(c)))
    self.state_mask.set_value(jnp.ones((poles.shape[0],), jnp.float32))

  def __call__(self, u: jax.Array) -> jax.Array:
    """``u (B, L, H)`` float32 -> ``y (B, L, H)`` float32."""
    self.record_input(u)
    lam = self.poles()
    b = self.input_rows() * self.state_mask[...][:, None]
    c = _complex(self.C[...])
    y = scan.mimo_diagonal_system(
      lam, b, c, u, bidirectional=self.bidirectional, method=self.scan_method
    )
    return self.output_scale * y + self.D[...] * u

  def step(self, state: jax.Array, u_t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One time step: ``(state (B, S), u_t (B, H)) -> (new_state, y_t (B, H))``.

    ``y_t`` equals ``self(u)[:, t]``; masked (pruned) slots get no input and stay 0.
    """
    self._check_streamable()
    b = self.input_rows() * self.state_mask[...][:, None]
    state = self.poles() * state + u_t.astype(b.dtype) @ b.T
    y = (state @ _complex(self.C[...])[0].T).real
    return state, self.output_scale * y + self.D[...] * u_t
