"""BatchNorm statistics after pruning.

Removing states changes every layer's output, so the activations a downstream
BatchNorm sees shift, while its running mean and variance still describe the
dense model. `recalibrate_batch_norm` re-estimates them from a few training
batches: forward passes only (no gradient, dropout off), the usual remedy when a
pruned network is evaluated without fine-tuning.
"""

from collections.abc import Iterable

import jax
from flax import nnx


@nnx.jit
def _forward(model, inputs, lengths):
  model(inputs, lengths)


def recalibrate_batch_norm(model: nnx.Module, batches: Iterable, *, max_batches: int) -> int:
  """Sets every ``nnx.BatchNorm``'s running statistics to their average over batches.

  Each batch's statistics are those of a training-mode forward pass (batch
  statistics in every norm layer, dropout off); the running mean and variance
  become the mean of the per-batch values over the first ``max_batches``
  batches. Parameters are untouched, and the model's train/eval mode is
  restored afterwards.

  Args:
    model: an NNX model called as ``model(inputs, lengths)``.
    batches: yields ``(inputs, lengths, ...)``: inputs int32 ``(B, L)`` tokens or
      float32 ``(B, L, D)``, lengths int32 ``(B,)`` (extra items are ignored).
    max_batches: how many batches to use; 0 leaves the model unchanged.

  Returns:
    The number of batches used (fewer than ``max_batches`` if ``batches`` ran out).
  """
  norms = [m for _, m in nnx.iter_graph(model) if isinstance(m, nnx.BatchNorm)]
  if max_batches <= 0 or not norms:
    return 0
  modes = [(m.use_running_average, m.momentum) for m in norms]
  deterministic = {
    id(m): m.deterministic for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Dropout)
  }
  model.eval()  # dropout off; then batch statistics in the norms only
  for m in norms:
    m.use_running_average, m.momentum = False, 0.0  # running stats := this batch's
  totals, used = None, 0
  for batch in batches:
    if used == max_batches:
      break
    _forward(model, batch[0], batch[1])
    stats = [(m.mean[...], m.var[...]) for m in norms]
    totals = stats if totals is None else jax.tree.map(lambda a, b: a + b, totals, stats)
    used += 1
  for m, (use_running_average, momentum) in zip(norms, modes):
    m.use_running_average, m.momentum = use_running_average, momentum
  for _, m in nnx.iter_graph(model):
    if isinstance(m, nnx.Dropout):
      m.deterministic = deterministic[id(m)]
  if used:
    for m, (mean, var) in zip(norms, totals):
      m.mean[...] = mean / used
      m.var[...] = var / used
  return used
