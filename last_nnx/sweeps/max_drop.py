"""How far can a trained model be pruned: pruned copies, fine-tuning, and the ``--max_drop`` search.

Shared by ``python -m last_nnx.cli.prune --max_drop`` and ``python -m last_nnx.cli.sweep
--max_drop``. A criterion is given as a spec: a registered name, or ``name@T``
(norms over ``T`` steps; ``name@L``: the task's sequence length). Calibrated
criteria read a few training batches in a fixed order (`calibration`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.pruning.layers import has_selective
from last_nnx.ssm.base import is_selective, live_states


def split_metrics(model, task, splits) -> dict[str, float]:
  """`last_nnx.train.steps.evaluate` of each split, flat as a sweep point stores it:
  ``{'<split>_accuracy', '<split>_loss'}``."""
  from last_nnx.train.steps import evaluate

  out = {}
  for split in splits:
    m = evaluate(model, task, split)
    out[f"{split}_accuracy"], out[f"{split}_loss"] = m["accuracy"], m["loss"]
  return out


def parse_criterion(spec: str, seq_len: int) -> tuple[str, int | None]:
  """``'last'`` -> ``('last', None)``; ``'last@L'`` -> ``('last', seq_len)``;
  ``'energy@512'`` -> ``('energy', 512)``. Raises ValueError on anything else."""
  from last_nnx import pruning

  name, _, horizon = spec.partition("@")
  if name not in pruning.registered_criteria():
    raise ValueError(
      f"unknown criterion {name!r} in {spec!r}; registered: {pruning.registered_criteria()}"
    )
  if not horizon:
    return name, None
  if horizon == "L":
    return name, int(seq_len)
  if not horizon.isdigit() or int(horizon) < 1:
    raise ValueError(
      f"criterion {spec!r}: horizon {horizon} is not a number of steps: after "
      "'@' give one, or L (the sequence length), e.g. last@L or last@1024"
    )
  return name, int(horizon)


def check_specs(model, specs) -> list[str]:
  """``specs`` as a list, each checked against ``model``'s layer kinds.

  Raises:
    ValueError (one line): an unknown criterion or a bad ``@`` suffix
    (`parse_criterion`), a criterion that does not apply to a layer kind of
    the model (naming those that do, `last_nnx.pruning.criteria.check_applies`), or a
    horizon on a model with selective layers (they have no fixed poles whose
    norms a horizon would truncate).
  """
  from last_nnx import pruning
  from last_nnx.pruning.criteria import check_applies
  from last_nnx.pruning.layers import layer_kinds

  kinds = layer_kinds(model)
  specs = list(specs)
  for spec in specs:
    name, horizon = parse_criterion(spec, 1)
    check_applies(name, kinds)
    if horizon is not None and "selective" in kinds.values():
      raise ValueError(
        f"criterion {spec!r}: a horizon (@) truncates LTI norms, and this "
        "model has selective SSM layers; use one of "
        f"{', '.join(pruning.applicable(model))}"
      )
  return specs


def default_criteria(model, curated) -> list[str]:
  """The criteria a sweep or search compares by default on ``model``.

  An LTI model: the ``curated`` specs (with their ``@L`` variants). A model
  with selective layers: every criterion that applies to it
  (`last_nnx.pruning.applicable`), since the curated list is LTI-only.
  """
  from last_nnx import pruning

  if has_selective(model):
    return list(pruning.applicable(model))
  return [s for s in curated if parse_criterion(s, 1)[0] in pruning.applicable(model)]


def default_criterion(model) -> str:
  """The criterion used when none is named: ``last`` (the paper's) on an LTI model,
  ``calibrated`` (the per-state output energy) on one with selective layers."""
  return "calibrated" if has_selective(model) else "last"


def resolve_criteria(model, specs, curated) -> list[str]:
  """``specs`` checked against ``model``; None, empty or ``['all']``: `default_criteria`."""
  if not specs or list(specs) == ["all"]:
    return default_criteria(model, curated)
  return check_specs(model, specs)


def calibration(task):
  """The training batches calibrated criteria read: the rows a scheduled pruning event
  of the training loop reads (`last_nnx.train.streams.calibration`)."""
  from last_nnx.train import streams

  return streams.calibration(task, 0)


def prune_copy(
  model,
  task,
  spec: str,
  ratio: float,
  *,
  seed: int = 0,
  mode: str = "mask",
  calibration_batches: int = DEFAULT_BATCHES,
  min_per_layer: int = 1,
):
  """``(pruned copy of model, report)``: ``spec`` (``name`` or ``name@T``) at ``ratio``.

  Subset criteria mask by default (no recompilation between points); reduction
  criteria (``balanced``) always compact. Calibrated criteria read
  ``calibration_batches`` training batches (`calibration`).
  """
  from last_nnx import pruning

  name, horizon = parse_criterion(spec, task.seq_len)
  pruned = nnx.clone(model)
  if pruning.get_criterion(name).reduction:
    mode = "compact"  # a projection onto new states: a mask cannot express it
  report = pruning.prune(
    pruned,
    ratio,
    criterion=name,
    mode=mode,
    seed=seed,
    horizon=horizon,
    calibration=calibration(task),
    calibration_batches=calibration_batches,
    seq_len=task.seq_len,
    min_per_layer=min_per_layer,
  )
  return pruned, report


def own_buffers(model) -> None:
  """Gives ``model`` array buffers of its own (in place).

  The train step donates the parameters' buffers, and `nnx.clone` shares them with
  the model the copy was made from: without this, fine-tuning a copy would delete
  the original's arrays.
  """
  nnx.update(model, jax.tree.map(jnp.copy, nnx.state(model)))


# Fine-tuning a pruned copy: the run's optimizer at this fraction of its peak learning rate,
# no warmup, cosine to the run's floor. The full peak undoes a converged model: on digits
# S5, one epoch at it lost 4 points at 12.5% pruned, where one-shot pruning lost 0.7.
FINETUNE_LR_SCALE = 0.1


def finetune(
  model, task, config, epochs: int, seed: int = 0, lr_scale: float = FINETUNE_LR_SCALE
) -> None:
  """Trains ``model`` (in place) ``epochs`` epochs with a fresh optimizer of the run's config
  (at ``lr_scale`` times its learning rates, no warmup)."""
  from last_nnx.train import steps as train_steps
  from last_nnx.train import streams
  from last_nnx.train.optim import make_optimizer

  if epochs <= 0:
    return
  own_buffers(model)
  optim = config.optim.copy_and_resolve_references()
  optim.warmup_epochs = 0
  optimizer, _ = make_optimizer(
    model,
    optim,
    total_steps=max(1, epochs * task.steps_per_epoch),
    steps_per_epoch=task.steps_per_epoch,
    lr_scale=lr_scale,
  )
  model.train()
  for epoch in range(epochs):
    train_steps.fit(model, optimizer, streams.finetuning(task, seed, epoch))


def min_states(model, min_per_layer: int = 1) -> int:
  """The fewest states pruning can leave: ``min_per_layer`` per layer, and on a
  selective layer at least one per group that has a live state (a lower bound:
  the two forced sets may differ)."""
  total = 0
  for layer in model.prunable_layers().values():
    floor = min(min_per_layer, live_states(layer))
    if is_selective(layer):
      live = np.asarray(layer.state_mask[...]) > 0
      floor = max(floor, int(live.reshape(live.shape[0], -1).any(axis=1).sum()))
    total += floor
  return total


def max_drop_search(
  model,
  task,
  config,
  spec: str,
  max_drop: float,
  *,
  finetune_epochs: int = 0,
  calibration_batches: int = DEFAULT_BATCHES,
  min_per_layer: int = 1,
  split: str = "val",
  splits=("val",),
  mode: str = "mask",
) -> dict:
  """Largest ratio of ``spec`` within ``max_drop`` points of the dense ``split`` accuracy.

  Bisects the number of kept states (`last_nnx.pruning.search`); each probe
  prunes a copy (fine-tuned ``finetune_epochs`` epochs when > 0) and evaluates
  it on ``split`` (and on the other ``splits``). No probe keeps fewer than
  `min_states`. Returns ``{'ratio', 'kept', 'accuracy', 'probes', 'dense',
  'metrics', 'copy'}``, ``kept`` the states the pruned copy at ``ratio`` really kept
  (a group's forced keep can add to the bisection's count), ``metrics`` the ``splits``
  measured at the returned ratio (``{}`` when nothing could be pruned), ``copy`` the
  ``(model, PruneReport)`` measured there (pruned with ``mode``, fine-tuned), or None.
  """
  from last_nnx.pruning import search
  from last_nnx.train.events import states_per_layer

  states = states_per_layer(model)
  dense = split_metrics(model, task, (split,))[f"{split}_accuracy"]

  measured, kept, copies = {}, {}, {}

  def accuracy_at(ratio):
    pruned, report = prune_copy(
      model,
      task,
      spec,
      ratio,
      calibration_batches=calibration_batches,
      min_per_layer=min_per_layer,
      mode=mode,
    )
    kept[ratio] = report.states_after
    copies[ratio] = (pruned, report)
    finetune(pruned, task, config, finetune_epochs)
    measured[ratio] = split_metrics(pruned, task, splits)
    acc = measured[ratio][f"{split}_accuracy"]
    logging.info(
      "max_drop search %s (finetune %d): ratio %.4f -> %s accuracy %.4f (dense %.4f)",
      spec,
      finetune_epochs,
      ratio,
      split,
      acc,
      dense,
    )
    return acc

  result = search.max_ratio_within(
    accuracy_at, dense, max_drop, sum(states.values()), min_kept=min_states(model, min_per_layer)
  )
  pruned_any = result.kept < sum(states.values())
  return dict(
    ratio=result.ratio,
    kept=kept.get(result.ratio, result.kept),
    accuracy=result.accuracy,
    probes=result.probes,
    dense=dense,
    metrics=measured.get(result.ratio, {}) if pruned_any else {},
    copy=copies.get(result.ratio) if pruned_any else None,
  )


def finetune_epochs_of(point: dict) -> int:
  """A ``max_drop`` point's fine-tuning epochs (older points kept them in ``seed``)."""
  return point.get("finetune_epochs", point["seed"])


def max_drop_points(
  model,
  task,
  config,
  store,
  *,
  criteria,
  max_drop: float,
  finetune_epochs=(0,),
  calibration_batches: int = DEFAULT_BATCHES,
) -> None:
  """Runs `max_drop_search` for every criterion and fine-tuning setting not yet in ``store``.

  Stored as ``kind='max_drop'`` points: ``ratio`` the ratio found (bisection on
  val), ``finetune_epochs``, ``max_drop`` the tolerance, and the val/test
  accuracy of that pruned (and fine-tuned) model. (Points stored before
  ``finetune_epochs`` had its own field kept it in ``seed``; they still count.)
  """
  for criterion in criteria:
    for epochs in finetune_epochs:
      done = [
        p
        for p in store.points.values()
        if p["kind"] == "max_drop"
        and p["criterion"] == criterion
        and finetune_epochs_of(p) == epochs
        and p.get("max_drop") == max_drop
      ]
      if done:
        continue
      found = max_drop_search(
        model,
        task,
        config,
        criterion,
        max_drop,
        finetune_epochs=epochs,
        calibration_batches=calibration_batches,
        splits=("val", "test"),
      )
      metrics = found["metrics"] or split_metrics(model, task, ("val", "test"))
      store.add(
        dict(
          kind="max_drop",
          criterion=criterion,
          ratio=found["ratio"],
          seed=0,
          finetune_epochs=epochs,
          max_drop=max_drop,
          kept=found["kept"],
          probes=found["probes"],
          **metrics,
        )
      )
      logging.info(
        "%s, %d fine-tuning epochs: %.1f%% pruned within %.2f points (val)",
        criterion,
        epochs,
        100 * found["ratio"],
        max_drop,
      )
