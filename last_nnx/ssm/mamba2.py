"""Mamba-2: a selective SSM mixer (Dao and Gu 2024, "Transformers are SSMs").

One layer maps ``u (B, L, d_model)`` to ``(B, L, d_model)``:

1. in-projection of ``u`` to ``z (d_inner)``, ``x (d_inner)``, ``B (G, N)``,
   ``C (G, N)``, ``dt (n_heads)``, ``d_inner = n_heads * head_dim``;
2. causal depthwise convolution (width W) over ``(x, B, C)``, then SiLU;
3. ``dt = clip(softplus(dt + dt_bias), *dt_limit)``, ``A_h = -exp(A_log_h)`` (a scalar per head),
   the SSD scan (`last_nnx.ssm.ssd`): per head ``h`` of group ``g``
   ``H_t = exp(dt_t A_h) H_{t-1} + B_t,g (dt_t x_t,h)^T``, ``y_t,h = H_t^T C_t,g + D_h x_t,h``;
4. gated RMS norm ``norm(y * silu(z))`` (learned scale), over each of ``norm_groups``
   slices of ``d_inner`` (mamba_ssm: one per group; transformers: the whole width);
5. out-projection ``d_inner -> d_model``.

**Parameters.** Mamba-2 has one fused in-projection with output blocks
``[z, x, B, C, dt]`` and one depthwise conv over ``conv_dim = d_inner + 2 G N``
channels ``[x, B, C]``. Here each block is its own parameter (``in_z``,
``in_x``, ``in_B (d_model, G, N)``, ``in_C``, ``in_dt``; ``conv_x (W, d_inner)``,
``conv_B (W, G, N)``, ``conv_C``, and their biases). The forward pass
concatenates them back into the fused matrices, so the split is exact (the
same function, one matmul and one conv), and removing state ``n`` of group
``g`` is a plain gather on the ``(G, N)`` axes of the six B/C parameters:
`SSMLayer.prune_states` does it (``STATE_AXES``), ragged per group (each
group keeps its own count, padded and masked to the largest).

**Pruned states.** The ``StateMask (G, N)`` multiplies ``B`` and ``C`` after the
conv: a masked state gets no input and is never read, so it contributes
exactly nothing, and its slot in the streaming state stays zero.

**Optimizer roles** (`last_nnx.train.optim`): ``A_log``, ``D`` as S5's
``Lambda_re`` and ``dt_bias`` as ``log_step``: the SSM learning rate and no
weight decay, as Mamba-2 exempts them from decay (decaying ``A_log`` to 0 would
pull every head's rate to 1). Configs give Mamba-2 one learning rate
(``lr_factor = 1``). Everything else (projections, convs, norm) is a regular
weight.

**Padding.** The layer is causal: outputs at valid steps never depend on the
padded tail, so, as for the other causal layers, ``model.py`` needs no lengths
here. `state_statistics` counts valid steps only.

Causal only: ``bidirectional=True`` is refused.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.ssm import ssd
from last_nnx.ssm.base import SSMLayer, StateMask
from last_nnx.ssm.registry import register_ssm


def _uniform(key, shape, bound):
  return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def causal_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  """Depthwise causal conv: ``y[t, c] = bias[c] + sum_k kernel[k, c] x[t - W + 1 + k, c]``.

  ``x (B, L, C)``, ``kernel (W, C)``, ``bias (C,)``; steps before 0 are zeros.
  """
  w, length = kernel.shape[0], x.shape[1]
  padded = jnp.pad(x, ((0, 0), (w - 1, 0), (0, 0)))
  return bias + sum(kernel[k] * padded[:, k : k + length] for k in range(w))


def gated_rms_norm(
  y: jax.Array, z: jax.Array, scale: jax.Array, groups: int, eps: float = 1e-5
) -> jax.Array:
  """``RMSNorm(y * silu(z)) * scale`` over each group's ``d_inner / groups`` channels."""
  v = y * jax.nn.silu(z)
  grouped = v.reshape(v.shape[:-1] + (groups, -1))
  norm = grouped * jax.lax.rsqrt(jnp.mean(grouped * grouped, axis=-1, keepdims=True) + eps)
  return norm.reshape(v.shape) * scale


@register_ssm("mamba2")
class Mamba2(SSMLayer):
  """The Mamba-2 mixer as a prunable SSM layer (see the module docstring).

  Args:
    d_model: input/output channels.
    state_size: N, states per group.
    n_heads: number of heads; None: ``expand * d_model / head_dim``.
    head_dim: P, channels per head.
    n_groups: G, groups of heads sharing B and C (divides ``n_heads``).
    expand: ``d_inner / d_model`` when ``n_heads`` is None (Mamba-2: 2).
    conv_width: W of the causal depthwise conv (Mamba-2: 4).
    chunk_size: T of the chunked SSD scan (Mamba-2: 256; ours 64, for short CPU runs).
    dt_min, dt_max: ``softplus(dt_bias)`` starts log-uniform on this range.
    A_min, A_max: ``-A`` starts uniform on this range (Mamba-2: [1, 16]).
    dt_limit: ``(lo, hi)`` clamp of ``dt`` after the softplus (mamba_ssm's ``dt_limit``,
      transformers' ``time_step_limit``); the default ``(0, inf)`` clamps nothing.
    norm_groups: slices of ``d_inner`` the gated RMS norm normalizes separately; None:
      ``n_groups`` (mamba_ssm); 1: the whole width (transformers' ``Mamba2ForCausalLM``).
    norm_eps: epsilon of the gated RMS norm.
    bidirectional: must be False (Mamba-2 is causal).
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  selective = True
  bidirectional = False
  STATE_AXES = {"in_B": 1, "in_C": 1, "conv_B": 1, "conv_C": 1, "conv_B_bias": 0, "conv_C_bias": 0}
  # The columns that write into (B) and read from (C) each state: `magnitude` scores them.
  STATE_IO = ("in_B", "in_C")
  # D (the per-head skip) is trained like the dynamics, as in the Mamba reference.
  PARAM_ROLES = {"A_log": "dynamics", "D": "dynamics", "dt_bias": "step"}

  def __init__(
    self,
    d_model: int,
    state_size: int = 64,
    *,
    n_heads: int | None = None,
    head_dim: int = 16,
    n_groups: int = 1,
    expand: int = 2,
    conv_width: int = 4,
    chunk_size: int = 64,
    dt_min: float = 1e-3,
    dt_max: float = 0.1,
    A_min: float = 1.0,
    A_max: float = 16.0,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    norm_groups: int | None = None,
    norm_eps: float = 1e-5,
    bidirectional: bool = False,
    rngs: nnx.Rngs,
  ):
    if bidirectional:
      raise ValueError(
        "Mamba2 is causal: bidirectional=True is not supported "
        "(set model.ssm_config.bidirectional=False)"
      )
    if n_heads is None:
      if (expand * d_model) % head_dim:
        raise ValueError(
          f"Mamba2: expand * d_model = {expand * d_model} is not a multiple of "
          f"head_dim = {head_dim}; set n_heads or head_dim"
        )
      n_heads = expand * d_model // head_dim
    if n_heads % n_groups:
      raise ValueError(f"Mamba2: n_heads = {n_heads} is not a multiple of n_groups = {n_groups}")
    if not 0 < dt_min <= dt_max or not 0 < A_min <= A_max or conv_width < 1 or chunk_size < 1:
      raise ValueError(
        "Mamba2 needs 0 < dt_min <= dt_max, 0 < A_min <= A_max, conv_width >= 1 and chunk_size >= 1"
      )
    d_inner = n_heads * head_dim
    norm_groups = n_groups if norm_groups is None else norm_groups
    if d_inner % norm_groups:
      raise ValueError(
        f"Mamba2: d_inner = {d_inner} is not a multiple of norm_groups = {norm_groups}"
      )
    g, n, w = n_groups, state_size, conv_width
    self.dt_limit = (float(dt_limit[0]), float(dt_limit[1]))
    self.norm_groups, self.norm_eps = norm_groups, norm_eps
    self.d_model, self.n_heads, self.head_dim, self.n_groups = d_model, n_heads, head_dim, g
    self.chunk_size = chunk_size
    key = lambda: rngs.params()
    # Linear layers as PyTorch initializes Mamba-2's: U(+-1/sqrt(fan_in)), no bias.
    bound = 1.0 / np.sqrt(d_model)
    self.in_z = nnx.Param(_uniform(key(), (d_model, d_inner), bound))
    self.in_x = nnx.Param(_uniform(key(), (d_model, d_inner), bound))
    self.in_B = nnx.Param(_uniform(key(), (d_model, g, n), bound))
    self.in_C = nnx.Param(_uniform(key(), (d_model, g, n), bound))
    self.in_dt = nnx.Param(_uniform(key(), (d_model, n_heads), bound))
    cb = 1.0 / np.sqrt(w)  # depthwise conv: fan_in = W
    self.conv_x = nnx.Param(_uniform(key(), (w, d_inner), cb))
    self.conv_x_bias = nnx.Param(_uniform(key(), (d_inner,), cb))
    self.conv_B = nnx.Param(_uniform(key(), (w, g, n), cb))
    self.conv_B_bias = nnx.Param(_uniform(key(), (g, n), cb))
    self.conv_C = nnx.Param(_uniform(key(), (w, g, n), cb))
    self.conv_C_bias = nnx.Param(_uniform(key(), (g, n), cb))
    # softplus(dt_bias) ~ logU[dt_min, dt_max] (floored at 1e-4 as Mamba-2); the
    # inverse softplus of dt is dt + log(1 - exp(-dt)).
    dt = jnp.exp(
      jax.random.uniform(key(), (n_heads,), minval=np.log(dt_min), maxval=np.log(dt_max))
    )
    dt = jnp.maximum(dt, 1e-4)
    self.dt_bias = nnx.Param(dt + jnp.log(-jnp.expm1(-dt)))
    self.A_log = nnx.Param(
      jnp.log(jax.random.uniform(key(), (n_heads,), minval=A_min, maxval=A_max))
    )
    self.D = nnx.Param(jnp.ones((n_heads,), jnp.float32))
    self.norm_scale = nnx.Param(jnp.ones((d_inner,), jnp.float32))
    self.out = nnx.Param(_uniform(key(), (d_inner, d_model), 1.0 / np.sqrt(d_inner)))
    self.state_mask = StateMask(jnp.ones((g, n), jnp.float32))

  # ---- shapes and fused views -------------------------------------------------------

  @property
  def d_inner(self) -> int:
    return self.n_heads * self.head_dim

  @property
  def conv_dim(self) -> int:
    """Conv channels ``d_inner + 2 G N`` (N the current, possibly compacted, width)."""
    g, n = self.state_shape
    return self.d_inner + 2 * g * n

  def fused_in_projection(self) -> jax.Array:
    """``(d_model, 2 d_inner + 2 G N + n_heads)``: Mamba-2's in_proj, blocks [z, x, B, C, dt]."""
    d = self.d_model
    return jnp.concatenate(
      [
        self.in_z[...],
        self.in_x[...],
        self.in_B[...].reshape(d, -1),
        self.in_C[...].reshape(d, -1),
        self.in_dt[...],
      ],
      axis=1,
    )

  def fused_conv(self) -> tuple[jax.Array, jax.Array]:
    """``(kernel (W, conv_dim), bias (conv_dim,))`` over channels [x, B, C]."""
    w = self.conv_x.shape[0]
    kernel = jnp.concatenate(
      [self.conv_x[...], self.conv_B[...].reshape(w, -1), self.conv_C[...].reshape(w, -1)], axis=1
    )
    bias = jnp.concatenate(
      [self.conv_x_bias[...], self.conv_B_bias[...].reshape(-1), self.conv_C_bias[...].reshape(-1)]
    )
    return kernel, bias

  def _project(self, u: jax.Array):
    """``u (..., d_model) -> z (..., d_inner), xBC (..., conv_dim), dt (..., nh)``.

    The same products as ``u @ fused_in_projection()``, one matmul per block: fusing
    the weights would copy them on every call, which decoding (bound by reading the
    weights) pays for in full.
    """
    flat = lambda w: w[...].reshape(self.d_model, -1)
    xbc = jnp.concatenate([u @ self.in_x[...], u @ flat(self.in_B), u @ flat(self.in_C)], -1)
    return u @ self.in_z[...], xbc, u @ self.in_dt[...]

  def _split_conv(self, xbc: jax.Array):
    """Activated conv output -> ``x (..., nh, P)``, masked ``B, C (..., G, N)``."""
    g, n = self.state_shape
    e, mask = self.d_inner, self.state_mask[...]
    x = xbc[..., :e].reshape(xbc.shape[:-1] + (self.n_heads, self.head_dim))
    b = xbc[..., e : e + g * n].reshape(xbc.shape[:-1] + (g, n)) * mask
    c = xbc[..., e + g * n :].reshape(xbc.shape[:-1] + (g, n)) * mask
    return x, b, c

  def _decay(self, dt_raw: jax.Array):
    """``(dt = clip(softplus(dt_raw + dt_bias), *dt_limit), A = -exp(A_log))``."""
    dt = jax.nn.softplus(dt_raw + self.dt_bias[...])
    lo, hi = self.dt_limit
    if lo > 0.0 or hi < float("inf"):
      dt = jnp.clip(dt, lo, hi)
    return dt, -jnp.exp(self.A_log[...])

  def _output(self, y: jax.Array, x: jax.Array, z: jax.Array) -> jax.Array:
    """Skip, gated norm and out-projection: ``y, x (..., nh, P)``, ``z (..., d_inner)``."""
    y = y + self.D[...][:, None] * x
    y = y.reshape(z.shape)
    return (
      gated_rms_norm(y, z, self.norm_scale[...], self.norm_groups, self.norm_eps) @ self.out[...]
    )

  def scan_inputs(self, u: jax.Array):
    """Steps 1-3 up to the scan: ``u (B, L, d_model) -> (z, x, dt, A, B, C)``.

    ``z (B, L, d_inner)``, ``x (B, L, nh, P)``, ``dt (B, L, nh)``, ``A (nh,)``,
    ``B, C (B, L, G, N)`` (masked), all float32.
    """
    with jax.named_scope("mamba2_in_proj_conv"):
      z, xbc, dt_raw = self._project(u)
      xbc = jax.nn.silu(causal_conv(xbc, *self.fused_conv()))
      x, b, c = self._split_conv(xbc)
      dt, a = self._decay(dt_raw)
    return z, x, dt, a, b, c

  # ---- the layer ----------------------------------------------------------------------

  def __call__(self, u: jax.Array) -> jax.Array:
    """``u (B, L, d_model)`` float32 -> ``(B, L, d_model)`` float32."""
    self.record_input(u)
    with jax.named_scope("mamba2"):
      z, x, dt, a, b, c = self.scan_inputs(u)
      y, _ = ssd.ssd_chunked(x, dt, a, b, c, self.chunk_size)
      with jax.named_scope("mamba2_norm_out"):
        return self._output(y, x, z)

  def state_modes(self):
    """A selective layer has no fixed modes: its ``B_t, C_t, dt_t`` depend on the input."""
    raise TypeError(
      "Mamba2 is a selective SSM (input-dependent B, C, dt): it has no fixed "
      "state_modes(); use data-driven criteria (state_statistics)"
    )

  def state_statistics(self, u: jax.Array, lengths: jax.Array | None = None) -> dict:
    """Per-state statistics of the layer driven by ``u (B, L, d_model)``.

    With ``H_t,h (N, P)`` the state of head ``h`` (group ``g``) after step t:

      output_energy[g, n]   = mean_{b,t} sum_{h in g} ||C_t,g[n] H_t,h[n, :]||^2
      controllability[g, n] = mean_{b,t} sum_{h in g} ||H_t,h[n, :]||^2
      observability[g, n]   = mean_{b,t} C_t,g[n]^2

    the means over the ``sum(lengths)`` valid steps ``t < lengths[b]`` (all
    steps when ``lengths`` is None). Masked slots are 0. Pure jax (jittable);
    one chunk of head states at a time (`ssd.state_energy_sums`).

    Returns:
      dict of the three ``(G, N)`` float32 arrays.
    """
    _, x, dt, a, b, c = self.scan_inputs(u)
    batch, length = u.shape[:2]
    if lengths is None:
      valid = jnp.ones((batch, length), bool)
    else:
      valid = jnp.arange(length)[None, :] < jnp.asarray(lengths).reshape(-1)[:, None]
    sums, count = ssd.state_energy_sums(x, dt, a, b, c, valid, self.chunk_size)
    mask = self.state_mask[...]
    return {k: v / jnp.maximum(count, 1.0) * mask for k, v in sums.items()}

  # ---- streaming ----------------------------------------------------------------------

  def init_state(self, batch_size: int) -> dict:
    """Zero streaming state: a dict of float32 arrays, batch first.

    ``'conv'``: ``(B, W - 1, conv_dim)``, the last W - 1 raw conv inputs
    (channels [x, B, C] as in `fused_conv`); ``'ssm'``: ``(B, n_heads, N, head_dim)``,
    every head's state ``H`` (N the compacted width after pruning).
    """
    g, n = self.state_shape
    w = self.conv_x.shape[0]
    return {
      "conv": jnp.zeros((batch_size, w - 1, self.conv_dim), jnp.float32),
      "ssm": jnp.zeros((batch_size, self.n_heads, n, self.head_dim), jnp.float32),
    }

  def prefill(self, u: jax.Array, state: dict | None = None) -> tuple[dict, jax.Array]:
    """The chunked forward that also returns the streaming state after ``u``.

    ``(u (B, L, d_model), state from init_state/step or None) -> (state, y (B, L, d_model))``:
    ``y`` equals stepping ``state`` through ``u`` one token at a time, and the returned
    state is where that stepping ends (``'conv'``: the last W - 1 raw conv inputs,
    ``'ssm'``: the scan's final head states), so decoding continues with `step`.
    """
    with jax.named_scope("mamba2_prefill"):
      batch, length = u.shape[:2]
      state = self.init_state(batch) if state is None else state
      z, xbc_raw, dt_raw = self._project(u)
      kernel, bias = self.fused_conv()
      w = kernel.shape[0]
      full = jnp.concatenate([state["conv"], xbc_raw], axis=1)  # (B, W - 1 + L, conv_dim)
      xbc = jax.nn.silu(bias + sum(kernel[k] * full[:, k : k + length] for k in range(w)))
      x, b, c = self._split_conv(xbc)
      dt, a = self._decay(dt_raw)
      y, final = ssd.ssd_chunked(x, dt, a, b, c, self.chunk_size, state["ssm"])
      conv = full[:, full.shape[1] - (w - 1) :]
      return {"conv": conv, "ssm": final}, self._output(y, x, z)

  def step(self, state: dict, u_t: jax.Array) -> tuple[dict, jax.Array]:
    """One causal step: ``(state, u_t (B, d_model)) -> (new_state, y_t (B, d_model))``.

    Stepping `init_state` through ``u[:, 0], u[:, 1], ...`` gives ``self(u)[:, t]``.
    """
    z, xbc_raw, dt_raw = self._project(u_t)
    kernel, bias = self.fused_conv()
    window = jnp.concatenate([state["conv"], xbc_raw[:, None]], axis=1)  # (B, W, conv_dim)
    xbc = jax.nn.silu(jnp.einsum("bwc,wc->bc", window, kernel) + bias)
    x, b, c = self._split_conv(xbc)  # (B, nh, P), (B, G, N), (B, G, N)
    dt, a = self._decay(dt_raw)  # (B, nh), (nh,)
    head_group = np.arange(self.n_heads) // (self.n_heads // self.n_groups)
    b_h, c_h = b[:, head_group], c[:, head_group]  # (B, nh, N)
    h = (
      jnp.exp(dt * a)[..., None, None] * state["ssm"]
      + b_h[..., :, None] * (dt[..., None] * x)[..., None, :]
    )
    y = jnp.einsum("bhn,bhnp->bhp", c_h, h)
    return {"conv": window[:, 1:], "ssm": h}, self._output(y, x, z)
