"""Discretization of diagonal continuous-time systems (pure functions)."""

import jax
import jax.numpy as jnp


def discretize(lam: jax.Array, b: jax.Array, step: jax.Array, method: str):
  """Discretizes ``x' = diag(lam) x + b u`` with per-state step sizes.

  Args:
    lam: ``(...,)`` complex continuous-time poles.
    b: ``(..., H)`` complex input rows (one per pole).
    step: ``(...,)`` float step sizes (broadcastable to ``lam``).
    method: ``'zoh'`` (zero-order hold) or ``'bilinear'``.

  Returns:
    ``(lam_bar, b_bar)`` shaped like ``(lam, b)``.
  """
  if method == "zoh":
    lam_bar = jnp.exp(lam * step)
    return lam_bar, ((lam_bar - 1.0) / lam)[..., None] * b
  if method == "bilinear":
    inv = 1.0 / (1.0 - 0.5 * step * lam)
    return inv * (1.0 + 0.5 * step * lam), (inv * step)[..., None] * b
  raise ValueError(f"unknown discretization {method!r}; expected 'zoh' or 'bilinear'")
