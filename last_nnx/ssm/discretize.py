"""Discretization of diagonal continuous-time systems (pure functions)."""

import jax
import jax.numpy as jnp
import numpy as np


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


def undiscretize(lam_bar: np.ndarray, b_bar: np.ndarray, step: np.ndarray, method: str):
  """Inverse of `discretize`: ``(lam_bar, b_bar)`` at ``step`` -> ``(lam, b)`` (numpy).

  ZOH: ``lam = log(lam_bar) / step`` (principal log), ``b = lam / (lam_bar - 1) b_bar``.
  Bilinear: ``lam = (2 / step) (lam_bar - 1) / (lam_bar + 1)``,
  ``b = (1 - step lam / 2) / step * b_bar``. Needs ``lam_bar != 1`` (ZOH) and
  ``lam_bar != -1`` (bilinear); callers keep ``|lam_bar| < 1``.

  Args:
    lam_bar: ``(...,)`` complex discrete poles.
    b_bar: ``(..., H)`` complex discrete input rows.
    step: ``(...,)`` positive steps (broadcastable to ``lam_bar``).
    method: ``'zoh'`` or ``'bilinear'``.

  Returns:
    ``(lam, b)`` complex128 shaped like ``(lam_bar, b_bar)``.
  """
  lam_bar = np.asarray(lam_bar, np.complex128)
  b_bar = np.asarray(b_bar, np.complex128)
  step = np.broadcast_to(np.asarray(step, np.float64), lam_bar.shape)
  if method == "zoh":
    lam = np.log(lam_bar) / step
    return lam, (lam / (lam_bar - 1.0))[..., None] * b_bar
  if method == "bilinear":
    lam = (2.0 / step) * (lam_bar - 1.0) / (lam_bar + 1.0)
    return lam, ((1.0 - 0.5 * step * lam) / step)[..., None] * b_bar
  raise ValueError(f"unknown discretization {method!r}; expected 'zoh' or 'bilinear'")
