"""The compiled train and eval steps, and finiteness tracked on the device.

The loop dispatches `train_step` without waiting for it: nothing in the step
is read on the host. Whether the parameters are still finite is computed
inside the step (`TrainCarry.bad_leaf`) and latched on the device at the
first step that saw a non-finite parameter; the loop reads it only at its
sync points (logging, checkpoints, epoch ends), as big_vision reads its
NaN check at logging steps. The latch keeps the name of the parameter that
went bad first, although a NaN loss spreads to every parameter a step later.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.model import eval_mode
from last_nnx.train import distributed, objectives, regularizers
from last_nnx.train import metrics as metrics_lib

CLASSIFICATION = objectives.Classification()


class Diverged(FloatingPointError):
  """The loss or a parameter became NaN/Inf."""


def _float_leaves(params) -> list[jax.Array]:
  return [x for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.inexact)]


def parameter_paths(model) -> list[str]:
  """Key paths of the floating-point parameters, in the order `TrainCarry` flags them."""
  # keystr ends in ".value" (the Variable's field) under flax 0.12: the name is the path.
  return [
    jax.tree_util.keystr(path).removesuffix(".value")
    for path, x in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
    if jnp.issubdtype(x.dtype, jnp.inexact)
  ]


@flax.struct.dataclass
class TrainCarry:
  """What successive train steps thread through on the device.

  Attributes:
    metrics: the epoch's running `ClassificationMetrics`.
    bad_leaf: ``(n_params,)`` bool, the parameters found non-finite at the
      first step that found any (all False while none has).
  """

  metrics: metrics_lib.ClassificationMetrics
  bad_leaf: jax.Array

  @classmethod
  def start(cls, model, metrics=None) -> "TrainCarry":
    n = len(parameter_paths(model))
    return cls(
      metrics=metrics if metrics is not None else metrics_lib.ClassificationMetrics.empty(),
      bad_leaf=jnp.zeros((n,), bool),
    )


def _loss(model, inputs, lengths, labels, reg_weight, reg, objective):
  logits = model(inputs, lengths)
  loss = objective.loss(logits, labels)
  penalty = regularizers.penalty(model, reg)
  return loss + reg_weight * penalty, (logits, penalty)


def _nonfinite(params) -> jax.Array:
  """``(n_params,)`` bool: which floating-point parameters hold a NaN or Inf."""
  return jnp.stack([~jnp.all(jnp.isfinite(x)) for x in _float_leaves(params)])


def _latch(bad_leaf: jax.Array, params) -> jax.Array:
  """Keeps the first non-empty set of non-finite parameters."""
  return jnp.where(bad_leaf.any(), bad_leaf, _nonfinite(params))


def train_step_fn(
  model,
  optimizer,
  carry: TrainCarry,
  inputs,
  lengths,
  labels,
  reg_weight=0.0,
  reg: regularizers.RegularizerSpec = regularizers.RegularizerSpec(),
  objective: objectives.Classification = CLASSIFICATION,
):
  """One optimizer micro-step; returns the updated carry (`train_step` compiles it).

  Model, optimizer and carry are donated: their old buffers are reused for the
  new values, so peak memory holds one copy of the state. ``reg`` (static)
  selects a prunability penalty, ``reg_weight`` (traced, so a schedule does
  not recompile) weighs it; ``objective`` (static) gives the loss and metrics
  (`last_nnx.train.objectives`). Finiteness is checked on the incoming parameters,
  so the parameter an update broke is named before the next loss spreads it.
  """
  bad_leaf = _latch(carry.bad_leaf, nnx.state(model, nnx.Param))
  (_, (logits, penalty)), grads = nnx.value_and_grad(_loss, has_aux=True)(
    model, inputs, lengths, labels, reg_weight, reg, objective
  )
  optimizer.update(model, grads)
  batch = objective.batch_metrics(logits, labels, penalty=penalty)
  return TrainCarry(metrics=carry.metrics.merge(batch), bad_leaf=bad_leaf)


train_step = nnx.jit(train_step_fn, static_argnames=("reg", "objective"), donate_argnums=(0, 1, 2))


def bound_train_step(model, optimizer):
  """`train_step` with ``model`` and ``optimizer`` bound: ``(carry, inputs, lengths,
  labels, reg_weight=0.0, *, reg=...) -> carry``, the same compiled program.

  `nnx.jit` walks the model's and the optimizer's graphs on every call: at the
  ListOps shape (8 layers, AdamW groups) a dispatch takes 13 ms of host time on
  2 CPU cores, 6 ms bound (`make bench`, section loop), and a fast accelerator
  step cannot hide it. The bound step walks them once (`nnx.cached_partial`).
  Bind again after anything changes their structure (a pruning event, a
  restore); values may change freely.
  """
  return nnx.cached_partial(train_step, model, optimizer)


def fit(model, optimizer, batches) -> TrainCarry:
  """Trains on every ``(inputs, lengths, labels)`` of ``batches`` (host arrays);
  returns the final carry (its ``metrics`` average over the batches).

  For fine-tuning outside the loop (sweeps, the prune CLI); raises `Diverged`
  if a parameter became non-finite.
  """
  carry = TrainCarry.start(model)
  step = bound_train_step(model, optimizer)
  for batch in distributed.prefetch_to_device(batches, None):
    carry = step(carry, *batch)
  check_health(model, carry)
  return carry


@nnx.jit
def _nonfinite_now(model) -> jax.Array:
  return _nonfinite(nnx.state(model, nnx.Param))


def check_health(model, carry: TrainCarry) -> None:
  """A sync point: raises `Diverged` naming the first non-finite parameter.

  Reads the latch (parameters that went bad at some earlier step) and the
  current parameters (what the last step wrote).
  """
  bad = np.asarray(jax.device_get(carry.bad_leaf))
  if not bad.any():
    bad = np.asarray(jax.device_get(_nonfinite_now(model)))
  if bad.any():
    raise Diverged(f"non-finite parameter {parameter_paths(model)[int(np.argmax(bad))]}")


@nnx.jit(static_argnames=("objective",))
def eval_step(model, inputs, lengths, labels, mask, objective=CLASSIFICATION):
  return objective.batch_metrics(model(inputs, lengths), labels, mask)


def _pad_batch(batch, size):
  """Pads a short final eval batch to ``size`` rows; returns (batch, mask)."""
  n = batch[0].shape[0]
  mask = np.arange(size) < n
  if n == size:
    return batch, mask
  pad = lambda a: np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)])
  return tuple(pad(a) for a in batch), mask


def eval_batches(task, split: str):
  """Yields ``(batch, mask)``: this process's batches of ``split``, padded to
  ``task.eval_batch_size`` rows, and as many on every process (fully masked ones
  where this shard runs out first): each eval step is a collective that a
  multi-host run needs on every process."""
  batch_size = task.eval_batch_size
  per_process = -(-task.num_examples[split] // task.process_count)
  template = None
  batches = task.eval_batches(split)
  for _ in range(-(-per_process // batch_size)):
    batch = next(batches, None)
    if batch is not None:
      template, mask = _pad_batch(batch, batch_size)
      yield template, mask
    elif template is not None:
      yield template, np.zeros(batch_size, bool)
    else:
      raise ValueError(
        f"the {split} split has {task.num_examples[split]} examples, fewer "
        f"than the {task.process_count} processes: process "
        f"{task.process_index} has none to evaluate"
      )


def evaluate(model, task, split: str, mesh=None) -> dict[str, float]:
  """The task objective's metrics on ``split`` ('val' or 'test'), dropout off, BN
  frozen: loss and accuracy (a language model adds perplexity and bits per byte).

  The one evaluation of the library: the model's train/eval mode is left as it
  was found.
  """
  objective = objectives.for_task(task)
  total = None
  with eval_mode(model):
    step = nnx.cached_partial(eval_step, model)  # one graph walk, not one per batch
    batches = ((batch + (mask,)) for batch, mask in eval_batches(task, split))
    for inputs, lengths, labels, mask in distributed.prefetch_to_device(batches, mesh):
      total = metrics_lib.merge(total, step(inputs, lengths, labels, mask, objective=objective))
  return {k: v for k, v in objective.scalars(total, split).items() if k != "penalty"}
