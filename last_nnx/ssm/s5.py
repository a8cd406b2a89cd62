"""S5: a MIMO diagonal state space layer (Smith, Warrington, Linderman, 2023).

One layer maps ``u (B, L, H)`` to ``y (B, L, H)`` through ``P`` latent states
shared by all channels: ``x_t = lam_bar * x_{t-1} + B_bar u_t``,
``y_t = out_scale * Re(C x_t) + D * u_t`` (``out_scale = 2`` with conjugate
symmetry). The parameters follow the reference S5 semantics: block-diagonal
HiPPO-N poles, ``B`` and ``C`` drawn real and mapped into the eigenbasis, a
learnable log step per state.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.ssm import hippo, scan
from last_nnx.ssm.base import SSMLayer, StateMask, StateModes
from last_nnx.ssm.discretize import discretize, undiscretize

C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")


def _as_complex(x: jax.Array) -> jax.Array:
  """``(..., 2)`` real pair -> ``(...)`` complex."""
  return jax.lax.complex(x[..., 0], x[..., 1])


def _as_pair(z: np.ndarray) -> np.ndarray:
  """``(...)`` complex -> ``(..., 2)`` float32 real pair."""
  return np.stack([z.real, z.imag], axis=-1).astype(np.float32)


class S5(SSMLayer):
  """The S5 SSM layer.

  Args:
    d_model: number of channels H.
    state_size: latent size P (with ``conj_sym`` the layer stores P/2 states,
      each a conjugate pair).
    blocks: number J of HiPPO-N blocks used for initialization.
    conj_sym: enforce conjugate symmetry (store half the states, output 2 Re).
    bidirectional: add a backward-in-time scan with its own C.
    discretization: ``'zoh'`` or ``'bilinear'``.
    dt_min, dt_max: range of the log-uniform initial step sizes.
    step_rescale: multiplies every step at call time (change of resolution).
    c_init: ``'trunc_standard_normal'`` or ``'lecun_normal'`` (real C times V),
      ``'complex_normal'`` (complex C drawn directly).
    clip_eigs: clip Re(lam) to at most -1e-4 (keeps the layer stable).
    scan_method: ``'auto'`` (sequential on CPU, parallel elsewhere),
      ``'associative'`` or ``'sequential'``; see `last_nnx.ssm.scan`.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  STATE_AXES = {"Lambda_re": 0, "Lambda_im": 0, "B": 0, "C": 2, "log_step": 0}

  def __init__(
    self,
    d_model: int,
    state_size: int = 64,
    *,
    blocks: int = 1,
    conj_sym: bool = True,
    bidirectional: bool = False,
    discretization: str = "zoh",
    dt_min: float = 1e-3,
    dt_max: float = 1e-1,
    step_rescale: float = 1.0,
    c_init: str = "trunc_standard_normal",
    clip_eigs: bool = False,
    scan_method: str = "auto",
    rngs: nnx.Rngs,
  ):
    if c_init not in C_INITS:
      raise ValueError(f"unknown c_init {c_init!r}; expected one of {C_INITS}")
    if discretization not in ("zoh", "bilinear"):
      raise ValueError(f"unknown discretization {discretization!r}; expected 'zoh' or 'bilinear'")
    self.d_model = d_model
    self.conj_sym = conj_sym
    self.bidirectional = bidirectional
    self.discretization = discretization
    self.step_rescale = step_rescale
    self.clip_eigs = clip_eigs
    self.scan_method = scan.resolve_method(scan_method)

    lam, v, v_inv = hippo.block_hippo_n(state_size, blocks, conj_sym)
    n_stored = lam.shape[0]
    directions = 2 if bidirectional else 1
    lecun = jax.nn.initializers.lecun_normal()

    self.Lambda_re = nnx.Param(jnp.asarray(lam.real, jnp.float32))
    self.Lambda_im = nnx.Param(jnp.asarray(lam.imag, jnp.float32))
    # B is drawn real in the original basis (P x H) and mapped by V^-1.
    b = np.asarray(lecun(rngs.params(), (state_size, d_model)), np.float64)
    self.B = nnx.Param(jnp.asarray(_as_pair(v_inv @ b)))
    if c_init == "complex_normal":
      c = jax.random.normal(rngs.params(), (directions, d_model, n_stored, 2)) * np.sqrt(0.5)
    else:
      # Real and imaginary parts drawn with fan-in P, then mapped by V.
      pairs = [
        np.asarray(lecun(rngs.params(), (d_model, state_size, 2)), np.float64)
        for _ in range(directions)
      ]
      c = np.stack([_as_pair((p[..., 0] + 1j * p[..., 1]) @ v) for p in pairs])
    self.C = nnx.Param(jnp.asarray(c, jnp.float32))
    self.D = nnx.Param(jax.random.normal(rngs.params(), (d_model,)))
    self.log_step = nnx.Param(
      jax.random.uniform(rngs.params(), (n_stored,), minval=np.log(dt_min), maxval=np.log(dt_max))
    )
    self.state_mask = StateMask(jnp.ones((n_stored,), jnp.float32))

  def _continuous_poles(self) -> jax.Array:
    re = self.Lambda_re[...]
    if self.clip_eigs:
      re = jnp.minimum(re, -1e-4)
    return jax.lax.complex(re, self.Lambda_im[...])

  def discrete_system(self):
    """``(lam_bar (S,), B_bar (S, H), C (D, H, S))`` complex64, unmasked."""
    step = self.step_rescale * jnp.exp(self.log_step[...])
    lam_bar, b_bar = discretize(
      self._continuous_poles(), _as_complex(self.B[...]), step, self.discretization
    )
    return lam_bar, b_bar, _as_complex(self.C[...])

  @property
  def output_scale(self) -> float:
    return 2.0 if self.conj_sym else 1.0

  def state_modes(self) -> StateModes:
    lam_bar, b_bar, c = self.discrete_system()
    return StateModes(
      poles=lam_bar,
      B=b_bar,
      C=c,
      valid=self.state_mask[...] > 0,
      output_scale=self.output_scale,
      feedthrough=self.D[...],
    )

  def load_state_modes(self, modes: StateModes) -> None:
    """Rewrites the parameters so that the discretized system is ``modes`` (k states).

    Every state gets the same step, the geometric mean of the live states'
    steps; then ``Lambda`` and ``B`` invert the discretization at that step
    (`undiscretize`), ``C`` is stored as is and ``D`` is kept. All k slots
    are live afterwards. ``modes.output_scale`` must be this layer's (2 with
    ``conj_sym``: each new state again stands for a conjugate pair).
    """
    poles = np.asarray(modes.poles, np.complex128)
    k = poles.shape[0]
    c = np.asarray(modes.C, np.complex128)
    if modes.output_scale != self.output_scale or c.shape[:2] != self.C.shape[:2]:
      raise ValueError(
        f"S5.load_state_modes: modes with output_scale {modes.output_scale} and "
        f"C {c.shape[:2]}, expected {self.output_scale} and {self.C.shape[:2]}"
      )
    live = np.asarray(self.state_mask[...]) > 0
    log_step = float(np.mean(np.asarray(self.log_step[...])[live]))
    lam, b = undiscretize(poles, modes.B, self.step_rescale * np.exp(log_step), self.discretization)
    self.Lambda_re.set_value(jnp.asarray(lam.real, jnp.float32))
    self.Lambda_im.set_value(jnp.asarray(lam.imag, jnp.float32))
    self.B.set_value(jnp.asarray(_as_pair(b)))
    self.C.set_value(jnp.asarray(_as_pair(c)))
    self.log_step.set_value(jnp.full((k,), log_step, jnp.float32))
    self.state_mask.set_value(jnp.ones((k,), jnp.float32))

  def __call__(self, u: jax.Array) -> jax.Array:
    """Applies the layer.

    Args:
      u: ``(B, L, H)`` float32 input sequences.

    Returns:
      ``(B, L, H)`` float32 outputs.
    """
    self.record_input(u)
    lam_bar, b_bar, c = self.discrete_system()
    b_bar = b_bar * self.state_mask[...][:, None]
    y = scan.mimo_diagonal_system(
      lam_bar, b_bar, c, u, bidirectional=self.bidirectional, method=self.scan_method
    )
    return self.output_scale * y + self.D[...] * u

  def step(self, state: jax.Array, u_t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One time step of the causal layer as an RNN.

    Args:
      state: ``(B, P)`` complex64 previous state (`init_state` at t = 0).
      u_t: ``(B, H)`` float32 input at this step.

    Returns:
      ``(new_state (B, P), y_t (B, H))``; ``y_t`` equals ``self(u)[:, t]``.
      Masked (pruned) slots get no input, so they stay zero.
    """
    self._check_streamable()
    lam_bar, b_bar, c = self.discrete_system()
    b_bar = b_bar * self.state_mask[...][:, None]
    state = lam_bar * state + u_t.astype(b_bar.dtype) @ b_bar.T
    y = (state @ c[0].T).real
    return state, self.output_scale * y + self.D[...] * u_t
