"""Calibration-aware scores: each state's actual output energy on real inputs.

Data-free norms (H-inf, H2) weigh every input direction and frequency alike;
a trained layer sees a few. Like SparseGPT/Wanda for weights, the calibrated
score runs the model on a few training batches, records every SSM layer's
input ``u (B, L, H_in)`` (`last_nnx.pruning.calibration.capture_inputs`), and
measures what each state really contributes to the layer output. State ``i``
of a layer with poles ``lam``, input rows ``B`` and output columns ``C_d``
(direction ``d``), output scale ``s`` (2 with ``conj_sym``):

    x_i(t) = sum_{t' <= t} lam_i^(t - t') (B_i . u_t')      (d = 1: t' >= t, backward)
    y_i(t) = s Re(C_i x_i(t))                                ((H_out,))
    score_i = mean over batch and valid steps t < length of sum_d ||y_i(t)||^2

Never materialize ``(B, L, S, H)``: with ``a = Re x_i(t)``, ``b = Im x_i(t)``,

    ||Re(C_i x_i)||^2 = a^2 ||Re C_i||^2 + b^2 ||Im C_i||^2 - 2 a b (Re C_i . Im C_i)

so only the states ``x (B, L, S)`` and three per-state scalars of ``C`` are
needed, and per batch only three ``(S,)`` sums are kept. Multi-SISO layers
(S4D) use the same code: state ``i`` reads channel ``channel[i]`` of ``u`` and
its ``C_i`` is a scalar. Checked against the brute-force ``(B, L, S, H)``
computation in tests/test_calibrated.py.

The ``calibrated`` criterion applies LAST's layer-energy normalization to these
energies and one global threshold. The states are those of the model being
pruned (each layer's input comes from the unpruned layers before it).
"""

from collections.abc import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.pruning.calibration import DEFAULT_BATCHES, mean_over_steps
from last_nnx.pruning.layers import prunable_layers
from last_nnx.ssm.base import StateModes, is_selective
from last_nnx.ssm.scan import diagonal_recurrence


def layer_states(poles, b, valid, channel, u: jax.Array, *, reverse: bool = False) -> jax.Array:
  """States ``x (B, L, S)`` complex64 of the live slots driven by ``u (B, L, H_in)``.

  ``poles (S,)``, ``b (S, H_in)``, ``valid (S,)`` and ``channel`` (None, or
  ``(S,)`` for a multi-SISO layer) are the fields of the layer's `StateModes`.
  """
  b = b * valid[:, None]
  if channel is None:
    bu = jnp.einsum("blh,sh->bls", u.astype(b.dtype), b)
  else:
    bu = u[:, :, channel].astype(b.dtype) * b[:, 0]
  return diagonal_recurrence(poles, bu, reverse=reverse)


@jax.jit
def _energy_sums(poles, b, c, valid, channel, u, lengths):
  steps = jnp.arange(u.shape[1])[None, :] < lengths[:, None]  # (B, L)
  weight = steps[..., None].astype(jnp.float32)
  total = jnp.zeros(poles.shape, jnp.float32)
  for d in range(c.shape[0]):
    x = layer_states(poles, b, valid, channel, u, reverse=d == 1)
    re, im = x.real, x.imag
    saa = jnp.sum(re * re * weight, axis=(0, 1))
    sbb = jnp.sum(im * im * weight, axis=(0, 1))
    sab = jnp.sum(re * im * weight, axis=(0, 1))
    cr, ci = c[d].real, c[d].imag  # (H_out, S)
    total = total + (
      saa * jnp.sum(cr * cr, axis=0)
      + sbb * jnp.sum(ci * ci, axis=0)
      - 2.0 * sab * jnp.sum(cr * ci, axis=0)
    )
  return jnp.maximum(total, 0.0), jnp.sum(steps)


def output_energy_sums(modes: StateModes, u: jax.Array, lengths: jax.Array):
  """``(sum over valid (b, t) of sum_d ||y_i(t)||^2  (S,) float32, valid (b, t) count)``.

  See the module docstring; ``y_i`` includes the layer's output scale, and the
  steps ``t >= lengths[b]`` (padding) are left out.
  """
  total, count = _energy_sums(
    modes.poles, modes.B, modes.C, modes.valid, modes.channel, jnp.asarray(u), jnp.asarray(lengths)
  )
  return modes.output_scale**2 * total, count


def output_energies(
  model: nnx.Module, batches: Iterable, max_batches: int = DEFAULT_BATCHES
) -> dict[str, np.ndarray]:
  """``{layer_path: (S,) float64}`` mean output energy of every state slot on ``batches``.

  LTI layers only (selective layers: `last_nnx.pruning.selective.statistics`).
  Dead slots (pruned, padding) get 0. See `calibration.capture_inputs` for ``batches``.
  """
  layers = {p: l for p, l in prunable_layers(model).items() if not is_selective(l)}
  modes = {path: layer.state_modes() for path, layer in layers.items()}
  if not modes:
    return {}

  def add(totals, recorded, lengths):
    for path in modes:
      e, _ = output_energy_sums(modes[path], recorded[path], lengths)
      totals[path] += np.asarray(e, np.float64)

  means = mean_over_steps(
    model, batches, max_batches, {path: np.zeros(m.num_slots) for path, m in modes.items()}, add
  )
  return {path: np.where(np.asarray(modes[path].valid), s, 0.0) for path, s in means.items()}
