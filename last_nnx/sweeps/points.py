"""Sweep points: prune copies of a trained model and measure them, once each.

One-shot: every criterion at every ratio (``random`` over several seeds) prunes a
copy of the trained model, with no retraining, and is evaluated on val and
test. Iterative: prune by steps toward a target, fine-tuning between steps.
Each point is appended to ``points.jsonl`` as soon as it is measured, so a
rerun skips finished points.

A criterion is a registered name, or ``name@T``: the same criterion with its
norms taken over ``T`` steps (``name@L``: the task's sequence length) instead of
infinite time (see `last_nnx.pruning.hinf`). ``last@L`` is in the default set
of an LTI model (`CRITERIA`); a model with selective layers (Mamba-2) is swept
with every criterion that applies to it (`last_nnx.pruning.applicable`), and a
criterion that does not apply is refused (`max_drop.check_specs`).
"""

import json
import os

import numpy as np
from absl import logging

from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.sweeps.max_drop import (
  check_specs,
  parse_criterion,
  prune_copy,
  resolve_criteria,
  split_metrics,
)

CRITERIA = (
  "last",
  "last@L",
  "energy",
  "calibrated",
  "balanced",
  "balanced@L",
  "calibrated_balanced",
  "uniform",
  "global_hinf",
  "magnitude",
  "random",
)

DEFAULT_RATIOS = tuple(round(0.1 * i, 2) for i in range(10))


def point_key(p: dict) -> str:
  key = f"{p['kind']}|{p['criterion']}|{p['ratio']:.4f}|{p['seed']}"
  return key + (f"|ft{p['finetune_epochs']}" if "finetune_epochs" in p else "")


class PointStore:
  """Append-only JSONL of measured points (tolerates a torn last line)."""

  def __init__(self, directory: str):
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, "points.jsonl")
    self.points: dict[str, dict] = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        for line in f:
          try:
            p = json.loads(line)
          except json.JSONDecodeError:
            logging.warning("ignoring a torn line in %s", self.path)
            continue
          self.points[point_key(p)] = p

  def __contains__(self, key: str) -> bool:
    return key in self.points

  def add(self, point: dict) -> None:
    self.points[point_key(point)] = point
    with open(self.path, "a") as f:
      f.write(json.dumps(point) + "\n")
      f.flush()
      os.fsync(f.fileno())


def one_shot(
  model,
  task,
  config,
  store: PointStore,
  *,
  ratios,
  criteria=None,
  seeds: int,
  splits=("val", "test"),
  recalibrate_batches: int = 0,
  calibration_batches: int = DEFAULT_BATCHES,
) -> None:
  """Measures every (criterion, ratio, seed) point not yet in ``store``.

  Masked pruning is used for subset criteria: the same outputs as compaction
  (tested), and no recompilation between points; reduction criteria
  (``balanced``) compact each copy. Calibrated criteria read
  ``calibration_batches`` training batches. ``recalibrate_batches > 0`` re-estimates the
  BatchNorm statistics of each pruned copy on that many training batches
  (`last_nnx.train.batchnorm`) before evaluating it. ``criteria`` None: those
  that apply to the model (`max_drop.resolve_criteria`); one that does not apply
  raises a one-line ValueError before anything is measured.
  """
  from last_nnx.train import streams
  from last_nnx.train.batchnorm import recalibrate_batch_norm
  from last_nnx.train.events import states_per_layer

  criteria = resolve_criteria(model, criteria, CRITERIA)
  base = states_per_layer(model)
  dense_key = point_key(dict(kind="one_shot", criterion="dense", ratio=0.0, seed=0))
  if dense_key not in store:
    store.add(
      dict(
        kind="one_shot",
        criterion="dense",
        ratio=0.0,
        seed=0,
        states=base,
        ratio_achieved=0.0,
        **split_metrics(model, task, splits),
      )
    )
  todo = [(c, r, s) for c in criteria for r in ratios for s in range(seeds if c == "random" else 1)]
  for i, (criterion, ratio, seed) in enumerate(todo):
    point = dict(kind="one_shot", criterion=criterion, ratio=float(ratio), seed=seed)
    if point_key(point) in store:
      continue
    pruned, report = prune_copy(
      model, task, criterion, ratio, seed=seed, calibration_batches=calibration_batches
    )
    if recalibrate_batches:
      recalibrate_batch_norm(
        pruned, streams.recalibration(task, 0), max_batches=recalibrate_batches
      )
    states = states_per_layer(pruned)
    point.update(
      states=states,
      ratio_achieved=1 - sum(states.values()) / sum(base.values()),
      threshold=report.threshold,
      recalibrate_batches=recalibrate_batches,
      **split_metrics(pruned, task, splits),
    )
    store.add(point)
    logging.info(
      "[%d/%d] %s r=%.2f seed %d: val acc %.4f",
      i + 1,
      len(todo),
      criterion,
      ratio,
      seed,
      point.get("val_accuracy", float("nan")),
    )


def iterative(
  model,
  task,
  config,
  store: PointStore,
  *,
  criterion: str,
  target: float,
  steps: int,
  finetune_epochs: int,
  splits=("val", "test"),
  calibration_batches: int = DEFAULT_BATCHES,
  lr_scale: float | None = None,
) -> None:
  """Prunes toward ``target`` in ``steps`` equal cumulative steps, fine-tuning between.

  Compaction is used (the model really shrinks and trains on). The model is
  carried from step to step, so a rerun restarts the schedule but skips the
  measurements already stored only if the whole schedule finished. A calibrated
  criterion reads ``calibration_batches`` training batches at each step, other
  rows at each (as the training loop's events do,
  `last_nnx.train.streams.calibration`). Fine-tuning: a fresh optimizer of
  the run's config each step; with ``lr_scale`` its rates times ``lr_scale`` and no
  warmup (as `max_drop.finetune`), else the run's rates and warmup.
  """
  from last_nnx import pruning
  from last_nnx.train import events, streams
  from last_nnx.train import steps as train_steps
  from last_nnx.train.optim import make_optimizer

  check_specs(model, [criterion])  # refused (one line) before any step
  keys = [
    point_key(dict(kind="iterative", criterion=criterion, ratio=target * (k + 1) / steps, seed=0))
    for k in range(steps)
  ]
  if all(k in store for k in keys):
    return
  name, horizon = parse_criterion(criterion, task.seq_len)
  base = events.states_per_layer(model)
  n0 = sum(base.values())
  optim = config.optim
  if lr_scale is not None:
    optim = config.optim.copy_and_resolve_references()
    optim.warmup_epochs = 0
  model.train()
  for k in range(steps):
    cumulative = target * (k + 1) / steps
    now = sum(events.states_per_layer(model).values())
    ratio = pruning.event_ratio(cumulative, now, n0)
    optimizer, _ = make_optimizer(
      model,
      optim,
      total_steps=max(1, finetune_epochs * (task.steps_per_epoch)),
      steps_per_epoch=task.steps_per_epoch,
      lr_scale=1.0 if lr_scale is None else lr_scale,
    )
    calibration = streams.calibration(task, k) if pruning.needs_calibration(model, name) else None
    pruning.prune(
      model,
      ratio,
      criterion=name,
      mode="compact",
      optimizer=optimizer,
      horizon=horizon,
      calibration=calibration,
      calibration_batches=calibration_batches,
    )
    after_prune = split_metrics(model, task, ("val",))
    for epoch in range(finetune_epochs):
      train_steps.fit(model, optimizer, streams.iterative(task, k, epoch))
    states = events.states_per_layer(model)
    point = dict(
      kind="iterative",
      criterion=criterion,
      ratio=cumulative,
      seed=0,
      states=states,
      ratio_achieved=1 - sum(states.values()) / n0,
      val_accuracy_before_finetune=after_prune["val_accuracy"],
      lr_scale=lr_scale,  # None: the run's rates and warmup
      **split_metrics(model, task, splits),
    )
    store.add(point)
    logging.info(
      "iterative step %d/%d: %.0f%% pruned, val acc %.4f -> %.4f after fine-tuning",
      k + 1,
      steps,
      100 * point["ratio_achieved"],
      after_prune["val_accuracy"],
      point["val_accuracy"],
    )


def mean_curve(points, criterion, key) -> dict[float, tuple[float, float]]:
  """``{ratio: (mean, std)}`` of ``key`` over the one-shot points of ``criterion``."""
  by_ratio: dict[float, list[float]] = {}
  for p in points:
    if p["kind"] == "one_shot" and p["criterion"] == criterion and key in p:
      by_ratio.setdefault(round(p["ratio"], 4), []).append(p[key])
  return {r: (float(np.mean(v)), float(np.std(v))) for r, v in by_ratio.items()}
