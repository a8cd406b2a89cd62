"""Per-state system norms of diagonal SSM layers (pure functions).

The closed-form functions take a layer's `StateModes` (see `last_nnx.ssm.base`)
and return one value per state slot, shape ``(S,)`` float32. They are pure jax
and can be jitted; invalid slots are not special-cased here (the criteria mask
them).

One-state subsystem ``i``: ``G_i(z) = C_i B_i / (z - lam_i)`` with ``C_i`` the
``(H_out,)`` output column and ``B_i`` the ``(H_in,)`` input row. It is rank one,
so its largest singular value at ``z = e^{jw}`` is ``||C_i|| ||B_i|| / |e^{jw} - lam_i|``
and

    ||G_i||_inf   = ||C_i|| ||B_i|| / (1 - |lam_i|)          (peak at w = angle(lam_i))
    ||G_i||_2^2   = ||C_i||^2 ||B_i||^2 / (1 - |lam_i|^2)    (impulse-response energy,
                    sum_t ||C_i lam_i^t B_i||_F^2)

LAST ranks states by ``h_i = ||G_i||_inf^2``; the reference code adds ``1e-8``
to ``(1 - |lam_i|)^2`` (and AIRE-Prune to ``1 - |lam_i|^2``), which we do by
default (``eps``) so that scores match its numbers; ``eps=0`` gives the exact
norms.

Multi-SISO layers (S4D) need nothing special: each slot has ``B_i`` of length 1
and ``C_i`` of length 1 (its own channel), so the same formulas give
``|C_hn|^2 |B_hn|^2 / (1 - |lam_hn|)^2``.

Conjugate symmetry: with ``conj_sym`` a stored state stands for the pair
``(lam, conj(lam))`` and the layer outputs ``2 Re(C x)``; that real output is
exactly the pair system ``G(z) + conj-pole term``, whose H-inf norm for a pole
away from the real axis is about that of the complex one-state subsystem (the
peak comes from one mode), so we score the complex subsystem and apply no
factor 2 (`hinf_numeric` with ``conj_pair=True`` measures the pair).

Bidirectional layers have one output column per direction (``C`` is
``(2, H, S)``), sharing the pole and input row. The default
``bidirectional='sum'`` scores the stacked output system
``[C_fwd; C_bwd] B_i / (z - lam_i)``: the state's whole contribution to the
layer's two outputs. Stacked, it is still rank one with the same pole, so

    ||G_i||_inf^2 = (||C_fwd||^2 + ||C_bwd||^2) ||B_i||^2 / (1 - |lam_i|)^2

which is also the *sum of the two directional subsystems' squared norms*: the
two readings coincide exactly (and likewise for H2). It reduces to the
unidirectional score when one direction is zero, and is invariant to swapping
directions. ``bidirectional='reference'`` reproduces the LAST/AIRE reference
code, whose ``(||C_f|| + ||C_b||)/2 **2`` evaluates, by Python operator
precedence, to ``(||C_f|| + ||C_b||) / 4`` (a norm, not a squared norm): use it
only to reproduce the reference's numbers.

Finite horizon. Both norms assume sequences long enough for every state to
develop its full response. A state whose time constant ``-1 / log|lam_i|`` far
exceeds the sequence length ``T`` never does: over ``T`` steps its impulse
response is ``C_i lam_i^t B_i, t < T``, whose peak gain and energy are

    ||G_i^T||_inf = ||C_i|| ||B_i|| sum_{t<T} |lam_i|^t      (at w = angle(lam_i))
    ||G_i^T||_2^2 = ||C_i||^2 ||B_i||^2 sum_{t<T} |lam_i|^{2t}

(``horizon=T``; both tend to the infinite-horizon norms as ``T`` grows). Slow
states' H-inf scores shrink the most: with ``|lam| = 0.9995`` and ``T = 256`` by
a factor ``(1 - 0.9995^256)^2 ~ 0.014``.
"""

import jax.numpy as jnp
import numpy as np

from last_nnx.ssm.base import StateModes

EPS = 1e-8  # As in the reference code: added to the squared denominators.
BIDIRECTIONAL = ("sum", "reference")


def output_norm_sq(modes: StateModes, bidirectional: str = "sum") -> jnp.ndarray:
  """``(S,)`` float32 squared output norm ``||C_i||^2`` (see the module docstring).

  For a bidirectional layer: ``||C_fwd,i||^2 + ||C_bwd,i||^2`` (``'sum'``) or the
  reference's ``(||C_fwd,i|| + ||C_bwd,i||) / 4`` (``'reference'``).
  """
  check_bidirectional(bidirectional)
  c2 = jnp.sum(jnp.abs(modes.C) ** 2, axis=1)  # (D, S)
  if modes.C.shape[0] == 2 and bidirectional == "reference":
    return (jnp.sqrt(c2[0]) + jnp.sqrt(c2[1])) / 4.0
  return jnp.sum(c2, axis=0)


def input_norm_sq(modes: StateModes) -> jnp.ndarray:
  """``(S,)`` float32 ``||B_i||^2``."""
  return jnp.sum(jnp.abs(modes.B) ** 2, axis=1)


def geometric_sum(radius: jnp.ndarray, horizon: int) -> jnp.ndarray:
  """``sum_{t<horizon} radius^t`` for ``radius >= 0``, elementwise, stable near 1."""
  log_r = jnp.log(radius)
  at_one = log_r == 0
  safe = jnp.where(at_one, 1.0, log_r)
  return jnp.where(at_one, float(horizon), jnp.expm1(horizon * safe) / jnp.expm1(safe))


def check_bidirectional(bidirectional: str) -> None:
  if bidirectional not in BIDIRECTIONAL:
    raise ValueError(f"bidirectional={bidirectional!r}; expected one of {BIDIRECTIONAL}")


def check_horizon(horizon: int | None) -> None:
  if horizon is not None and (
    isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1
  ):
    raise ValueError(
      f"horizon={horizon!r} must be a positive number of steps (the sequence "
      "length the model sees) or None for the infinite-horizon norms"
    )


def resolve_horizon(setting: int, seq_len: int) -> int | None:
  """A config's ``horizon`` setting -> the ``horizon`` argument of the norms.

  ``0``: None (infinite horizon, the paper's norms); ``-1``: ``seq_len``, the
  length of the task's sequences; ``T > 0``: ``T``.
  """
  if setting == 0:
    return None
  if setting == -1:
    return int(seq_len)
  if isinstance(setting, int) and not isinstance(setting, bool) and setting > 0:
    return setting
  raise ValueError(
    f"pruning horizon {setting!r}: use 0 (infinite, as the paper), -1 (the "
    "task's sequence length) or a positive number of steps"
  )


def hinf_squared(
  modes: StateModes, *, bidirectional: str = "sum", eps: float = EPS, horizon: int | None = None
):
  """``h_i = ||C_i||^2 ||B_i||^2 / ((1 - |lam_i|)^2 + eps)``, ``(S,)`` float32.

  The LAST score before normalization. ``eps=0`` gives exactly
  ``||G_i||_inf^2``; the default ``1e-8`` is the reference code's. With
  ``horizon=T``: ``||C_i||^2 ||B_i||^2 (sum_{t<T} |lam_i|^t)^2``, the squared peak
  gain of the response truncated to ``T`` steps (``eps`` unused: it is finite).
  """
  check_horizon(horizon)
  radius = jnp.abs(modes.poles)
  gains = output_norm_sq(modes, bidirectional) * input_norm_sq(modes)
  if horizon is not None:
    return gains * geometric_sum(radius, horizon) ** 2
  return gains / ((1.0 - radius) ** 2 + eps)


def hinf_norm(modes: StateModes, *, bidirectional: str = "sum", eps: float = 0.0):
  """``||G_i||_inf = ||C_i|| ||B_i|| / (1 - |lam_i|)``, ``(S,)`` float32.

  With ``eps > 0`` it is ``sqrt(hinf_squared(modes, eps=eps))``. Only
  meaningful with ``bidirectional='sum'`` (the reference's quirk is not a
  squared norm).
  """
  return jnp.sqrt(hinf_squared(modes, bidirectional=bidirectional, eps=eps))


def h2_energy(
  modes: StateModes, *, bidirectional: str = "sum", eps: float = EPS, horizon: int | None = None
):
  """``e_i = ||C_i||^2 ||B_i||^2 / (1 - |lam_i|^2 + eps)``, ``(S,)`` float32.

  The squared H2 norm (impulse-response energy) of the one-state subsystem:
  the AIRE-Prune score before normalization (``eps`` as in its code). With
  ``horizon=T``: the energy of the first ``T`` steps, ``sum_{t<T} |lam_i|^{2t}``
  in place of ``1 / (1 - |lam_i|^2)``.
  """
  check_horizon(horizon)
  radius = jnp.abs(modes.poles)
  gains = output_norm_sq(modes, bidirectional) * input_norm_sq(modes)
  if horizon is not None:
    return gains * geometric_sum(radius**2, horizon)
  return gains / (1.0 - radius**2 + eps)


# ----------------------------------------------------------------------------
# Numeric fallback (numpy, float64): for cross-checks and non-diagonal layers.


def frequency_grid(
  poles, *, grid: int = 8192, local: int = 2001, local_width: float = 1e-2
) -> np.ndarray:
  """Sweep frequencies: a uniform grid of ``[-pi, pi)`` plus fine grids at the poles' angles.

  A lightly damped mode peaks in a window of width about ``1 - |lam|`` around
  ``angle(lam)``; the fine grids (``local`` points over ``+-local_width``)
  resolve that peak, so the sweep is accurate for ``1 - |lam| >~ 1e-4``.
  """
  angles = np.angle(np.atleast_1d(np.asarray(poles, np.complex128)))
  parts = [np.linspace(-np.pi, np.pi, grid, endpoint=False)]
  parts += [a + np.linspace(-local_width, local_width, local) for a in angles]
  return np.concatenate(parts)


def hinf_numeric(
  pole: complex, b: np.ndarray, c: np.ndarray, *, conj_pair: bool = False, grid: int = 8192
) -> float:
  """H-inf norm of one subsystem by a dense frequency sweep (slow; for cross-checks).

  Evaluates the largest singular value of ``G(e^{jw}) = c b^T / (e^{jw} - pole)``
  on `frequency_grid` and returns the maximum. Does not use the rank-one
  structure (it runs an SVD per frequency), so it checks the closed form.

  Args:
    pole: complex pole, ``|pole| < 1``.
    b: ``(H_in,)`` complex input row.
    c: ``(H_out,)`` complex output column (for a bidirectional layer, the
      stacked ``[C_fwd; C_bwd]``, length ``2 H``).
    conj_pair: measure the real pair system
      ``c b^T / (z - pole) + conj(c) conj(b)^T / (z - conj(pole))`` (what a
      ``conj_sym`` state outputs through ``2 Re``) instead of the complex one.
    grid: points of the uniform part of the grid.

  Returns:
    The swept norm, a Python float.
  """
  pole = complex(pole)
  outer = np.outer(np.asarray(c, np.complex128), np.asarray(b, np.complex128))
  poles = [pole, pole.conjugate()] if conj_pair else [pole]
  z = np.exp(1j * frequency_grid(poles, grid=grid))
  responses = outer[None] / (z - pole)[:, None, None]  # (W, H_out, H_in)
  if conj_pair:
    responses = responses + outer.conj()[None] / (z - pole.conjugate())[:, None, None]
  return float(np.linalg.svd(responses, compute_uv=False)[:, 0].max())


def hinf_numeric_modes(modes: StateModes, *, slots=None, grid: int = 8192) -> np.ndarray:
  """Numeric ``||G_i||_inf`` of the slots ``slots`` (default: all), ``(len,)`` float64.

  The bidirectional convention is ``'sum'`` (stacked output directions), so
  the result matches ``hinf_norm(modes, eps=0)``.
  """
  poles = np.asarray(modes.poles, np.complex128)
  b = np.asarray(modes.B, np.complex128)
  c = np.asarray(modes.C, np.complex128)  # (D, H_out, S)
  slots = range(len(poles)) if slots is None else slots
  return np.array([hinf_numeric(poles[i], b[i], c[:, :, i].reshape(-1), grid=grid) for i in slots])
