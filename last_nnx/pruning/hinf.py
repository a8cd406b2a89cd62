"""Per-state system norms of diagonal SSM layers (pure functions).

Every function takes a layer's `StateModes` (see `last_nnx.ssm.base`) and
returns one value per state slot, shape ``(S,)`` float32.

One-state subsystem ``i``: ``G_i(z) = C_i B_i^T / (z - lam_i)``, rank one, so
    ||G_i||_inf = ||C_i|| ||B_i|| / (1 - |lam_i|)          (peak at z = lam_i/|lam_i|)
    ||G_i||_2^2 = ||C_i||^2 ||B_i||^2 / (1 - |lam_i|^2)   (impulse-response energy)

Bidirectional layers have one output column per direction with the same pole
and input row. The default (``bidirectional='sum'``) scores the stacked output
system ``[C_fwd; C_bwd]``: it is still rank one, so its squared norm is
``(||C_fwd||^2 + ||C_bwd||^2) ||B||^2 / (1 - |lam|)^2``, i.e. the sum of the two
directional subsystems' squared norms. It is the norm of exactly what the state
contributes to the layer's (two-sided) output, and it reduces to the
unidirectional score when one direction is zero. ``bidirectional='reference'``
reproduces the LAST/AIRE reference code, whose ``(||C_f|| + ||C_b||)/2 **2``
evaluates by operator precedence to ``(||C_f|| + ||C_b||) / 4`` (not squared).
"""

import jax.numpy as jnp
import numpy as np

from last_nnx.ssm.base import StateModes

EPS = 1e-8  # as in the reference code: added to the squared denominators
BIDIRECTIONAL = ("sum", "reference")


def _output_term(modes: StateModes, bidirectional: str) -> jnp.ndarray:
  """``(S,)``: the squared output norm per state (or the reference's quirk)."""
  if bidirectional not in BIDIRECTIONAL:
    raise ValueError(f"bidirectional={bidirectional!r}; expected one of {BIDIRECTIONAL}")
  c2 = jnp.sum(jnp.abs(modes.C) ** 2, axis=1)  # (D, S)
  if modes.C.shape[0] == 2 and bidirectional == "reference":
    return (jnp.sqrt(c2[0]) + jnp.sqrt(c2[1])) / 4.0
  return jnp.sum(c2, axis=0)


def hinf_squared(modes: StateModes, *, bidirectional: str = "sum", eps: float = EPS):
  """``||G_i||_inf^2 = ||C_i||^2 ||B_i||^2 / ((1 - |lam_i|)^2 + eps)``, ``(S,)`` float32."""
  b2 = jnp.sum(jnp.abs(modes.B) ** 2, axis=1)
  return _output_term(modes, bidirectional) * b2 / ((1.0 - jnp.abs(modes.poles)) ** 2 + eps)


def h2_energy(modes: StateModes, *, bidirectional: str = "sum", eps: float = EPS):
  """``||G_i||_2^2 = ||C_i||^2 ||B_i||^2 / (1 - |lam_i|^2 + eps)``, ``(S,)`` float32."""
  b2 = jnp.sum(jnp.abs(modes.B) ** 2, axis=1)
  return _output_term(modes, bidirectional) * b2 / (1.0 - jnp.abs(modes.poles) ** 2 + eps)


def hinf_numeric(pole: complex, b: np.ndarray, c: np.ndarray, *, grid: int = 8192) -> float:
  """H-inf norm of one subsystem by a frequency sweep (slow; for cross-checks).

  Evaluates the largest singular value of ``G(e^{jw}) = c b^T / (e^{jw} - pole)``
  on a uniform grid of ``grid`` frequencies plus a fine grid around the pole's
  angle, where a lightly damped mode peaks.

  Args:
    pole: complex pole.
    b: ``(H_in,)`` complex input row.
    c: ``(H_out,)`` complex output column (stack directions for bidirectional).
  """
  angle = np.angle(pole)
  w = np.concatenate([np.linspace(-np.pi, np.pi, grid),
                      angle + np.linspace(-1e-2, 1e-2, 2001)])
  outer = np.outer(np.asarray(c, np.complex128), np.asarray(b, np.complex128))
  responses = outer[None] / (np.exp(1j * w) - pole)[:, None, None]  # (W, H_out, H_in)
  return float(np.linalg.svd(responses, compute_uv=False)[:, 0].max())
