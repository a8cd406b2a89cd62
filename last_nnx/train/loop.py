"""The pruning-aware training loop, read top to bottom in `train_and_evaluate`.

Timeline: the run trains ``train.epochs`` epochs. Pruning events fire at the
end of the training epochs the schedule names (``pruning.*``); each event
recomputes the scores from the current weights, prunes, evaluates before and
after, logs the per-layer allocation, and is followed by
``pruning.finetune_epochs`` extra fine-tuning epochs. The learning-rate
schedule spans all epochs, fine-tuning included. Before any event, every epoch
end is watched (`watch`: per-layer scores, the would-be keep set and its
overlap with the last epoch's); the ``settled`` schedule prunes when that keep
set stops changing.

Steps are dispatched without waiting on them: batches are put on the devices
two ahead, the step donates model and optimizer state, and metrics and the
finiteness check stay on the device until a sync point (logging, checkpoint,
epoch end). A divergence rolls back to the last checkpoint, which was written
only after such a check passed.

Everything needed to resume lives in the checkpoint: arrays (model, optimizer,
dropout RNG) and a JSON `RunState` (position in the plan, step inside the epoch
for the data pipeline, pruning history, partial metrics). A rerun of the same
command continues from the newest readable checkpoint.
"""

import dataclasses
import itertools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from clu import metric_writers, periodic_actions

from last_nnx import data
from last_nnx.pruning.hinf import resolve_horizon
from last_nnx.train import (
  baseline,
  distributed,
  memory,
  objectives,
  preemption,
  regularizers,
  steps,
  story,
  streams,
  watch,
)
from last_nnx.train import progress as progress_lib
from last_nnx.train import summary as summary_lib
from last_nnx.train.checkpoint import Checkpointer
from last_nnx.train.console import DETAIL
from last_nnx.train.events import pruning_event, ssm_ranges, states_per_layer
from last_nnx.train.plan import EpochSpec, epoch_label, epoch_plan, event_target, validate_config
from last_nnx.train.run_state import (
  Run,
  checkpoint_meta,
  divergence_message,
  metrics_from_json,
  metrics_to_json,
  micro_steps,
  restore_or_init,
  save,
)
from last_nnx.train.steps import Diverged, TrainCarry, check_health

# ----------------------------------------------------------------------------
# The loop.


@dataclasses.dataclass
class Context:
  """What stays fixed through a run: its config, data, devices and outputs
  (and the progress reporters, which start again after a roll-back)."""

  config: ml_collections.ConfigDict
  task: data.Task
  plan: list
  mesh: jax.sharding.Mesh | None
  micro: int  # data batches per epoch
  reg: regularizers.RegularizerSpec
  writer: metric_writers.MetricWriter
  ckpt: Checkpointer
  best_ckpt: Checkpointer
  objective: objectives.Classification = steps.CLASSIFICATION  # the task's, chosen once
  workdir: str = ""
  progress: periodic_actions.ReportProgress | None = None
  eta: progress_lib.EarlyEstimate | None = None
  epoch_eta: progress_lib.EpochEstimate = dataclasses.field(
    default_factory=progress_lib.EpochEstimate
  )
  train_clock: progress_lib.TrainClock = dataclasses.field(default_factory=progress_lib.TrainClock)
  stop: preemption.StopRequest = dataclasses.field(default_factory=preemption.active)

  def start_progress(self, step: int) -> None:
    total = len(self.plan) * self.micro
    self.progress = progress_lib.progress_reporter(
      total, self.writer, self.config.train.log_every_steps
    )
    self.eta = progress_lib.EarlyEstimate(step, total, self.train_clock)


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, final_table: bool = True
) -> dict:
  """Trains, prunes on schedule, checkpoints; returns (and writes) the summary.

  With ``pruning.dense_baseline`` it then trains the dense baseline
  (`last_nnx.train.baseline`). ``final_table`` logs the result table last.
  """
  ctx = setup(config, workdir)
  run = restore_or_init(config, ctx.task, ctx.plan, ctx.ckpt)
  distributed.replicate(run.model, run.optimizer, mesh=ctx.mesh)
  if run.state.step == 0:
    story.log_parameters(run.model, ctx.writer, ctx.config)
  story.log_plan(ctx.config, ctx.plan, ctx.micro, run.model)
  memory.check_run_fits(
    config, run.model, run.optimizer, ctx.task, ctx.mesh, ctx.reg, ctx.objective
  )
  ctx.start_progress(run.state.step)
  run.clock.lap()  # the run's wall time counts from here
  while run.state.epoch_index < len(ctx.plan):
    spec = ctx.plan[run.state.epoch_index]
    ctx.epoch_eta.start_epoch()
    try:
      with ctx.train_clock:
        train_scalars = train_epoch(ctx, run)
    except Diverged as e:
      run = roll_back(ctx, e, run)
      continue
    val = evaluate_epoch(ctx, run, spec, train_scalars)
    watch.epoch_end(ctx, run.model, run.state, spec)
    target = event_target(ctx.config, spec, run.state)
    if target is not None:
      run, val = prune_event(ctx, run, spec, val, target)
    end_epoch(ctx, run, val)
    if signum := ctx.stop.due(run.state.step, 0, boundary=True):  # the epoch end has saved
      raise ctx.stop.stopped(signum, run.state.step, ctx.ckpt, ctx.best_ckpt, writer=ctx.writer)
  return finish(ctx, run, workdir, final_table)


def setup(config, workdir: str) -> Context:
  """Starts a multi-host run's processes; validates the config; builds the mesh, the
  data, the plan, checkpointers, writer (summaries from process 0 only)."""
  distributed.initialize(config.train)
  validate_config(config)
  os.makedirs(workdir, exist_ok=True)
  accum = config.optim.grad_accum
  mesh = distributed.make_mesh(config.train.num_devices)
  distributed.check_batch(config.train.batch_size // accum, mesh)
  distributed.check_batch(config.train.eval_batch_size, mesh, "train.eval_batch_size")
  # Batch sizes in the config are global; each process reads its share.
  processes = jax.process_count()
  task = data.build_task(
    config.data,
    batch_size=config.train.batch_size // accum // processes,
    eval_batch_size=config.train.eval_batch_size // processes,
    seed=config.seed,
    process_index=jax.process_index(),
    process_count=processes,
  )
  r = config.regularizer
  reg = regularizers.RegularizerSpec(
    kind=r.kind,
    norm=r.norm,
    normalize=r.normalize,
    horizon=resolve_horizon(r.horizon, task.seq_len),
  )
  objective = objectives.for_task(task)
  objective.check(config.model, task)  # before anything is written
  return Context(
    config=config,
    task=task,
    plan=epoch_plan(config),
    mesh=mesh,
    objective=objective,
    micro=micro_steps(config, task)[0],
    reg=reg,
    writer=metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0),
    ckpt=Checkpointer(os.path.join(workdir, "checkpoints"), config.train.keep_checkpoints),
    best_ckpt=Checkpointer(os.path.join(workdir, "best"), 1),
    workdir=workdir,
  )


def train_epoch(ctx: Context, run: Run) -> dict:
  """Runs the rest of the current epoch's micro-steps; returns its train scalars.

  Steps are dispatched back to back; the host reads metrics and the finiteness
  latch only every ``log_every_steps`` and before each checkpoint.
  """
  config, micro = ctx.config, ctx.micro
  accum = config.optim.grad_accum
  r = config.regularizer
  model, state = run.model, run.state
  carry = TrainCarry.start(model, metrics_from_json(state.partial_train))
  step = steps.bound_train_step(model, run.optimizer)  # shapes are fixed within an epoch
  reg_weight = _DeviceScalar()
  batches = itertools.islice(
    streams.training(ctx.task, state.epoch_index, start_step=state.step_in_epoch),
    max(0, micro - state.step_in_epoch),
  )
  for batch in distributed.prefetch_to_device(batches, ctx.mesh):
    weight = reg_weight(
      regularizers.weight_at(
        state.epoch_index + state.step_in_epoch / micro, r.weight, r.schedule, r.ramp_epochs
      )
    )
    carry = step(carry, *batch, weight, reg=ctx.reg, objective=ctx.objective)
    state.step += 1
    state.step_in_epoch += 1
    ctx.progress(state.step)
    ctx.eta(state.step, micro, carry)
    if state.step % config.train.log_every_steps == 0:
      scalars = _checked_scalars(model, carry, ctx.objective)
      scalars["lr/regular"] = float(run.schedules["regular"](state.step // accum))
      ctx.writer.write_scalars(state.step, scalars)
    every = config.train.checkpoint_every_steps
    mid_epoch = state.step_in_epoch < micro  # else the epoch end saves (and may stop)
    signum = mid_epoch and ctx.stop.due(state.step, config.train.log_every_steps)
    if (every and state.step % every == 0 and mid_epoch) or signum:
      _checked_scalars(model, carry, ctx.objective)  # never checkpoint a diverged state
      state.partial_train = metrics_to_json(carry.metrics)
      save(ctx.ckpt, run, config, ctx.task)
    if signum:
      raise ctx.stop.stopped(signum, state.step, ctx.ckpt, ctx.best_ckpt, writer=ctx.writer)
  train_scalars = _checked_scalars(model, carry, ctx.objective)
  if ctx.reg.kind == "none":
    train_scalars.pop("train/penalty", None)
  return train_scalars


class _DeviceScalar:
  """A float32 scalar on the device, put there again only when its value changes
  (the penalty weight is constant, or zero, for most of a run)."""

  def __init__(self):
    self.value, self.array = None, None

  def __call__(self, value: float) -> jax.Array:
    if value != self.value:
      self.value, self.array = value, jnp.float32(value)
    return self.array


def _checked_scalars(model, carry: TrainCarry, objective=steps.CLASSIFICATION) -> dict[str, float]:
  """A sync point: the running train metrics, after the finiteness checks."""
  check_health(model, carry)
  scalars = {f"train/{k}": v for k, v in objective.scalars(carry.metrics, "train").items()}
  if not all(math.isfinite(v) for v in scalars.values()):
    raise Diverged("non-finite training loss (parameters still finite)")
  return scalars


def roll_back(ctx: Context, error: Diverged, run: Run) -> Run:
  """After a divergence: the last checkpoint, with a lower learning rate.

  Before the first checkpoint the retry starts again from the initial weights:
  `restore_or_init` rebuilds them from the seed (and the data order from the
  plan), as the first try did, so this is an exact restart at the lower rate;
  it counts against ``train.nan_retries`` like any roll-back. (Giving up
  instead would only make the user rerun by hand what this does.)

  Raises:
    Diverged: no retries left; its one-line message says what to change and
      whether the workdir can be reused.
  """
  config, state = ctx.config, run.state
  ctx.ckpt.wait()  # an asynchronous save still in flight is a checkpoint to go back to
  has_checkpoint = ctx.ckpt.latest_usable() is not None
  if state.nan_retries_left <= 0:
    raise Diverged(divergence_message(error, state, config, has_checkpoint)) from None
  scale = state.lr_scale * config.train.nan_lr_scale
  retries = state.nan_retries_left - 1
  logging.error(
    "%s at step %d: %s and retrying with lr x%.3g",
    error,
    state.step,
    "rolling back to the last checkpoint"
    if has_checkpoint
    else "no checkpoint yet, starting again from the initial weights",
    scale,
  )
  run = restore_or_init(config, ctx.task, ctx.plan, ctx.ckpt, lr_scale=scale, clock=run.clock)
  distributed.replicate(run.model, run.optimizer, mesh=ctx.mesh)
  run.state.nan_retries_left = retries
  ctx.start_progress(run.state.step)
  return run


def evaluate_epoch(ctx: Context, run: Run, spec: EpochSpec, train_scalars) -> dict:
  """Validation at the epoch end: logged, recorded in the run, warned about."""
  model, state = run.model, run.state
  val = steps.evaluate(model, ctx.task, "val", ctx.mesh)
  scalars = dict(train_scalars, **{f"val/{k}": v for k, v in val.items()}, **ssm_ranges(model))
  scalars["states/total"] = sum(states_per_layer(model).values())
  ctx.writer.write_scalars(state.step, scalars)
  label = epoch_label(ctx.plan, state.epoch_index)
  logging.info("%s: %s", label, ", ".join(f"{k} {v:.4g}" for k, v in scalars.items()), extra=DETAIL)
  logging.info("%s", story.epoch_line(label, scalars, ctx.objective))
  state.epochs.append(
    dict(
      epoch=state.epoch_index + 1,
      train_epoch=spec.train_epoch,
      step=state.step,
      finetune=spec.finetune,
      **scalars,
    )
  )
  story.warn_if_at_chance(val, ctx.objective.chance_level(ctx.task), state, ctx.config)
  story.warn_if_unstable(scalars, ctx.config)
  return val


def prune_event(
  ctx: Context, run: Run, spec: EpochSpec, val: dict, target: float
) -> tuple[Run, dict]:
  """The scheduled pruning event after this epoch; returns the run that goes on and
  the validation metrics of its model."""
  state = run.state
  if not state.events:
    state.dense = dict(val=val, states=states_per_layer(run.model), epoch=spec.train_epoch)
    if ctx.config.train.eval_test:
      state.dense["test"] = steps.evaluate(run.model, ctx.task, "test", ctx.mesh)
    if ctx.config.pruning.get("dense_baseline", False):  # it starts here, not from scratch
      baseline.fork(ctx.config, ctx.workdir, len(ctx.plan), run, val, ctx.task, ctx.best_ckpt)
  run, event = pruning_event(run, target=target, config=ctx.config, task=ctx.task, mesh=ctx.mesh)
  event.train_epoch = spec.train_epoch
  state.events.append(event.to_dict())
  ctx.writer.write_scalars(
    state.step, {f"states/{k}": v for k, v in states_per_layer(run.model).items()}
  )
  if event.status == "applied":
    state.best_val = None  # best/ tracks the best model at the current size
    val = event.val_after
  return run, val


def end_epoch(ctx: Context, run: Run, val: dict) -> None:
  """Advances the plan and checkpoints (and the best model at the current size)."""
  state = run.state
  state.epoch_index += 1
  state.step_in_epoch = 0
  state.partial_train = None
  score = ctx.objective.score(val)
  improved = state.best_val is None or score > state.best_val
  if improved:
    state.best_val = score
  save(ctx.ckpt, run, ctx.config, ctx.task)
  if improved:
    ctx.best_ckpt.save(state.step, run.model, None, checkpoint_meta(state, ctx.config, ctx.task))
  ctx.writer.flush()
  ctx.epoch_eta.end_epoch(
    len(ctx.plan) - state.epoch_index, ctx.eta, epoch_label(ctx.plan, state.epoch_index - 1)
  )


def finish(ctx: Context, run: Run, workdir: str, final_table: bool = True) -> dict:
  """Final evaluation and summary.json (one process), the dense baseline if asked for,
  the result table last."""
  ctx.ckpt.wait()
  timing = progress_lib.timing(ctx.eta, ctx.epoch_eta, time.time())
  summary = summary_lib.build(
    run.model, ctx.task, run.state, ctx.config, ctx.mesh, len(ctx.plan), timing
  )
  ctx.writer.close()
  ctx.ckpt.close()
  ctx.best_ckpt.close()
  _write_summary(summary, workdir)
  if ctx.config.pruning.get("dense_baseline", False):
    summary["dense_baseline"] = baseline.train_dense_baseline(
      ctx.config, workdir, len(ctx.plan), train_and_evaluate
    )
    _write_summary(summary, workdir)
  logging.info(
    "summary: %s",
    json.dumps(
      {
        k: summary[k]
        for k in ("before_first_event", "final", "dense_baseline", "ratio_achieved", "timing")
      }
    ),
    extra=DETAIL,
  )
  if final_table:
    logging.info("%s", summary_lib.result_table(summary, ctx.config.pruning.criterion))
  return summary


def _write_summary(summary: dict, workdir: str) -> None:
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
