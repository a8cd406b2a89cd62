"""How far can a trained model be pruned: pruned copies, fine-tuning, and the ``--max_drop`` search.

Shared by ``python -m last_nnx.prune --max_drop`` and ``python -m last_nnx.sweep
--max_drop``. A criterion is given as a spec: a registered name, or ``name@T``
(norms over ``T`` steps; ``name@L``: the task's sequence length). Calibrated
criteria read a few training batches in a fixed order (`calibration`).
"""

import jax
import jax.numpy as jnp
from absl import logging
from flax import nnx

def evaluate(model, task, splits) -> dict[str, float]:
  """``{'<split>_accuracy', '<split>_loss'}`` for each split."""
  from last_nnx.train.steps import evaluate as evaluate_split
  out = {}
  for split in splits:
    m = evaluate_split(model, task, split)
    out[f"{split}_accuracy"], out[f"{split}_loss"] = m["accuracy"], m["loss"]
  return out


def parse_criterion(spec: str, seq_len: int) -> tuple[str, int | None]:
  """``'last'`` -> ``('last', None)``; ``'last@L'`` -> ``('last', seq_len)``;
  ``'energy@512'`` -> ``('energy', 512)``. Raises ValueError on anything else."""
  from last_nnx import pruning
  name, _, horizon = spec.partition("@")
  if name not in pruning.registered_criteria():
    raise ValueError(f"unknown criterion {name!r} in {spec!r}; registered: "
                     f"{pruning.registered_criteria()}")
  if not horizon:
    return name, None
  if horizon == "L":
    return name, int(seq_len)
  if not horizon.isdigit() or int(horizon) < 1:
    raise ValueError(f"criterion {spec!r}: after '@' give a number of steps or L (the "
                     "sequence length), e.g. last@L or last@1024")
  return name, int(horizon)


def calibration(task):
  """The training batches calibrated criteria read: the rows a scheduled pruning event
  of the training loop reads (`last_nnx.train.events.calibration_batches`)."""
  from last_nnx.train.events import calibration_batches
  return calibration_batches(task, 0)


def prune_copy(model, task, spec: str, ratio: float, *, seed: int = 0, mode: str = "mask",
               calibration_batches: int = 4):
  """``(pruned copy of model, report)``: ``spec`` (``name`` or ``name@T``) at ``ratio``.

  Subset criteria mask by default (no recompilation between points); reduction
  criteria (``balanced``) always compact. Calibrated criteria read
  ``calibration_batches`` training batches (`calibration`).
  """
  from last_nnx import pruning
  name, horizon = parse_criterion(spec, task.seq_len)
  pruned = nnx.clone(model)
  report = pruning.prune(pruned, ratio, criterion=name, mode=mode, rng=seed, horizon=horizon,
                         calibration=calibration(task), calibration_batches=calibration_batches,
                         seq_len=task.seq_len)
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


def finetune(model, task, config, epochs: int, seed: int = 0,
             lr_scale: float = FINETUNE_LR_SCALE) -> None:
  """Trains ``model`` (in place) ``epochs`` epochs with a fresh optimizer of the run's config
  (at ``lr_scale`` times its learning rates, no warmup)."""
  from last_nnx.train import steps as train_steps
  from last_nnx.train.optim import make_optimizer
  if epochs <= 0:
    return
  own_buffers(model)
  optim = config.optim.copy_and_resolve_references()
  optim.warmup_epochs = 0
  optimizer, _ = make_optimizer(model, optim, total_steps=max(1, epochs * task.steps_per_epoch),
                                steps_per_epoch=task.steps_per_epoch, lr_scale=lr_scale)
  model.train()
  for epoch in range(epochs):
    train_steps.fit(model, optimizer, task.train_batches(2000 + 10 * seed + epoch))


def max_drop_search(model, task, config, spec: str, max_drop: float, *, finetune_epochs: int = 0,
                    calibration_batches: int = 4, min_per_layer: int = 1,
                    split: str = "val", splits=("val",)) -> dict:
  """Largest ratio of ``spec`` within ``max_drop`` points of the dense ``split`` accuracy.

  Bisects the number of kept states (`last_nnx.pruning.search`); each probe
  prunes a copy (fine-tuned ``finetune_epochs`` epochs when > 0) and evaluates
  it on ``split`` (and on the other ``splits``). Returns ``{'ratio', 'kept',
  'accuracy', 'probes', 'dense', 'metrics'}``, ``metrics`` the ``splits``
  measured at the returned ratio (``{}`` when nothing could be pruned).
  """
  from last_nnx.pruning import search
  from last_nnx.train.events import states_per_layer
  states = states_per_layer(model)
  dense = evaluate(model, task, (split,))[f"{split}_accuracy"]

  measured = {}

  def accuracy_at(ratio):
    pruned, _ = prune_copy(model, task, spec, ratio, calibration_batches=calibration_batches)
    finetune(pruned, task, config, finetune_epochs)
    measured[ratio] = evaluate(pruned, task, splits)
    acc = measured[ratio][f"{split}_accuracy"]
    logging.info("max_drop search %s (finetune %d): ratio %.4f -> %s accuracy %.4f (dense %.4f)",
                 spec, finetune_epochs, ratio, split, acc, dense)
    return acc

  result = search.max_ratio_within(accuracy_at, dense, max_drop, sum(states.values()),
                                   min_kept=min_per_layer * len(states))
  return dict(ratio=result.ratio, kept=result.kept, accuracy=result.accuracy,
              probes=result.probes, dense=dense,
              metrics=measured.get(result.ratio, {}) if result.kept < sum(states.values())
              else {})


def max_drop_points(model, task, config, store, *, criteria, max_drop: float,
                    finetune_epochs=(0,), calibration_batches: int = 4) -> None:
  """Runs `max_drop_search` for every criterion and fine-tuning setting not yet in ``store``.

  Stored as ``kind='max_drop'`` points: ``ratio`` the ratio found (bisection on
  val), ``seed`` the fine-tuning epochs, ``max_drop`` the tolerance, and the
  val/test accuracy of that pruned (and fine-tuned) model.
  """
  for criterion in criteria:
    for epochs in finetune_epochs:
      done = [p for p in store.points.values() if p["kind"] == "max_drop"
              and p["criterion"] == criterion and p["seed"] == epochs
              and p.get("max_drop") == max_drop]
      if done:
        continue
      found = max_drop_search(model, task, config, criterion, max_drop, finetune_epochs=epochs,
                              calibration_batches=calibration_batches, splits=("val", "test"))
      metrics = found["metrics"] or evaluate(model, task, ("val", "test"))
      store.add(dict(kind="max_drop", criterion=criterion, ratio=found["ratio"], seed=epochs,
                     max_drop=max_drop, kept=found["kept"], probes=found["probes"], **metrics))
      logging.info("%s, %d fine-tuning epochs: %.1f%% pruned within %.2f points (val)",
                   criterion, epochs, 100 * found["ratio"], max_drop)
