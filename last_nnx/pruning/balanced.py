"""Balanced reduction: project each layer onto its reachable-and-observable directions.

Every other criterion keeps a subset of a layer's modes. Balanced truncation
instead finds the ``k``-dimensional subspace of the state space that is both
easy to reach from the input and visible at the output, with a guaranteed
error bound, and the kept poles move. For a diagonal layer (poles ``lam (S,)``,
input rows ``B (S, H_in)``, output columns ``C_d (H_out, S)``, output scale
``s``) the Gramians are closed form (``x_t = diag(lam) x_{t-1} + B u_t``):

    P_ij = (B B^H)_ij g(lam_i conj(lam_j))            (controllability)
    Q_ij = sum_d s^2 (C_d^H C_d)_ij conj(g(lam_i conj(lam_j)))   (observability)

with ``g(z) = 1 / (1 - z)`` (infinite horizon) or ``(1 - z^T) / (1 - z)`` (the
first ``T`` steps, ``horizon=T``: slow states get no credit for gain they never
build up within a sequence, as in `hinf`). The bidirectional layer's backward
scan shares ``lam`` and ``B``, so the sum over directions reduces both at once.

Square-root method: ``P = Lc Lc^H``, ``Q = Lo Lo^H`` (symmetric square roots by
eigh: robust when a Gramian is singular), ``Lo^H Lc = U diag(sigma) V^H``
(``sigma``: the Hankel singular values, descending); keeping ``k``:
``T = Lc V_k sigma_k^-1/2``, ``Ti = sigma_k^-1/2 U_k^H Lo^H`` (``Ti T = I``),
``A_r = Ti diag(lam) T``, ``B_r = Ti B``, ``C_r = C T``. Then re-diagonalize
``A_r = W diag(lam') W^-1``: ``B' = W^-1 B_r``, ``C' = C_r W`` is again a diagonal
layer of the same type with ``k`` states (each state rescaled so that its input
and output norms are equal). For the LTI layer (infinite horizon)
``||G - G_k||_inf <= 2 sum_{j>k} sigma_j`` (tests/test_balanced.py checks it on
the layer's output and that it beats modal truncation on a system whose modes
cancel). With ``conj_sym`` the complex half-system is reduced and the layer
keeps its ``2 Re`` output: the bound holds for the real output as well.

Multi-SISO layers (S4D) are reduced channel by channel. The allocation is
LAST's with Hankel singular values in place of H-inf norms: every live slot of
a group (a channel, or the whole MIMO layer) is given one of the group's
``sigma^2`` (strongest first), these are layer-normalized as in LAST and one
global threshold decides how many directions each group keeps.

``calibrated_balanced`` replaces the closed-form ``P`` by the states'
covariance on calibration batches, ``P = mean_{b,t} x(t) x(t)^H`` (the
data-driven controllability Gramian; both directions' states when
bidirectional): directions the real inputs never excite are dropped first.
``balanced_refit`` then refits each reduced layer's output columns by least
squares to the dense layer's output on the same batches (`refit`).

The reduced layer is mapped back to its trainable parameters by the layer's
``load_state_modes`` (see `last_nnx.ssm.base`), so fine-tuning goes on; the
optimizer moments of a reduced layer restart at zero (they have no meaning in
the new basis).
"""

import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from last_nnx.pruning.apply import _variable_shapes, compact_optimizer_state
from last_nnx.pruning.calibrated import layer_states
from last_nnx.pruning.calibration import DEFAULT_BATCHES, mean_over_steps
from last_nnx.pruning.criteria import layer_energy_normalize, register_criterion
from last_nnx.pruning.layers import prunable_layers
from last_nnx.ssm.base import StateModes

MAX_RADIUS = 1.0 - 1e-6  # reduced poles are pulled inside this radius (stability)


# ----------------------------------------------------------------------------
# Pure math on one group (numpy, complex128).


def gram_kernel(poles: np.ndarray, horizon: int | None = None) -> np.ndarray:
  """``g(lam_i conj(lam_j))``, ``(n, n)`` complex128: ``1/(1-z)`` or ``(1-z^T)/(1-z)``."""
  z = poles[:, None] * np.conj(poles)[None, :]
  if horizon is None:
    return 1.0 / (1.0 - z)
  near = np.abs(1.0 - z) < 1e-12
  safe = np.where(near, 0.5, z)
  return np.where(near, float(horizon), (1.0 - safe**horizon) / (1.0 - safe))


def gramians(poles, b, c, horizon: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Closed-form ``(P, Q)``, each ``(n, n)`` complex128 (module docstring).

  Args:
    poles: ``(n,)`` discrete poles, ``|lam| < 1`` (any with ``horizon``).
    b: ``(n, H_in)`` input rows.
    c: ``(D, H_out, n)`` output columns (output scale included).
    horizon: None (infinite) or the number of steps ``T``.
  """
  poles = np.asarray(poles, np.complex128)
  b = np.asarray(b, np.complex128)
  c = np.asarray(c, np.complex128)
  g = gram_kernel(poles, horizon)
  p = (b @ b.conj().T) * g
  q = np.einsum("dhi,dhj->ij", c.conj(), c) * np.conj(g)
  return p, q


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
  """``L`` with ``L L^H = m`` for Hermitian PSD ``m`` (eigh; negative rounding clipped)."""
  w, v = np.linalg.eigh(0.5 * (m + m.conj().T))
  return v * np.sqrt(np.clip(w, 0.0, None))[None, :]


def hankel_factors(p: np.ndarray, q: np.ndarray):
  """``(sigma (n,) descending, U, V, Lc, Lo)`` of the square-root method."""
  lc, lo = _psd_sqrt(p), _psd_sqrt(q)
  u, sigma, vh = np.linalg.svd(lo.conj().T @ lc)
  return sigma, u, vh.conj().T, lc, lo


def truncate(poles, b, c, k: int, p: np.ndarray, q: np.ndarray):
  """Balanced truncation to ``k`` states, re-diagonalized.

  Args:
    poles, b, c: the group's system (see `gramians`).
    k: states kept, ``1 <= k <= n``; lowered to the numerical rank of the
      Hankel operator (directions with ``sigma <= 1e-12 sigma_1`` carry nothing).
    p, q: its Gramians.

  Returns:
    ``(poles' (k,), b' (k, H_in), c' (D, H_out, k), sigma (n,))`` complex128.
  """
  poles = np.asarray(poles, np.complex128)
  b = np.asarray(b, np.complex128)
  c = np.asarray(c, np.complex128)
  sigma, u, v, lc, lo = hankel_factors(p, q)
  rank = max(1, int(np.sum(sigma > 1e-12 * max(sigma[0], 1e-300))))
  if k > rank:
    logging.warning(
      "balanced truncation: %d states asked, the Hankel operator has numerical rank %d: keeping %d",
      k,
      rank,
      rank,
    )
    k = rank
  scale = sigma[:k] ** -0.5
  t = (lc @ v[:, :k]) * scale[None, :]
  ti = scale[:, None] * (u[:, :k].conj().T @ lo.conj().T)
  a_r = ti @ (poles[:, None] * t)
  lam, w = np.linalg.eig(a_r)
  w_inv = np.linalg.inv(w)
  b_new = w_inv @ (ti @ b)
  c_new = np.einsum("dhn,nk->dhk", c, t @ w)
  # Equal input and output norm per state: the realization trains better balanced.
  nb = np.linalg.norm(b_new, axis=1)
  nc = np.sqrt(np.sum(np.abs(c_new) ** 2, axis=(0, 1)))
  f = np.sqrt(np.where((nb > 0) & (nc > 0), nc / np.where(nb > 0, nb, 1.0), 1.0))
  b_new, c_new = b_new * f[:, None], c_new / f[None, None, :]
  radius = np.abs(lam)
  if (radius > MAX_RADIUS).any():
    logging.warning(
      "balanced truncation: %d reduced poles on or outside the unit circle "
      "(|lam| up to %.6f) pulled to radius %.6f",
      int((radius > MAX_RADIUS).sum()),
      float(radius.max()),
      MAX_RADIUS,
    )
    lam = np.where(radius > MAX_RADIUS, lam / radius * MAX_RADIUS, lam)
  return lam, b_new, c_new, sigma


# ----------------------------------------------------------------------------
# One layer: groups, Gramians, Hankel singular values.


def groups(modes: StateModes) -> list[np.ndarray]:
  """Live slot indices of each independent system: the channels of a multi-SISO layer, or all."""
  valid = np.asarray(modes.valid, bool)
  if modes.channel is None:
    return [np.flatnonzero(valid)]
  channel = np.asarray(modes.channel)
  return [np.flatnonzero(valid & (channel == h)) for h in range(int(channel.max()) + 1)]


def state_covariances(model: nnx.Module, batches, max_batches: int = DEFAULT_BATCHES):
  """``{layer_path: [per group (n_g, n_g) complex128]}``: ``mean_{b, t < length} x x^H``.

  The states ``x`` of each layer's live slots on the calibration batches (see
  `calibration.mean_over_steps`); both directions' states when bidirectional.
  """
  layers = prunable_layers(model)
  modes = {path: layer.state_modes() for path, layer in layers.items()}
  parts = {path: groups(m) for path, m in modes.items()}

  def add(totals, recorded, lengths):
    weight = (
      jnp.arange(next(iter(recorded.values())).shape[1])[None, :] < lengths[:, None]
    ).astype(jnp.float32)
    for path, u in recorded.items():
      m = modes[path]
      for d in range(int(m.C.shape[0])):
        x = layer_states(m.poles, m.B, m.valid, m.channel, u, reverse=d == 1)
        x = np.asarray(x * weight[..., None], np.complex128).reshape(-1, x.shape[-1])
        for i, g in enumerate(parts[path]):
          totals[path][i] += x[:, g].T @ x[:, g].conj()

  return mean_over_steps(
    model,
    batches,
    max_batches,
    {path: [np.zeros((len(g), len(g)), np.complex128) for g in parts[path]] for path in layers},
    add,
  )


def group_systems(modes: StateModes):
  """Per group ``(idx, poles, b, c)`` complex128, ``c`` including the output scale."""
  poles = np.asarray(modes.poles, np.complex128)
  b = np.asarray(modes.B, np.complex128)
  c = modes.output_scale * np.asarray(modes.C, np.complex128)
  return [(g, poles[g], b[g], c[:, :, g]) for g in groups(modes)]


def layer_gramians(modes: StateModes, horizon: int | None = None, covariance=None):
  """Per group ``(idx, poles, b, c, P, Q)``; ``covariance`` (per group) replaces ``P``."""
  out = []
  for i, (g, poles, b, c) in enumerate(group_systems(modes)):
    p, q = gramians(poles, b, c, horizon)
    if covariance is not None:
      p = covariance[i]
    out.append((g, poles, b, c, p, q))
  return out


def hsv_scores(modes: StateModes, systems) -> tuple[np.ndarray, np.ndarray]:
  """``(scores (S,), sigma^2 per slot (S,))``: each group's live slots get its ``sigma^2``
  (descending, in slot order), then LAST's layer normalization; dead slots score -inf."""
  sq = np.zeros(modes.num_slots)
  for g, _, _, _, p, q in systems:
    if len(g):
      sq[g] = np.sort(hankel_factors(p, q)[0])[::-1] ** 2
  valid = np.asarray(modes.valid, bool)
  return np.where(valid, layer_energy_normalize(sq, valid), -np.inf), sq


@register_criterion("balanced", norm="h2", reduction=True)
def _balanced_scores(modes: StateModes, *, rng, horizon: int | None = None):
  """Layer-normalized squared Hankel singular values (see `hsv_scores`)."""
  del rng
  return hsv_scores(modes, layer_gramians(modes, horizon))[0]


@register_criterion("calibrated_balanced", norm="h2", reduction=True, calibrated=True)
def _calibrated_balanced_scores(modes: StateModes, *, rng, calibration, horizon=None):
  """As ``balanced``, with ``calibration`` the per-group state covariances."""
  del rng
  return hsv_scores(modes, layer_gramians(modes, horizon, calibration))[0]


# ``calibrated_balanced``, then a least-squares refit of the output columns (`refit`).
register_criterion("balanced_refit", norm="h2", reduction=True, calibrated=True)(
  _calibrated_balanced_scores
)


# ----------------------------------------------------------------------------
# One layer reduced, and loaded back (the pipeline, `last_nnx.pruning.pipeline`,
# allocates the states across layers and calls these).


def reduce_layer(modes: StateModes, systems, hsv2: np.ndarray, mask: np.ndarray):
  """``(reduced StateModes or None, error bound)`` of one layer keeping ``mask.sum()`` states.

  Each group keeps its share of ``mask`` by balanced truncation (`truncate`);
  the bound is ``2 sum`` of the dropped Hankel singular values over the groups.
  None (and 0) when the layer keeps every live state. A pure function: the
  dry run of a reduction (`last_nnx.pruning.pipeline.plan_event`).
  """
  if int(mask.sum()) == int(np.asarray(modes.valid).sum()):
    return None, 0.0
  bound = 0.0
  new_poles, new_b, new_c, channel = [], [], [], []
  for h, (g, poles, b, c, p, q) in enumerate(systems):
    k = int(mask[g].sum())
    if len(g) == 0 or k == 0:
      if len(g):
        bound += 2.0 * float(np.sqrt(hsv2[g]).sum())
      continue
    lam, b_r, c_r, sigma = truncate(poles, b, c, k, p, q)
    bound += 2.0 * float(sigma[len(lam) :].sum())
    new_poles.append(lam)
    new_b.append(b_r)
    new_c.append(c_r / modes.output_scale)
    channel.append(np.full(len(lam), h, np.int32))
  reduced = StateModes(
    poles=np.concatenate(new_poles),
    B=np.concatenate(new_b, axis=0),
    C=np.concatenate(new_c, axis=2),
    valid=np.ones(sum(map(len, new_poles)), bool),
    channel=None if modes.channel is None else np.concatenate(channel),
    output_scale=modes.output_scale,
    feedthrough=modes.feedthrough,
  )
  return reduced, bound


def load_reduced(layer, reduced: StateModes, optimizer, path: str) -> None:
  """Loads a reduced layer's parameters (`load_state_modes`); the optimizer's moments of
  its state parameters restart at zero, at the new shapes."""
  shapes = _variable_shapes(layer)
  layer.load_state_modes(reduced)
  if optimizer is None:
    return
  gathers = {}
  for name in type(layer).STATE_AXES:
    new_shape = tuple(getattr(layer, name).get_value().shape)
    gathers[name] = lambda a, s=new_shape: jnp.zeros(s, a.dtype)
  before = {name: shapes[(name,)] for name in gathers}
  compact_optimizer_state(optimizer, path, gathers, before)
