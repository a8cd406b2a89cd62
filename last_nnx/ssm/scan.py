"""Diagonal linear recurrences ``x_t = lam * x_{t-1} + bu_t`` (pure functions)."""

import jax
import jax.numpy as jnp


def _combine(left, right):
  a_l, b_l = left
  a_r, b_r = right
  return a_r * a_l, a_r * b_l + b_r


def diagonal_recurrence(lam: jax.Array, bu: jax.Array, *, axis: int = 1,
                        reverse: bool = False) -> jax.Array:
  """All states of a diagonal recurrence by a parallel (associative) scan.

  Args:
    lam: ``(S,)`` complex poles, broadcast along the batch and time axes.
    bu: ``(B, L, S)`` complex driven inputs ``B_bar u_t``.
    axis: the time axis of ``bu``.
    reverse: run backward in time (``x_t = lam x_{t+1} + bu_t``).

  Returns:
    ``(B, L, S)`` complex states, ``x_0 = bu_0`` (zero initial state).
  """
  a = jnp.broadcast_to(lam, bu.shape)
  _, xs = jax.lax.associative_scan(_combine, (a, bu), axis=axis, reverse=reverse)
  return xs
