"""Training for prunability: penalties that concentrate a layer's energy in few states.

Both families are computed from `state_modes()`, so they work for every
`PrunableSSM` layer type, inside ``jit`` and differentiably.

* ``modal_l1``: the l1 norm of the per-state system norms (H-inf or H2) of a
  layer: ``sum_i ||G_i||``. Plain (``normalize='none'``) it also shrinks the
  layer as a whole; ``normalize='layer'`` divides by the layer's l2 norm
  ``sqrt(sum_i ||G_i||^2)``, an l1/l2 ratio that is scale-free and only rewards
  concentration, like LAST's per-layer energy normalization. ``horizon=T`` takes
  the norms over ``T`` steps (`last_nnx.pruning.hinf`). Over infinite time the
  ratio is gamed: pushing one pole to ``|lam| = 1`` sends that state's H-inf
  norm to infinity and the ratio to 1 without concentrating anything the model
  computes on finite sequences (we saw exactly that: every layer's top pole at
  ``|lam| >= 1``, and no gain in prunability). Over the sequence length a
  state's norm is at most ``T ||C_i|| ||B_i||``, so concentration has to come
  from the states' input and output weights.
* ``hankel``: the Hankel nuclear norm, the sum of the Hankel singular values of
  the layer's real (conjugate-completed) system. For a diagonal discrete system
  the Gramians are closed form,
  ``P_ij = <B_i, B_j> / (1 - lam_i conj(lam_j))``,
  ``Q_ij = <C_i, C_j> / (1 - conj(lam_i) lam_j)``, and
  ``sum sigma = trace sqrt(L^H Q L)`` with ``P = L L^H``. Multi-SISO layers are
  block diagonal by channel, so their Gramians are computed per channel.
"""

import dataclasses

import jax
import jax.numpy as jnp

from last_nnx.pruning import hinf
from last_nnx.ssm.base import StateModes, find_prunable_layers, is_selective

KINDS = ("none", "modal_l1", "hankel")


@dataclasses.dataclass(frozen=True)
class RegularizerSpec:
  """What to penalize (hashable: a static argument of the jitted step)."""

  kind: str = "none"
  norm: str = "hinf"  # modal_l1: 'hinf' or 'h2'
  normalize: str = "layer"  # modal_l1: 'none' or 'layer'
  horizon: int | None = None  # modal_l1: norms over this many steps (None: infinite)

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"regularizer.kind={self.kind!r}; expected one of {KINDS}")
    if self.norm not in ("hinf", "h2"):
      raise ValueError(f"regularizer.norm={self.norm!r}; expected 'hinf' or 'h2'")
    if self.normalize not in ("none", "layer"):
      raise ValueError(f"regularizer.normalize={self.normalize!r}; expected 'none' or 'layer'")
    hinf.check_horizon(self.horizon)


def modal_l1(
  modes: StateModes, *, norm: str = "hinf", normalize: str = "layer", horizon: int | None = None
) -> jax.Array:
  """``sum_i ||G_i||`` over live states (divided by ``sqrt(sum_i ||G_i||^2)`` if
  normalized), the norms taken over ``horizon`` steps (None: infinite time)."""
  squared = (hinf.hinf_squared if norm == "hinf" else hinf.h2_energy)(modes, horizon=horizon)
  squared = jnp.where(modes.valid, squared, 0.0)
  l1 = jnp.sum(jnp.sqrt(squared + 1e-12))
  if normalize == "layer":
    return l1 / jnp.sqrt(jnp.sum(squared) + 1e-12)
  return l1


def _hankel_sum(lam, b, c, jitter: float = 1e-6) -> jax.Array:
  """Sum of Hankel singular values of ``x' = diag(lam) x + b u, y = c x`` (complex).

  lam ``(n,)``, b ``(n, m)``, c ``(p, n)``.
  """
  denom_p = 1.0 - lam[:, None] * jnp.conj(lam)[None, :]
  gram_p = (b @ jnp.conj(b).T) / denom_p
  denom_q = 1.0 - jnp.conj(lam)[:, None] * lam[None, :]
  gram_q = (jnp.conj(c).T @ c) / denom_q
  n = lam.shape[0]
  chol = jnp.linalg.cholesky(gram_p + jitter * jnp.eye(n, dtype=gram_p.dtype))
  m = jnp.conj(chol).T @ gram_q @ chol
  m = 0.5 * (m + jnp.conj(m).T)
  eig = jnp.linalg.eigvalsh(m)
  return jnp.sum(jnp.sqrt(jnp.maximum(eig, 0.0) + 1e-12))


def hankel_nuclear(modes: StateModes) -> jax.Array:
  """Hankel nuclear norm of a layer (real system: conjugate pairs completed)."""
  lam = modes.poles
  b = modes.B * modes.valid[:, None]
  c = jnp.concatenate(list(modes.C), axis=0)  # stack directions: (D * H_out, S)
  if modes.output_scale == 2.0:  # one stored state = a pair: add the conjugates
    lam = jnp.concatenate([lam, jnp.conj(lam)])
    b = jnp.concatenate([b, jnp.conj(b)])
    c = jnp.concatenate([c, jnp.conj(c)], axis=1)
  if modes.channel is None:
    return _hankel_sum(lam, b, c)
  # Multi-SISO: channel-major slots, equal count per channel (padding is masked).
  n_channels = int(modes.channel.shape[0]) // int(jnp.sum(modes.channel == modes.channel[0]))
  per = lam.shape[0] // n_channels // (2 if modes.output_scale == 2.0 else 1)
  halves = 2 if modes.output_scale == 2.0 else 1

  def by_channel(x, axis):
    # (halves * H * per) along axis -> (H, halves * per)
    x = jnp.moveaxis(x, axis, 0).reshape(
      (halves, n_channels, per) + x.shape[:axis] + x.shape[axis + 1 :]
    )
    x = jnp.swapaxes(x, 0, 1).reshape((n_channels, halves * per) + x.shape[3:])
    return x

  lam_g = by_channel(lam, 0)
  b_g = by_channel(b, 0)
  c_g = jnp.moveaxis(by_channel(c, 1), 1, 2)  # (H, D, halves*per)
  return jnp.sum(jax.vmap(_hankel_sum)(lam_g, b_g, c_g))


def penalty(model, spec: RegularizerSpec) -> jax.Array:
  """Sum of the per-layer penalties of every LTI prunable layer of ``model``.

  Selective layers (no fixed modes) carry no penalty; a model with none but
  selective layers is refused (the penalty would silently be zero).
  """
  if spec.kind == "none":
    return jnp.zeros(())
  layers = [l for l in find_prunable_layers(model).values() if not is_selective(l)]
  if not layers:
    raise ValueError(
      f"regularizer.kind={spec.kind!r} penalizes fixed modes (state_modes), "
      "and every SSM layer of this model is selective: set regularizer.kind=none"
    )
  total = jnp.zeros(())
  for layer in layers:
    modes = layer.state_modes()
    if spec.kind == "modal_l1":
      total = total + modal_l1(
        modes, norm=spec.norm, normalize=spec.normalize, horizon=spec.horizon
      )
    else:
      total = total + hankel_nuclear(modes)
  return total


def weight_at(epoch: float, weight: float, schedule: str, ramp_epochs: float) -> float:
  """Penalty weight at a (fractional) epoch: ``off``, ``constant`` or linear ``ramp``."""
  if schedule == "off" or weight == 0:
    return 0.0
  if schedule == "constant":
    return weight
  if schedule == "ramp":
    return weight * min(1.0, epoch / max(ramp_epochs, 1e-9))
  raise ValueError(f"regularizer.schedule={schedule!r}; expected off, constant or ramp")
