"""What a run is and must remember to resume: `Run`, `RunState`, building or restoring one.

The checkpoint holds the arrays (model, optimizer, dropout RNG) and, as JSON
(`last_nnx.train.checkpoint.CheckpointMeta`), the `RunState` (position in the
plan, step inside the epoch for the data pipeline, pruning history, partial
metrics) with the config it was made with. A `Run` is what the loop carries:
the model, its optimizer and schedules, the `RunState` and the wall clock.
Restoring, rolling back and pruning each hand back a `Run`, so the loop rebinds
one name.
"""

import dataclasses
import json
import time
from typing import Any

import jax.numpy as jnp
from absl import logging
from clu import metrics as clu_metrics

from last_nnx.train import metrics as metrics_lib
from last_nnx.train.checkpoint import Checkpointer, CheckpointMeta, ModelSpec, rebuild_model
from last_nnx.train.events import states_per_layer
from last_nnx.train.optim import make_optimizer
from last_nnx.train.plan import epoch_label


@dataclasses.dataclass
class RunState:
  epoch_index: int = 0  # next entry of the plan to run
  step_in_epoch: int = 0  # data batches of that epoch already consumed
  step: int = 0  # data batches (micro-steps) consumed overall
  lr_scale: float = 1.0
  nan_retries_left: int = 0
  best_val: float | None = None  # the objective's best validation score at the current size
  chance_epochs: int = 0
  initial_states: dict = dataclasses.field(default_factory=dict)
  dense: dict = dataclasses.field(default_factory=dict)
  events: list = dataclasses.field(default_factory=list)
  epochs: list = dataclasses.field(default_factory=list)
  partial_train: dict | None = None
  watch: list = dataclasses.field(default_factory=list)  # per-epoch records (train/watch.py)
  wall_time: float = 0.0


class WallClock:
  """Wall time since the last `lap` (what `save` adds to ``RunState.wall_time``)."""

  def __init__(self):
    self.since = time.time()

  def lap(self) -> float:
    now = time.time()
    elapsed, self.since = now - self.since, now
    return elapsed


@dataclasses.dataclass
class Run:
  """What the training loop carries from phase to phase.

  Attributes:
    model: the (possibly pruned) model, trained in place.
    optimizer: its ``nnx.Optimizer``.
    schedules: the learning-rate schedules by role (`last_nnx.train.optim`).
    state: the `RunState` a checkpoint records.
    clock: wall time not yet added to ``state.wall_time``.
  """

  model: Any
  optimizer: Any
  schedules: dict
  state: RunState
  clock: WallClock = dataclasses.field(default_factory=WallClock)


def metrics_to_json(m) -> dict | None:
  if m is None:
    return None
  return {
    k: [float(v.total), float(v.count)]
    for k, v in vars(m).items()
    if isinstance(v, clu_metrics.Average)
  }


def metrics_from_json(d) -> Any:
  if d is None:
    return None
  restore = lambda cls, key: cls(total=jnp.float32(d[key][0]), count=jnp.int32(d[key][1]))
  return metrics_lib.ClassificationMetrics.empty().replace(
    loss=restore(clu_metrics.Average, "loss"),
    accuracy=restore(clu_metrics.Accuracy, "accuracy"),
    penalty=restore(clu_metrics.Average, "penalty"),
  )


def micro_steps(config, task) -> tuple[int, int]:
  """(micro-steps per epoch, micro-steps per optimizer update)."""
  per_epoch = task.steps_per_epoch
  if config.train.max_steps_per_epoch > 0:
    per_epoch = min(per_epoch, config.train.max_steps_per_epoch)
  accum = config.optim.grad_accum
  return max(accum, per_epoch - per_epoch % accum), accum


def build(config, task, plan, *, lr_scale: float = 1.0, layer_shapes=None):
  """``(model, optimizer, schedules)``: the model of the config (at ``layer_shapes``, a
  checkpoint's), and its optimizer over the whole plan."""
  model = rebuild_model(config, ModelSpec.of_task(task), layer_shapes)
  micro, accum = micro_steps(config, task)
  optimizer, schedules = make_optimizer(
    model,
    config.optim,
    total_steps=len(plan) * micro // accum,
    steps_per_epoch=micro // accum,
    lr_scale=lr_scale,
  )
  return model, optimizer, schedules


# Fields a resumed run may change: where and how often it logs, saves and
# evaluates, and on how many devices and processes. Anything else would silently continue a
# different experiment.
RESUMABLE_CHANGES = (
  "train.log_every_steps",
  "train.checkpoint_every_steps",
  "train.keep_checkpoints",
  "train.num_devices",
  "train.eval_batch_size",
  "train.coordinator_address",
  "train.num_processes",
  "train.process_id",
  "train.nan_retries",
  "train.nan_lr_scale",
  "train.chance_warning_epochs",
  "train.memory_budget_gb",
  "data.cache_dir",
  "data.cache_real",
  "watch.histograms",
)


def check_same_run(saved: dict, config, directory: str) -> None:
  """Raises when the workdir's checkpoint came from a different config.

  Args:
    saved: the checkpoint's ``config.to_dict()``.
    config: the config of this invocation.
    directory: the checkpoint directory, for the message.
  """
  old, new = flat_config(saved), flat_config(json.loads(json.dumps(config.to_dict())))  # as saved
  changed = sorted(
    k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES
  )
  if changed:
    diffs = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
    more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
    raise ValueError(
      f"{directory} holds a run with another config ({diffs}{more}): rerun "
      "with the same config to resume it, or give a new --workdir"
    )


def restore_or_init(
  config,
  task,
  plan,
  ckpt: Checkpointer,
  *,
  lr_scale: float | None = None,
  clock: WallClock | None = None,
) -> Run:
  """The `Run` of the newest usable checkpoint, or a fresh one.

  ``lr_scale`` overrides the saved one; ``clock`` (a roll-back's) goes on ticking.
  """
  clock = clock or WallClock()
  latest = ckpt.latest_usable()
  if latest is None:
    state = RunState(nan_retries_left=config.train.nan_retries, lr_scale=lr_scale or 1.0)
    model, optimizer, schedules = build(config, task, plan, lr_scale=state.lr_scale)
    state.initial_states = states_per_layer(model)
    return Run(model, optimizer, schedules, state, clock)
  step, raw = latest
  meta = CheckpointMeta.from_dict(raw)
  check_same_run(meta.config, config, ckpt.directory)
  state = RunState(**meta.run)
  if lr_scale is not None:
    state.lr_scale = lr_scale
  model, optimizer, schedules = build(
    config, task, plan, lr_scale=state.lr_scale, layer_shapes=meta.layer_shapes
  )
  ckpt.restore(step, model, optimizer)
  where = (
    epoch_label(plan, state.epoch_index) if state.epoch_index < len(plan) else "the end of the plan"
  )
  logging.info(
    "resumed from %s/%d: continuing at %s (step %d in it), step %d overall; states %s",
    ckpt.directory,
    step,
    where,
    state.step_in_epoch,
    state.step,
    states_per_layer(model),
  )
  return Run(model, optimizer, schedules, state, clock)


def divergence_message(error: Exception, run: RunState, config, has_checkpoint: bool) -> str:
  """The one line a run that diverged with no retries left ends with: what diverged,
  what to change, and whether the rerun can use the same workdir."""
  tried = f" (already retried at lr x{run.lr_scale:.3g})" if run.lr_scale < 1 else ""
  fixes = [f"lower optim.ssm_lr (now {config.optim.ssm_lr:g})", "set optim.grad_clip"]
  if "clip_eigs" in config.model.ssm_config and not config.model.ssm_config.clip_eigs:
    fixes.append("set model.ssm_config.clip_eigs=True")
  # A changed config cannot resume this one's checkpoints (`check_same_run`).
  where = (
    "in a new --workdir (this one's checkpoints belong to the current config)"
    if has_checkpoint
    else "(this workdir holds no checkpoint: the rerun starts afresh)"
  )
  return (
    f"training diverged at step {run.step}: {error}{tried}; no retries left "
    f"(train.nan_retries={config.train.nan_retries}): {', '.join(fixes[:-1])} or "
    f"{fixes[-1]}, then rerun {where}"
  )


def checkpoint_meta(state: RunState, config, task) -> CheckpointMeta:
  """Checkpoint metadata: run position, config, and what rebuilding the model needs."""
  return CheckpointMeta(
    config=config.to_dict(), model_spec=ModelSpec.of_task(task), run=dataclasses.asdict(state)
  )


def save(ckpt: Checkpointer, run: Run, config, task) -> None:
  """Checkpoints ``run`` (its wall time brought up to date first)."""
  run.state.wall_time += run.clock.lap()
  ckpt.save(run.state.step, run.model, run.optimizer, checkpoint_meta(run.state, config, task))


def flat_config(d: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flat_config(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out
