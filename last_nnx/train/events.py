"""Pruning events inside the training loop, and what the loop logs about states.

An event (`pruning_event`) recomputes the scores from the current weights,
prunes toward a cumulative target, re-places the (smaller) state on the
devices, optionally re-estimates BatchNorm statistics, and checks the
accuracy guard rail. Its record goes into the run's history (summary.json).
"""

import dataclasses
import json
import math

import numpy as np
from absl import logging
from flax import nnx

from last_nnx import pruning
from last_nnx.ssm.base import is_selective, live_states
from last_nnx.train import batchnorm, distributed, objectives, steps, streams


def states_per_layer(model) -> dict[str, int]:
  """Live states per prunable layer (either kind: counted on its state mask)."""
  return {path: live_states(layer) for path, layer in model.prunable_layers().items()}


def ssm_ranges(model) -> dict[str, float]:
  """Ranges of the discretized poles and steps (divergence shows here first).

  LTI layers only: a selective layer has no fixed poles.
  """
  mags, steps = [], []
  for layer in model.prunable_layers().values():
    if is_selective(layer):
      continue
    modes = layer.state_modes()
    valid = np.asarray(modes.valid)
    mags.append(np.abs(np.asarray(modes.poles))[valid])
    if hasattr(layer, "log_step"):
      steps.append(np.exp(np.asarray(layer.log_step[...])).ravel())
  out = {}
  if mags:
    m = np.concatenate(mags)
    out.update({"ssm/pole_abs_min": float(m.min()), "ssm/pole_abs_max": float(m.max())})
  if steps:
    s = np.concatenate(steps)
    out.update({"ssm/dt_min": float(s.min()), "ssm/dt_max": float(s.max())})
  return out


def pruning_event(run, *, target: float, config, task, mesh=None):
  """Prunes ``run``'s model toward ``target``; returns ``(run, EventRecord)``.

  ``run`` is a `last_nnx.train.run_state.Run`; the one returned holds the model
  and optimizer that go on (the ones before the event, when it was undone).
  With ``pruning.recalibrate_batches > 0`` the BatchNorm statistics are
  re-estimated on that many training batches right after pruning (before the
  "after" evaluation; the record's ``recalibrated_batches`` counts those read).
  The guard rail ``pruning.max_acc_drop`` (>= 0) compares the objective's
  validation score before and after (accuracy; a language model: bits per
  byte): on a larger drop the event is undone, then retried at half the ratio
  (``on_violation='halve'``, up to ``max_halvings`` times) or abandoned
  (``'rollback'``).
  """
  p, state = config.pruning, run.state
  model, optimizer = run.model, run.optimizer
  before_states = states_per_layer(model)
  n_now = sum(before_states.values())
  ratio = pruning.event_ratio(target, n_now, sum(state.initial_states.values()))
  record = pruning.EventRecord(
    status="applied", step=state.step, target=target, ratio=ratio, states_before=before_states
  )
  removed = n_now - max(1, math.floor(n_now * (1 - ratio)))
  if removed <= 0 or removed / max(1, n_now) < p.min_reduction:
    logging.info("pruning event skipped: it would remove %d of %d states", removed, n_now)
    record.status, record.states_after = "skipped", before_states
    return run, record
  record.val_before = steps.evaluate(model, task, "val", mesh)
  options = pruning.PruneOptions.from_config(p, task.seq_len)
  halvings = 0
  while True:
    snapshot = (nnx.clone(model), nnx.clone(optimizer))
    report = pruning.prune(
      model,
      ratio,
      options=options,
      optimizer=optimizer,
      seed=(config.seed, state.epoch_index, halvings),
      calibration=streams.calibration(task, state.epoch_index),
    )
    # Each process prunes its own copy: all must keep the same states.
    distributed.assert_same_on_every_process(
      json.dumps({path: [int(i) for i in layer.kept] for path, layer in report.layers.items()}),
      "the pruning event's keep set",
    )
    distributed.replicate(model, optimizer, mesh=mesh)  # new shapes: place them again
    if p.recalibrate_batches:
      batches = (
        distributed.shard_batch(b[:2], mesh) for b in streams.recalibration(task, state.epoch_index)
      )
      record.recalibrated_batches = batchnorm.recalibrate_batch_norm(
        model, batches, max_batches=p.recalibrate_batches
      )
    val_after = steps.evaluate(model, task, "val", mesh)
    objective = objectives.for_task(task)
    drop = objective.score(record.val_before) - objective.score(val_after)
    if p.max_acc_drop < 0 or drop <= p.max_acc_drop:
      break
    model, optimizer = snapshot
    if p.on_violation == "halve" and halvings < p.max_halvings:
      halvings += 1
      ratio /= 2
      logging.warning(
        "pruning worsened val %s by %.4f > %.4f: retrying at ratio %.4f",
        objective.score_name,
        drop,
        p.max_acc_drop,
        ratio,
      )
      continue
    logging.warning(
      "pruning worsened val %s by %.4f > %.4f: event rolled back",
      objective.score_name,
      drop,
      p.max_acc_drop,
    )
    record.status, record.val_after, record.states_after = "rolled_back", val_after, before_states
    return dataclasses.replace(run, model=model, optimizer=optimizer), record
  logging.info(
    "pruning event (%s, %s, ratio %.4f):\n%s", p.criterion, p.mode, ratio, report.table()
  )
  record.ratio, record.halvings, record.val_after = ratio, halvings, val_after
  record.states_after = states_per_layer(model)
  record.report = json.loads(report.to_json())
  return dataclasses.replace(run, model=model, optimizer=optimizer), record
