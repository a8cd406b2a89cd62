"""Calibration capture: what every prunable layer sees on a few real batches.

Data-driven criteria (the calibrated energies of LTI layers, the statistics of
selective layers, the state covariances of ``calibrated_balanced``) all run the
model on a few training batches with input recording on, read each layer's
input ``u (B, L, H_in)`` (`last_nnx.ssm.base.SSMInput`, sown in ``__call__``)
and average something over the valid steps ``t < length``. `capture_inputs` is
the capture; `mean_over_steps` the one accumulator they share:

    mean = sum over batches b of sums_b / sum over batches b of n_b

with ``sums_b`` a layer's sums over the valid steps of batch ``b`` and ``n_b``
that batch's number of valid ``(row, step)`` pairs (each batch weighted by its
valid steps).
"""

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.model import eval_mode
from last_nnx.pruning.layers import prunable_layers
from last_nnx.ssm.base import RECORDED_INPUT, SSMInput

# Training batches a calibrated criterion reads by default.
DEFAULT_BATCHES = 4


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
  restored afterwards. For a retrieval model ``B' = 2 B`` (both documents go
  through the same tower).

  Raises:
    ValueError: a prunable layer recorded nothing (its ``__call__`` does not
      call ``self.record_input(u)``), or no batch was given.
  """
  layers = prunable_layers(model)
  for layer in layers.values():
    layer.recording_input = True
  seen = 0
  try:
    with eval_mode(model):
      for batch in batches:
        if seen >= max_batches:
          break
        inputs, lengths = jnp.asarray(batch[0]), jnp.asarray(batch[1])
        sown = _forward(model, inputs, lengths)
        recorded = {}
        for path, layer in layers.items():
          if path not in sown:
            raise ValueError(
              f"layer {path} ({type(layer).__name__}) recorded no input: its "
              "__call__ must call self.record_input(u) first (see "
              "last_nnx.ssm.base.StateSpaceLayer.record_input)"
            )
          recorded[path] = sown[path]
        seen += 1
        yield recorded, lengths.reshape(-1)
  finally:
    for layer in layers.values():
      if hasattr(layer, RECORDED_INPUT):
        delattr(layer, RECORDED_INPUT)
      del layer.recording_input
  if seen == 0:
    raise ValueError(
      "calibration needs at least one batch of (inputs, lengths): pass a few "
      "training batches as calibration="
    )


def valid_steps(u: jax.Array, lengths) -> float:
  """Valid ``(row, step)`` pairs of a batch: ``sum_b min(lengths[b], L)``."""
  return float(np.minimum(np.asarray(lengths), u.shape[1]).sum())


def mean_over_steps(
  model: nnx.Module,
  batches: Iterable,
  max_batches: int,
  totals: dict,
  add: Callable[[dict, dict, jax.Array], None],
) -> dict:
  """The one calibration accumulator (module docstring).

  Args:
    model: the model whose layers are captured (`capture_inputs`).
    batches, max_batches: the calibration batches, and how many to read.
    totals: ``{layer_path: pytree of zero float64 arrays}``, the running sums.
    add: ``add(totals, recorded, lengths)`` adds one batch's sums over its valid
      steps into ``totals`` in place (``recorded``: ``{layer_path: u}``).

  Returns:
    ``totals`` divided by the number of valid steps read (at least 1).
  """
  count = 0.0
  for recorded, lengths in capture_inputs(model, batches, max_batches):
    add(totals, recorded, lengths)
    count += valid_steps(next(iter(recorded.values())), lengths)
  return jax.tree.map(lambda s: s / max(count, 1.0), totals)
