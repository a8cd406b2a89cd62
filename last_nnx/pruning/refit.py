"""Least-squares refit of a reduced layer's output columns on calibration data.

After a layer loses states (a subset or a projection), its remaining output
columns ``C`` no longer give the best approximation of what the dense layer
computed. With the poles and input rows fixed, the layer output is linear in
``C``: for states ``x (N, k)`` (``N`` = calibration steps), ``a = Re x``,
``b = Im x``,

    y = s Re(C x) = s (Re C) a - s (Im C) b        (per direction; summed)

so the ``C`` closest to the dense layer's output ``Y`` (without feedthrough)
solves a ridge-regularized least-squares problem on the features
``F = [a, b]`` (``[a_f, b_f, a_b, b_b]`` when bidirectional):
``W = (F^T F + rho I)^-1 F^T Y``, ``Re C = W_a^T / s``, ``Im C = -W_b^T / s``.
Multi-SISO layers (S4D) solve one small problem per channel. The layers are
refit in model order, each on the inputs the already-refit layers before it
produce (as SparseGPT processes a network), against the dense layer applied to
those same inputs: every layer then matches its dense self locally, on the
data it will see. Only sums ``F^T F`` and ``F^T Y`` are kept per batch.
"""

import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.pruning.calibrated import layer_states
from last_nnx.pruning.calibration import DEFAULT_BATCHES, capture_inputs
from last_nnx.pruning.layers import prunable_layers
from last_nnx.ssm.base import StateModes

RIDGE = 1e-6  # relative to the mean diagonal of F^T F


def _features(modes: StateModes, u, weight) -> jnp.ndarray:
  """``(N, G, 2 D n)`` float64 features of each group (G = 1 for MIMO; n slots per group)."""
  parts = []
  for d in range(int(modes.C.shape[0])):
    x = layer_states(modes.poles, modes.B, modes.valid, modes.channel, u, reverse=d == 1)
    parts += [x.real, x.imag]
  f = jnp.concatenate(parts, axis=-1) * weight[..., None]  # (B, L, 2 D S)
  f = np.asarray(f, np.float64).reshape(-1, f.shape[-1])
  groups = 1 if modes.channel is None else int(np.asarray(modes.channel).max()) + 1
  n = modes.num_slots // groups
  # Columns (part, group, slot) -> (group, part, slot).
  return (
    f.reshape(f.shape[0], len(parts), groups, n)
    .transpose(0, 2, 1, 3)
    .reshape(f.shape[0], groups, len(parts) * n)
  )


def _targets(modes: StateModes, dense_layer, u, weight) -> np.ndarray:
  """``(N, G, H_g)``: the dense layer's output without feedthrough, per group."""
  y = dense_layer(u)
  if modes.feedthrough is not None:
    y = y - dense_layer.state_modes().feedthrough * u
  y = np.asarray(y * weight[..., None], np.float64).reshape(-1, y.shape[-1])
  return y[:, None, :] if modes.channel is None else y[:, :, None]


def refit_layer(layer, dense_layer, inputs, ridge: float = RIDGE) -> None:
  """Refits ``layer``'s output columns to ``dense_layer`` on ``inputs`` (in place).

  Args:
    layer: the reduced layer (any `PrunableSSM` with ``load_state_modes``).
    dense_layer: the same layer before reduction.
    inputs: ``[(u (B, L, H), lengths (B,))]`` it sees.
    ridge: Tikhonov weight relative to the mean diagonal of ``F^T F``.
  """
  modes = layer.state_modes()
  gram, cross = None, None
  for u, lengths in inputs:
    weight = (jnp.arange(u.shape[1])[None, :] < lengths[:, None]).astype(jnp.float32)
    f = _features(modes, u, weight)
    y = _targets(modes, dense_layer, u, weight)
    g = np.einsum("ngi,ngj->gij", f, f)
    c = np.einsum("ngi,ngh->gih", f, y)
    gram = g if gram is None else gram + g
    cross = c if cross is None else cross + c
  n_feat = gram.shape[-1]
  scale = np.maximum(np.trace(gram, axis1=1, axis2=2) / n_feat, 1e-30)
  w = np.linalg.solve(gram + ridge * scale[:, None, None] * np.eye(n_feat), cross)  # (G, F, H_g)
  directions = int(modes.C.shape[0])
  n = n_feat // (2 * directions)
  w = w.reshape(w.shape[0], directions, 2, n, w.shape[-1])  # (G, D, part, n, H_g)
  c_new = (w[:, :, 0] - 1j * w[:, :, 1]) / modes.output_scale  # (G, D, n, H_g)
  if modes.channel is None:
    c_flat = c_new[0].transpose(0, 2, 1)  # (D, H, n)
  else:
    c_flat = c_new[..., 0].transpose(1, 0, 2).reshape(directions, 1, -1)  # (D, 1, G n)
  valid = np.asarray(modes.valid, bool)
  layer.load_state_modes(
    StateModes(
      poles=np.asarray(modes.poles)[valid],
      B=np.asarray(modes.B)[valid],
      C=c_flat[:, :, valid],
      valid=np.ones(int(valid.sum()), bool),
      channel=None if modes.channel is None else np.asarray(modes.channel)[valid],
      output_scale=modes.output_scale,
      feedthrough=modes.feedthrough,
    )
  )


def refit_outputs(
  model: nnx.Module,
  dense: nnx.Module,
  paths,
  batches,
  max_batches: int = DEFAULT_BATCHES,
  ridge: float = RIDGE,
) -> None:
  """Refits the layers ``paths`` of ``model`` in model order (module docstring).

  ``dense`` is a copy of ``model`` before the reduction; ``batches`` is a
  re-iterable collection of ``(inputs, lengths, ...)`` calibration batches.
  """
  dense_layers = prunable_layers(dense)
  for path in [p for p in prunable_layers(model) if p in set(paths)]:
    inputs = [
      (recorded[path], lengths) for recorded, lengths in capture_inputs(model, batches, max_batches)
    ]
    refit_layer(prunable_layers(model)[path], dense_layers[path], inputs, ridge)
