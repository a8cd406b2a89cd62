"""S4D: H independent diagonal SISO systems (Gu, Gupta, Goel, Re, 2022).

Channel ``h`` owns ``n`` stored states (each a conjugate pair):
``x_t = lam_bar[h] * x_{t-1} + B_bar[h] u_t[h]``,
``y_t[h] = 2 Re(C[h] . x_t) + D[h] u_t[h]``. The layer computes the length-L
convolution kernel ``K[h, l] = 2 Re(sum_n C B_bar lam_bar^l)`` (a Vandermonde
product) and applies it by FFT: O(H n L + H L log L) per sequence, and, unlike
a scan, no ``(B, L, H, n)`` state tensor. Measured on 2 CPU cores, FFT vs a
sequential scan over the same states: B=16, L=2048, H=128, N=64: 123 vs 2322 ms
forward, 217 vs 4263 ms gradient; B=4, L=16384: 554 vs 6079 ms, 1.5 vs 10.6 s.

Pruning is ragged: channels keep different numbers of states; the compact form
pads every channel to the longest one and masks the padding.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.ssm import hippo
from last_nnx.ssm.base import SSMLayer, StateMask, StateModes
from last_nnx.ssm.discretize import discretize, undiscretize
from last_nnx.ssm.s5 import _as_complex


def _vandermonde_kernel(lam_bar: jax.Array, cb: jax.Array, length: int) -> jax.Array:
  """``K[h, l] = Re(sum_n cb[h, n] lam_bar[h, n]^l)``, ``(H, length)`` float32."""
  log_lam = jnp.log(lam_bar)
  powers = jnp.exp(log_lam[..., None] * jnp.arange(length))
  return jnp.einsum("hn,hnl->hl", cb, powers).real


class S4D(SSMLayer):
  """The S4D layer (multi-SISO diagonal SSM).

  Args:
    d_model: number of channels H.
    state_size: full state size N per channel (stores N/2 conjugate pairs).
    init: ``'inv'`` (S4D-Inv) or ``'lin'`` (S4D-Lin).
    bidirectional: add an anti-causal kernel with its own C.
    discretization: ``'zoh'`` or ``'bilinear'``.
    dt_min, dt_max: range of the log-uniform initial step (one per channel).
    step_rescale: multiplies the step at call time.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  STATE_AXES = {"Lambda_re": 0, "Lambda_im": 0, "B": 0, "C": 1}

  def __init__(
    self,
    d_model: int,
    state_size: int = 64,
    *,
    init: str = "inv",
    bidirectional: bool = False,
    discretization: str = "zoh",
    dt_min: float = 1e-3,
    dt_max: float = 1e-1,
    step_rescale: float = 1.0,
    rngs: nnx.Rngs,
  ):
    if state_size % 2:
      raise ValueError(f"S4D state_size must be even (conjugate pairs), got {state_size}")
    n = state_size // 2
    lam = hippo.s4d_init(init, n)
    directions = 2 if bidirectional else 1
    self.d_model = d_model
    self.bidirectional = bidirectional
    self.discretization = discretization
    self.step_rescale = step_rescale
    self.Lambda_re = nnx.Param(jnp.asarray(np.broadcast_to(lam.real, (d_model, n)), jnp.float32))
    self.Lambda_im = nnx.Param(jnp.asarray(np.broadcast_to(lam.imag, (d_model, n)), jnp.float32))
    self.B = nnx.Param(jnp.stack([jnp.ones((d_model, n)), jnp.zeros((d_model, n))], axis=-1))
    self.C = nnx.Param(jax.random.normal(rngs.params(), (directions, d_model, n, 2)) * np.sqrt(0.5))
    self.D = nnx.Param(jax.random.normal(rngs.params(), (d_model,)))
    self.log_step = nnx.Param(
      jax.random.uniform(rngs.params(), (d_model,), minval=np.log(dt_min), maxval=np.log(dt_max))
    )
    self.state_mask = StateMask(jnp.ones((d_model, n), jnp.float32))

  output_scale = 2.0

  def discrete_system(self):
    """``(lam_bar (H, n), B_bar (H, n), C (D, H, n))`` complex64, unmasked."""
    lam = jax.lax.complex(jnp.minimum(self.Lambda_re[...], -1e-4), self.Lambda_im[...])
    step = self.step_rescale * jnp.exp(self.log_step[...])[:, None]
    lam_bar, b_bar = discretize(lam, _as_complex(self.B[...])[..., None], step, self.discretization)
    return lam_bar, b_bar[..., 0], _as_complex(self.C[...])

  def state_modes(self) -> StateModes:
    lam_bar, b_bar, c = self.discrete_system()
    h, n = lam_bar.shape
    return StateModes(
      poles=lam_bar.reshape(-1),
      B=b_bar.reshape(-1, 1),
      C=c.reshape(c.shape[0], 1, h * n),
      valid=(self.state_mask[...] > 0).reshape(-1),
      channel=jnp.repeat(jnp.arange(h, dtype=jnp.int32), n),
      output_scale=self.output_scale,
      feedthrough=self.D[...],
    )

  def load_state_modes(self, modes: StateModes) -> None:
    """Rewrites the parameters so that the layer's system is ``modes`` (ragged per channel).

    ``modes.channel`` names each state's channel; channel ``h`` keeps its own
    step and its states' ``Lambda``, ``B`` invert the discretization at that
    step. Channels are padded to the largest count (padding: zero ``B`` and
    ``C``, masked). ``D`` is kept.
    """
    if modes.channel is None:
      raise ValueError("S4D.load_state_modes needs modes.channel (the channel of each state)")
    channel = np.asarray(modes.channel)
    poles = np.asarray(modes.poles, np.complex128)
    b_bar = np.asarray(modes.B, np.complex128)[:, 0]
    c = np.asarray(modes.C, np.complex128)[:, 0]  # (D, S)
    h = self.d_model
    counts = np.bincount(channel, minlength=h)
    width = max(1, int(counts.max(initial=0)))
    lam_full = np.full((h, width), -0.5 + 0j)
    b_full = np.zeros((h, width), np.complex128)
    c_full = np.zeros((c.shape[0], h, width), np.complex128)
    mask = np.zeros((h, width), np.float32)
    steps = self.step_rescale * np.exp(np.asarray(self.log_step[...], np.float64))
    for g in range(h):
      idx = np.flatnonzero(channel == g)
      if idx.size == 0:
        continue
      lam, b = undiscretize(poles[idx], b_bar[idx, None], steps[g], self.discretization)
      lam_full[g, : idx.size], b_full[g, : idx.size] = lam, b[:, 0]
      c_full[:, g, : idx.size] = c[:, idx]
      mask[g, : idx.size] = 1.0
    pair = lambda z: jnp.asarray(np.stack([z.real, z.imag], axis=-1), jnp.float32)
    self.Lambda_re.set_value(jnp.asarray(lam_full.real, jnp.float32))
    self.Lambda_im.set_value(jnp.asarray(lam_full.imag, jnp.float32))
    self.B.set_value(pair(b_full))
    self.C.set_value(pair(c_full))
    self.state_mask.set_value(jnp.asarray(mask))

  def kernel(self, length: int) -> jax.Array:
    """Convolution kernels ``(D, H, length)`` float32 (D = 2 when bidirectional)."""
    lam_bar, b_bar, c = self.discrete_system()
    cb = c * (b_bar * self.state_mask[...])[None]
    return jnp.stack(
      [self.output_scale * _vandermonde_kernel(lam_bar, cb_d, length) for cb_d in cb]
    )

  def __call__(self, u: jax.Array) -> jax.Array:
    """Applies the layer.

    Args:
      u: ``(B, L, H)`` float32 input sequences.

    Returns:
      ``(B, L, H)`` float32 outputs.
    """
    self.record_input(u)
    length = u.shape[1]
    k = self.kernel(length)
    # Circular convolution of length 2L: lag m >= 0 at index m (causal),
    # lag -m at index 2L - m (anti-causal, the backward direction).
    full = jnp.pad(k[0], ((0, 0), (0, length)))
    if self.bidirectional:
      back = k[1]
      full = full.at[:, 0].add(back[:, 0])
      full = full.at[:, length + 1 :].add(back[:, :0:-1])
    u_f = jnp.fft.rfft(u, n=2 * length, axis=1)
    k_f = jnp.fft.rfft(full, n=2 * length, axis=-1).T  # (2L/2+1, H)
    y = jnp.fft.irfft(u_f * k_f[None], n=2 * length, axis=1)[:, :length]
    return y + self.D[...] * u

  def step(self, state: jax.Array, u_t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One time step of the causal layer as H independent SISO RNNs.

    The recurrence the convolution kernel unrolls:
    ``x[h] = lam_bar[h] * x[h] + B_bar[h] u_t[h]``,
    ``y_t[h] = 2 Re(C[h] . x[h]) + D[h] u_t[h]``.

    Args:
      state: ``(B, H, n)`` complex64 previous state (`init_state` at t = 0).
      u_t: ``(B, H)`` float32 input at this step.

    Returns:
      ``(new_state (B, H, n), y_t (B, H))``; ``y_t`` equals ``self(u)[:, t]``
      up to the FFT's rounding. Masked and padding slots stay zero.
    """
    self._check_streamable()
    lam_bar, b_bar, c = self.discrete_system()
    b_bar = b_bar * self.state_mask[...]
    state = lam_bar * state + b_bar * u_t.astype(b_bar.dtype)[..., None]
    y = jnp.einsum("hn,bhn->bh", c[0], state).real
    return state, self.output_scale * y + self.D[...] * u_t
