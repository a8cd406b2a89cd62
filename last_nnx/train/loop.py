"""The pruning-aware training loop, read top to bottom in `train_and_evaluate`.

Timeline: the run trains ``train.epochs`` epochs. Pruning events fire at the
end of the training epochs the schedule names (``pruning.*``); each event
recomputes the scores from the current weights, prunes, evaluates before and
after, logs the per-layer allocation, and is followed by
``pruning.finetune_epochs`` extra fine-tuning epochs. The learning-rate
schedule spans all epochs, fine-tuning included.

Everything needed to resume lives in the checkpoint: arrays (model, optimizer,
dropout RNG) and a JSON `RunState` (position in the plan, step inside the epoch
for the data pipeline, pruning history, partial metrics). A rerun of the same
command continues from the newest readable checkpoint.
"""

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers, metrics as clu_metrics, parameter_overview, periodic_actions
from flax import nnx

from last_nnx import data, pruning
from last_nnx.model import build_model
from last_nnx.train import metrics as metrics_lib
from last_nnx.train import batchnorm, distributed, regularizers
from last_nnx.train.checkpoint import Checkpointer, resize_layers
from last_nnx.train.optim import make_optimizer


class Diverged(FloatingPointError):
  """The loss or a parameter became NaN/Inf."""


# ----------------------------------------------------------------------------
# The plan: which epochs run, and after which ones a pruning event fires.


@dataclasses.dataclass(frozen=True)
class EpochSpec:
  train_epoch: int  # 1-based training epoch this epoch belongs to
  finetune: bool  # a fine-tuning epoch after an event
  target_ratio: float | None  # cumulative fraction pruned after this epoch's event


def event_targets(pcfg, train_epochs: int) -> dict[int, float]:
  """Training epoch -> cumulative target fraction of the initial states pruned."""
  last = lambda e: train_epochs if e < 0 else e
  return pruning.PruningSchedule(
      kind=pcfg.schedule, target_ratio=pcfg.target_ratio, start_epoch=last(pcfg.start_epoch),
      end_epoch=last(pcfg.end_epoch), every=pcfg.every, ramp=pcfg.ramp).events()


def epoch_plan(config) -> list[EpochSpec]:
  targets = event_targets(config.pruning, config.train.epochs)
  plan = []
  for epoch in range(1, config.train.epochs + 1):
    plan.append(EpochSpec(epoch, False, targets.get(epoch)))
    if epoch in targets:
      plan += [EpochSpec(epoch, True, None)] * config.pruning.finetune_epochs
  return plan


def validate_config(config) -> None:
  """One-line errors for settings that cannot work."""
  p, t = config.pruning, config.train
  if p.schedule not in ("none", "one_shot", "iterative"):
    raise ValueError(f"pruning.schedule={p.schedule!r}: use none, one_shot or iterative")
  if not 0.0 <= p.target_ratio < 1.0:
    raise ValueError(f"pruning.target_ratio={p.target_ratio} must be in [0, 1): it is the "
                     "fraction of states removed (0.3 removes 30%)")
  if p.mode not in ("mask", "compact"):
    raise ValueError(f"pruning.mode={p.mode!r}: use 'mask' or 'compact'")
  if p.criterion not in pruning.registered_criteria():
    raise ValueError(f"pruning.criterion={p.criterion!r} is unknown; registered: "
                     f"{pruning.registered_criteria()}")
  pruning.resolve_horizon(p.horizon, 1)  # raises on a bad setting
  pruning.resolve_horizon(config.regularizer.horizon, 1)
  for name in ("start_epoch", "end_epoch"):
    if getattr(p, name) > t.epochs:
      raise ValueError(f"pruning.{name}={getattr(p, name)} is after the last training epoch "
                       f"(train.epochs={t.epochs})")
  if t.batch_size % config.optim.grad_accum:
    raise ValueError(f"train.batch_size={t.batch_size} must be divisible by "
                     f"optim.grad_accum={config.optim.grad_accum}")


# ----------------------------------------------------------------------------
# Resumable run state (JSON in every checkpoint).


@dataclasses.dataclass
class RunState:
  epoch_index: int = 0  # next entry of the plan to run
  step_in_epoch: int = 0  # data batches of that epoch already consumed
  step: int = 0  # data batches (micro-steps) consumed overall
  lr_scale: float = 1.0
  nan_retries_left: int = 0
  best_val: float = -1.0
  chance_epochs: int = 0
  initial_states: dict = dataclasses.field(default_factory=dict)
  dense: dict = dataclasses.field(default_factory=dict)
  events: list = dataclasses.field(default_factory=list)
  epochs: list = dataclasses.field(default_factory=list)
  partial_train: dict | None = None
  wall_time: float = 0.0


def _metrics_to_json(m) -> dict | None:
  if m is None:
    return None
  return {k: [float(v.total), float(v.count)] for k, v in vars(m).items()
          if isinstance(v, clu_metrics.Average)}


def _metrics_from_json(d) -> Any:
  if d is None:
    return None
  restore = lambda cls, key: cls(total=jnp.float32(d[key][0]), count=jnp.int32(d[key][1]))
  return metrics_lib.ClassificationMetrics.empty().replace(
      loss=restore(clu_metrics.Average, "loss"), accuracy=restore(clu_metrics.Accuracy, "accuracy"),
      penalty=restore(clu_metrics.Average, "penalty"))


# ----------------------------------------------------------------------------
# Compiled steps.


def _loss(model, inputs, lengths, labels, reg_weight, reg):
  logits = model(inputs, lengths)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  penalty = regularizers.penalty(model, reg)
  return loss + reg_weight * penalty, (logits, penalty)


@functools.partial(nnx.jit, static_argnames=("reg",))
def train_step(model, optimizer, inputs, lengths, labels, reg_weight=0.0,
               reg: regularizers.RegularizerSpec = regularizers.RegularizerSpec()):
  """One optimizer micro-step; returns the batch's metrics.

  ``reg`` (static) selects a prunability penalty, ``reg_weight`` (traced, so a
  schedule does not recompile) weighs it.
  """
  (_, (logits, penalty)), grads = nnx.value_and_grad(_loss, has_aux=True)(
      model, inputs, lengths, labels, reg_weight, reg)
  optimizer.update(model, grads)
  return metrics_lib.batch_metrics(logits, labels, penalty=penalty)


@jax.jit
def _all_finite(params) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves))


def check_parameters(model) -> None:
  """Raises `Diverged` naming the first non-finite parameter (checked every step, so the
  culprit is caught before a NaN loss spreads it to every other parameter)."""
  params = nnx.state(model, nnx.Param)
  if not bool(_all_finite(params)):
    raise Diverged(f"non-finite parameter {metrics_lib.first_nonfinite(params)}")


@nnx.jit
def eval_step(model, inputs, lengths, labels, mask):
  return metrics_lib.batch_metrics(model(inputs, lengths), labels, mask)


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
      raise ValueError(f"the {split} split has {task.num_examples[split]} examples, fewer "
                       f"than the {task.process_count} processes: process "
                       f"{task.process_index} has none to evaluate")


def evaluate(model, task, split: str, mesh=None) -> dict[str, float]:
  """Loss and accuracy on ``split`` ('val' or 'test'), dropout off, BN frozen."""
  model.eval()
  total = None
  for batch, mask in eval_batches(task, split):
    batch = distributed.shard_batch(batch + (mask,), mesh)
    total = metrics_lib.merge(total, eval_step(model, *batch))
  model.train()
  return {k.split("/")[1]: v for k, v in metrics_lib.to_floats(total, split).items()
          if not k.endswith("/penalty")}


# ----------------------------------------------------------------------------
# Helpers around pruning.


def states_per_layer(model) -> dict[str, int]:
  return {path: int(np.asarray(layer.state_modes().valid).sum())
          for path, layer in model.prunable_layers().items()}


def ssm_ranges(model) -> dict[str, float]:
  """Ranges of the discretized poles and steps (divergence shows here first)."""
  mags, steps = [], []
  for layer in model.prunable_layers().values():
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


# Epoch index whose batch order BatchNorm recalibration reads (apart from training epochs').
RECALIBRATION_EPOCH = 1 << 20


def pruning_event(model, optimizer, *, target: float, config, run: RunState, task, mesh=None):
  """Prunes toward ``target``; returns ``(model, optimizer, event_record)``.

  With ``pruning.recalibrate_batches > 0`` the BatchNorm statistics are
  re-estimated on that many training batches right after pruning (before the
  "after" evaluation). The guard rail ``pruning.max_acc_drop`` (>= 0) compares
  validation accuracy before and after: on a larger drop the event is undone,
  then retried at half the ratio (``on_violation='halve'``, up to
  ``max_halvings`` times) or abandoned (``'rollback'``).
  """
  p = config.pruning
  before_states = states_per_layer(model)
  n_now = sum(before_states.values())
  ratio = pruning.event_ratio(target, n_now, sum(run.initial_states.values()))
  record = dict(step=run.step, train_epoch=None, target=target, ratio=ratio,
                states_before=before_states, status="applied")
  removed = n_now - max(1, math.floor(n_now * (1 - ratio)))
  if removed <= 0 or removed / max(1, n_now) < p.min_reduction:
    logging.info("pruning event skipped: it would remove %d of %d states", removed, n_now)
    return model, optimizer, dict(record, status="skipped", states_after=before_states)
  val_before = evaluate(model, task, "val", mesh)
  record["val_before"] = val_before
  horizon = pruning.resolve_horizon(p.horizon, task.seq_len)
  halvings = 0
  while True:
    snapshot = (nnx.clone(model), nnx.clone(optimizer))
    report = pruning.prune(model, ratio, criterion=p.criterion, mode=p.mode, optimizer=optimizer,
                           rng=np.random.default_rng([config.seed, run.epoch_index, halvings]),
                           min_per_layer=p.min_per_layer, bidirectional=p.bidirectional,
                           horizon=horizon)
    distributed.replicate(model, optimizer, mesh=mesh)  # new shapes: place them again
    if p.recalibrate_batches:
      batches = (distributed.shard_batch(b[:2], mesh)
                 for b in task.train_batches(RECALIBRATION_EPOCH + run.epoch_index))
      batchnorm.recalibrate_batch_norm(model, batches, max_batches=p.recalibrate_batches)
    val_after = evaluate(model, task, "val", mesh)
    drop = val_before["accuracy"] - val_after["accuracy"]
    if p.max_acc_drop < 0 or drop <= p.max_acc_drop:
      break
    model, optimizer = snapshot
    if p.on_violation == "halve" and halvings < p.max_halvings:
      halvings += 1
      ratio /= 2
      logging.warning("pruning dropped val accuracy by %.4f > %.4f: retrying at ratio %.4f",
                      drop, p.max_acc_drop, ratio)
      continue
    logging.warning("pruning dropped val accuracy by %.4f > %.4f: event rolled back",
                    drop, p.max_acc_drop)
    return model, optimizer, dict(record, status="rolled_back", val_after=val_after,
                                  states_after=before_states)
  logging.info("pruning event (%s, %s, ratio %.4f):\n%s", p.criterion, p.mode, ratio,
               report.table())
  record.update(ratio=ratio, halvings=halvings, val_after=val_after,
                states_after=states_per_layer(model), report=json.loads(report.to_json()))
  return model, optimizer, record


# ----------------------------------------------------------------------------
# Building or restoring the model, optimizer and run state.


def _steps(config, task) -> tuple[int, int]:
  """(micro-steps per epoch, micro-steps per optimizer update)."""
  per_epoch = task.steps_per_epoch
  if config.train.max_steps_per_epoch > 0:
    per_epoch = min(per_epoch, config.train.max_steps_per_epoch)
  accum = config.optim.grad_accum
  return max(accum, per_epoch - per_epoch % accum), accum


def build(config, task, plan, *, lr_scale: float = 1.0, layer_shapes=None):
  model = build_model(config.model, n_classes=task.n_classes, vocab_size=task.vocab_size,
                      in_dim=task.in_dim, retrieval=task.retrieval, seed=config.seed)
  if layer_shapes:
    resize_layers(model, layer_shapes)
  micro, accum = _steps(config, task)
  optimizer, schedules = make_optimizer(
      model, config.optim, total_steps=len(plan) * micro // accum,
      steps_per_epoch=micro // accum, lr_scale=lr_scale)
  return model, optimizer, schedules


# Fields a resumed run may change: where and how often it logs, saves and
# evaluates, and on how many devices. Anything else would silently continue a
# different experiment.
RESUMABLE_CHANGES = ("train.log_every_steps", "train.checkpoint_every_steps",
                     "train.keep_checkpoints", "train.num_devices", "train.eval_batch_size",
                     "train.nan_retries", "train.nan_lr_scale", "train.chance_warning_epochs",
                     "data.cache_dir", "data.cache_real")


def check_same_run(saved: dict, config, directory: str) -> None:
  """Raises when the workdir's checkpoint came from a different config.

  Args:
    saved: the checkpoint's ``config.to_dict()``.
    config: the config of this invocation.
    directory: the checkpoint directory, for the message.
  """
  old, new = _flat(saved), _flat(json.loads(json.dumps(config.to_dict())))  # as saved
  changed = sorted(k for k in old.keys() | new.keys()
                   if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
  if changed:
    diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
    more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
    raise ValueError(f"{directory} holds a run with another config ({diffs}{more}): rerun "
                     "with the same config to resume it, or give a new --workdir")


def restore_or_init(config, task, plan, ckpt: Checkpointer, *, lr_scale: float | None = None):
  """Newest usable checkpoint, or a fresh model. ``lr_scale`` overrides the saved one."""
  latest = ckpt.latest_usable()
  if latest is None:
    run = RunState(nan_retries_left=config.train.nan_retries, lr_scale=lr_scale or 1.0)
    model, optimizer, schedules = build(config, task, plan, lr_scale=run.lr_scale)
    run.initial_states = states_per_layer(model)
    return model, optimizer, schedules, run
  step, meta = latest
  check_same_run(meta["config"], config, ckpt.directory)
  run = RunState(**meta["run"])
  if lr_scale is not None:
    run.lr_scale = lr_scale
  model, optimizer, schedules = build(config, task, plan, lr_scale=run.lr_scale,
                                      layer_shapes=meta["layer_shapes"])
  ckpt.restore(step, model, optimizer)
  logging.info("resumed from %s/%d: epoch %d of %d, step %d, states %s", ckpt.directory, step,
               run.epoch_index + 1, len(plan), run.step, states_per_layer(model))
  return model, optimizer, schedules, run


def _meta(run: RunState, config, task) -> dict:
  """Checkpoint metadata: run position, config, and what rebuilding the model needs."""
  spec = dict(n_classes=task.n_classes, vocab_size=task.vocab_size, in_dim=task.in_dim,
              retrieval=task.retrieval)
  return dict(run=dataclasses.asdict(run), config=config.to_dict(), model_spec=spec)


def _save(ckpt, model, optimizer, run, config, task, t_start):
  run.wall_time += time.time() - t_start[0]
  t_start[0] = time.time()
  ckpt.save(run.step, model, optimizer, _meta(run, config, task))


# ----------------------------------------------------------------------------
# The loop.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, prunes on schedule, checkpoints; returns (and writes) the summary."""
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  accum = config.optim.grad_accum
  mesh = distributed.make_mesh(config.train.num_devices)
  distributed.check_batch(config.train.batch_size // accum, mesh)
  distributed.check_batch(config.train.eval_batch_size, mesh, "train.eval_batch_size")
  # Batch sizes in the config are global; each process reads its share.
  processes = jax.process_count()
  task = data.build_task(config.data, batch_size=config.train.batch_size // accum // processes,
                         eval_batch_size=config.train.eval_batch_size // processes,
                         seed=config.seed, process_index=jax.process_index(),
                         process_count=processes)
  plan = epoch_plan(config)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), config.train.keep_checkpoints)
  best_ckpt = Checkpointer(os.path.join(workdir, "best"), 1)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  model, optimizer, schedules, run = restore_or_init(config, task, plan, ckpt)
  distributed.replicate(model, optimizer, mesh=mesh)
  micro, _ = _steps(config, task)
  if run.step == 0:
    logging.info("parameters:\n%s", parameter_overview.get_parameter_overview(
        nnx.to_pure_dict(nnx.state(model, nnx.Param))))
    writer.write_hparams({k: v for k, v in _flat(config.to_dict()).items()
                          if isinstance(v, (int, float, str, bool))})
  logging.info("plan: %d epochs (%d training, %d pruning events, %d micro-steps each); "
               "states per layer %s", len(plan), config.train.epochs,
               sum(s.target_ratio is not None for s in plan), micro, states_per_layer(model))
  progress = _progress(len(plan) * micro, writer, config)
  r = config.regularizer
  reg = regularizers.RegularizerSpec(kind=r.kind, norm=r.norm, normalize=r.normalize,
                                     horizon=pruning.resolve_horizon(r.horizon, task.seq_len))
  t_start = [time.time()]
  eta = _EarlyEstimate(run.step, len(plan) * micro)

  while run.epoch_index < len(plan):
    spec = plan[run.epoch_index]
    try:
      train_metrics = _metrics_from_json(run.partial_train)
      batches = task.train_batches(run.epoch_index, start_step=run.step_in_epoch)
      for batch in batches:
        if run.step_in_epoch >= micro:
          break
        batch = distributed.shard_batch(batch, mesh)
        reg_weight = regularizers.weight_at(run.epoch_index + run.step_in_epoch / micro,
                                            r.weight, r.schedule, r.ramp_epochs)
        train_metrics = metrics_lib.merge(
            train_metrics, train_step(model, optimizer, *batch, jnp.float32(reg_weight), reg=reg))
        check_parameters(model)
        run.step += 1
        run.step_in_epoch += 1
        progress(run.step)
        eta(run.step, micro)
        if run.step % config.train.log_every_steps == 0:
          scalars = metrics_lib.to_floats(train_metrics, "train")
          _check_finite(scalars, model)
          scalars["lr/regular"] = float(schedules["regular"](run.step // accum))
          writer.write_scalars(run.step, scalars)
        every = config.train.checkpoint_every_steps
        if every and run.step % every == 0 and run.step_in_epoch < micro:
          run.partial_train = _metrics_to_json(train_metrics)
          _save(ckpt, model, optimizer, run, config, task, t_start)
      train_scalars = metrics_lib.to_floats(train_metrics, "train")
      _check_finite(train_scalars, model)
      if reg.kind == "none":
        train_scalars.pop("train/penalty", None)
    except Diverged as e:
      if run.nan_retries_left <= 0 or not ckpt.steps():
        raise Diverged(f"{e}. No retries left: lower optim.ssm_lr, set optim.grad_clip, or "
                       "set model.ssm_config.clip_eigs=True, then rerun") from None
      scale = run.lr_scale * config.train.nan_lr_scale
      retries = run.nan_retries_left - 1
      logging.error("%s: rolling back to the last checkpoint and retrying with lr x%.3g",
                    e, scale)
      model, optimizer, schedules, run = restore_or_init(config, task, plan, ckpt, lr_scale=scale)
      distributed.replicate(model, optimizer, mesh=mesh)
      run.nan_retries_left = retries
      progress = _progress(len(plan) * micro, writer, config)
      continue

    val = evaluate(model, task, "val", mesh)
    scalars = dict(train_scalars, **{f"val/{k}": v for k, v in val.items()}, **ssm_ranges(model))
    scalars["states/total"] = sum(states_per_layer(model).values())
    writer.write_scalars(run.step, scalars)
    logging.info("epoch %d/%d%s: %s", run.epoch_index + 1, len(plan),
                 " (fine-tune)" if spec.finetune else "",
                 ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()))
    run.epochs.append(dict(epoch=run.epoch_index + 1, step=run.step, finetune=spec.finetune,
                           **scalars))
    _warn_if_at_chance(val["accuracy"], task.n_classes, run, config)
    _warn_if_unstable(scalars, config)

    if spec.target_ratio is not None:
      if not run.events:
        run.dense = dict(val=val, states=states_per_layer(model))
        if config.train.eval_test:
          run.dense["test"] = evaluate(model, task, "test", mesh)
      model, optimizer, event = pruning_event(model, optimizer, target=spec.target_ratio,
                                              config=config, run=run, task=task, mesh=mesh)
      event["train_epoch"] = spec.train_epoch
      run.events.append(event)
      states = states_per_layer(model)
      writer.write_scalars(run.step, {f"states/{k}": v for k, v in states.items()})
      if event["status"] == "applied":
        run.best_val = -1.0  # best/ tracks the best model at the current size
        val = event["val_after"]

    run.epoch_index += 1
    run.step_in_epoch = 0
    run.partial_train = None
    improved = val["accuracy"] > run.best_val
    if improved:
      run.best_val = val["accuracy"]
    _save(ckpt, model, optimizer, run, config, task, t_start)
    if improved:
      best_ckpt.save(run.step, model, None, _meta(run, config, task))
    writer.flush()

  ckpt.wait()
  summary = _summary(model, task, run, config, mesh)
  with open(os.path.join(workdir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  logging.info("summary: %s", json.dumps({k: summary[k] for k in (
      "dense", "final", "ratio_achieved", "states_initial", "states_final")}))
  writer.close()
  ckpt.close()
  best_ckpt.close()
  return summary


class _EarlyEstimate:
  """Logs the cost of the whole run after the first few (compiled) steps.

  `ReportProgress` reports every ``log_every_steps``; on a CPU a Path-X step takes
  tens of seconds, so the user is told at once what the run will cost.
  """

  def __init__(self, first_step: int, total_steps: int, warmup: int = 1, measure: int = 2):
    self.total = total_steps
    self.marks = {first_step + warmup: None, first_step + warmup + measure: None}
    self.done = False

  def __call__(self, step: int, steps_per_epoch: int) -> None:
    if self.done or step not in self.marks:
      return
    self.marks[step] = time.time()
    (s0, t0), (s1, t1) = sorted(self.marks.items())
    if t0 is None or t1 is None:
      return
    self.done = True
    per_step = (t1 - t0) / (s1 - s0)
    logging.info("measured %.3f s/step: one epoch (%d steps) ~ %s, the rest of the run "
                 "(%d steps) ~ %s", per_step, steps_per_epoch,
                 _duration(per_step * steps_per_epoch), self.total - step,
                 _duration(per_step * (self.total - step)))


def _duration(seconds: float) -> str:
  hours, rest = divmod(int(seconds), 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _progress(total_steps, writer, config):
  """Steps/s and ETA in the log and TensorBoard."""
  return periodic_actions.ReportProgress(num_train_steps=total_steps, writer=writer,
                                         every_steps=config.train.log_every_steps,
                                         every_secs=None)


def _check_finite(scalars: dict[str, float], model) -> None:
  if all(math.isfinite(v) for v in scalars.values()):
    return
  bad = metrics_lib.first_nonfinite(nnx.state(model, nnx.Param))
  where = f"first non-finite parameter: {bad}" if bad else "parameters still finite"
  raise Diverged(f"non-finite training loss ({where})")


def _warn_if_at_chance(acc: float, n_classes: int, run: RunState, config) -> None:
  chance = metrics_lib.chance_level(n_classes)
  run.chance_epochs = run.chance_epochs + 1 if acc <= chance + 0.02 else 0
  if run.chance_epochs >= config.train.chance_warning_epochs:
    logging.warning("validation accuracy %.3f has sat at chance (%.3f) for %d epochs: on "
                    "Path-X this is the known failure; check dt_min, the lr and the data",
                    acc, chance, run.chance_epochs)


def _warn_if_unstable(scalars: dict, config) -> None:
  """Poles on or past the unit circle: the recurrence no longer forgets, and the state
  norms pruning ranks by are infinite (a penalty on them can push poles there)."""
  largest = scalars.get("ssm/pole_abs_max")
  if largest is not None and largest >= 1.0:
    logging.warning("a discrete pole has |lambda| = %.5f >= 1 (unstable state); set "
                    "model.ssm_config.clip_eigs=True (S5) to keep poles inside the unit "
                    "circle%s", largest,
                    ", or lower regularizer.weight" if config.regularizer.kind != "none" else "")


def _summary(model, task, run: RunState, config, mesh) -> dict:
  final = {"val": evaluate(model, task, "val", mesh)}
  if config.train.eval_test:
    final["test"] = evaluate(model, task, "test", mesh)
  initial, now = run.initial_states, states_per_layer(model)
  return dict(
      task=config.task, model=config.model.ssm, synthetic_data=task.synthetic,
      dense=run.dense or None, final=final, states_initial=initial, states_final=now,
      ratio_achieved=1.0 - sum(now.values()) / max(1, sum(initial.values())),
      pruning_events=[{k: v for k, v in e.items() if k != "report"} for e in run.events],
      epochs=run.epochs, steps=run.step, wall_time_s=run.wall_time)


def _flat(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
