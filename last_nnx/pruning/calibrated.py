"""Calibration-aware scores: each state's actual output energy on real inputs.

Data-free norms (H-inf, H2) weigh every input direction and frequency alike;
a trained layer sees a few. Like SparseGPT/Wanda for weights, the calibrated
score runs the model on a few training batches, records every SSM layer's
input ``u (B, L, H_in)`` (`DiagonalSSM.record_input`, an `SSMInput` sown in
``__call__``), and measures what each state really contributes to the layer
output. State ``i`` of a layer with poles ``lam``, input rows ``B`` and output
columns ``C_d`` (direction ``d``), output scale ``s`` (2 with ``conj_sym``):

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

from last_nnx.pruning.apply import prunable_layers
from last_nnx.ssm.base import RECORDED_INPUT, SSMInput, StateModes, is_selective
from last_nnx.ssm.scan import diagonal_recurrence

DEFAULT_BATCHES = 4


def _eval_flags(model: nnx.Module):
  """Puts ``model`` in eval mode; returns a function restoring every module's flags."""
  saved = []
  for _, node in nnx.iter_graph(model):
    if isinstance(node, nnx.Module):
      for attr in ("deterministic", "use_running_average"):
        if hasattr(node, attr):
          saved.append((node, attr, getattr(node, attr)))
  model.eval()

  def restore():
    for node, attr, value in saved:
      setattr(node, attr, value)
  return restore


@nnx.jit
def _forward(model, inputs, lengths):
  """``{layer_path: u}`` sown by the layers during ``model(inputs, lengths)``."""
  _, sown = nnx.capture(lambda m, x, n: m(x, n), SSMInput)(model, inputs, lengths)
  out = {}
  for path, var in nnx.to_flat_state(sown):
    value = var.get_value() if hasattr(var, "get_value") else var
    out[".".join(str(p) for p in path[:-1])] = value[-1] if isinstance(value, tuple) else value
  return out


def capture_inputs(model: nnx.Module, batches: Iterable, max_batches: int = DEFAULT_BATCHES):
  """Yields ``({layer_path: u (B', L, H)}, lengths (B',))`` for each calibration batch.

  Runs the model in eval mode (dropout off, BatchNorm running statistics) on at
  most ``max_batches`` batches of ``batches`` (each ``(inputs, lengths, ...)``
  as the task yields them; extra fields are ignored) with input recording on,
  collecting the sown `SSMInput` values with ``nnx.capture``. The flags are
  restored afterwards. For a
  retrieval model ``B' = 2 B`` (both documents go through the same tower).

  Raises:
    ValueError: a prunable layer recorded nothing (its ``__call__`` does not
      call ``self.record_input(u)``), or no batch was given.
  """
  layers = prunable_layers(model)
  restore = _eval_flags(model)
  for layer in layers.values():
    layer.recording_input = True
  seen = 0
  try:
    for batch in batches:
      if seen >= max_batches:
        break
      inputs, lengths = jnp.asarray(batch[0]), jnp.asarray(batch[1])
      sown = _forward(model, inputs, lengths)
      recorded = {}
      for path, layer in layers.items():
        if path not in sown:
          raise ValueError(f"layer {path} ({type(layer).__name__}) recorded no input: its "
                           "__call__ must call self.record_input(u) first (see "
                           "last_nnx.ssm.base.DiagonalSSM.record_input)")
        recorded[path] = sown[path]
      seen += 1
      yield recorded, lengths.reshape(-1)
  finally:
    for layer in layers.values():
      if hasattr(layer, RECORDED_INPUT):
        delattr(layer, RECORDED_INPUT)
      del layer.recording_input
    restore()
  if seen == 0:
    raise ValueError("calibration needs at least one batch of (inputs, lengths): pass a few "
                     "training batches as calibration=")


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
    total = total + (saa * jnp.sum(cr * cr, axis=0) + sbb * jnp.sum(ci * ci, axis=0)
                     - 2.0 * sab * jnp.sum(cr * ci, axis=0))
  return jnp.maximum(total, 0.0), jnp.sum(steps)


def output_energy_sums(modes: StateModes, u: jax.Array, lengths: jax.Array):
  """``(sum over valid (b, t) of sum_d ||y_i(t)||^2  (S,) float32, valid (b, t) count)``.

  See the module docstring; ``y_i`` includes the layer's output scale, and the
  steps ``t >= lengths[b]`` (padding) are left out.
  """
  total, count = _energy_sums(modes.poles, modes.B, modes.C, modes.valid, modes.channel,
                              jnp.asarray(u), jnp.asarray(lengths))
  return modes.output_scale ** 2 * total, count


def output_energies(model: nnx.Module, batches: Iterable,
                    max_batches: int = DEFAULT_BATCHES) -> dict[str, np.ndarray]:
  """``{layer_path: (S,) float64}`` mean output energy of every state slot on ``batches``.

  LTI layers only (selective layers: `last_nnx.pruning.selective.statistics`).
  Dead slots (pruned, padding) get 0. See `capture_inputs` for ``batches``.
  """
  layers = {p: l for p, l in prunable_layers(model).items() if not is_selective(l)}
  modes = {path: layer.state_modes() for path, layer in layers.items()}
  if not modes:
    return {}
  sums = {path: np.zeros(m.num_slots) for path, m in modes.items()}
  count = 0.0
  for recorded, lengths in capture_inputs(model, batches, max_batches):
    for path in modes:
      e, n = output_energy_sums(modes[path], recorded[path], lengths)
      sums[path] += np.asarray(e, np.float64)
    count += float(n)
  return {path: np.where(np.asarray(modes[path].valid), s / max(count, 1.0), 0.0)
          for path, s in sums.items()}
