"""Naive numpy references the tests compare the layers against."""

import numpy as np

from last_nnx.ssm.base import StateModes


def np_discretize(lam, b, step, method):
  """Numpy transcription of ZOH / bilinear discretization (complex128)."""
  lam = np.asarray(lam, np.complex128)
  step = np.asarray(step, np.float64)
  if method == "zoh":
    lam_bar = np.exp(lam * step)
    return lam_bar, ((lam_bar - 1) / lam)[..., None] * b
  inv = 1 / (1 - step / 2 * lam)
  return inv * (1 + step / 2 * lam), (inv * step)[..., None] * b


def run_recurrence(lam_bar, b_bar, u, reverse=False):
  """Step-by-step ``x_t = lam x_{t-1} + B u_t``; lam (S,), b (S, H), u (L, H) -> (L, S)."""
  length = u.shape[0]
  x = np.zeros(lam_bar.shape, np.complex128)
  xs = np.zeros((length, lam_bar.shape[0]), np.complex128)
  order = range(length - 1, -1, -1) if reverse else range(length)
  for t in order:
    x = lam_bar * x + b_bar @ u[t]
    xs[t] = x
  return xs


def modes_output(modes: StateModes, u: np.ndarray, keep=None) -> np.ndarray:
  """Layer output rebuilt as a sum of one-state subsystems (plus D u).

  u: (L, H) float64. keep: optional (S,) bool restricting the sum.
  """
  lam = np.asarray(modes.poles, np.complex128)
  b = np.asarray(modes.B, np.complex128)
  c = np.asarray(modes.C, np.complex128)
  valid = np.asarray(modes.valid, bool) if keep is None else np.asarray(keep, bool)
  length, h = u.shape
  y = np.zeros((length, h))
  for s in np.flatnonzero(valid):
    if modes.channel is None:
      u_s, out = u, slice(None)
    else:
      ch = int(modes.channel[s])
      u_s, out = u[:, ch : ch + 1], slice(ch, ch + 1)
    for d in range(c.shape[0]):
      x = run_recurrence(lam[s : s + 1], b[s : s + 1], u_s, reverse=(d == 1))
      y[:, out] += modes.output_scale * (x @ c[d][:, s : s + 1].T).real
  return y + np.asarray(modes.feedthrough, np.float64) * u
