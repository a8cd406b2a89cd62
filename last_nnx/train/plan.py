"""The plan of a run: which epochs run, and after which ones a pruning event fires.

A plan is a list of `EpochSpec`: the ``train.epochs`` training epochs, each
followed, when the schedule prunes after it, by ``pruning.finetune_epochs``
fine-tuning epochs. The loop's position in it (``RunState.epoch_index``) is
what a checkpoint records.

The ``settled`` schedule decides its events at run time, so its plan only
marks where an event may fire: the training epochs from ``start_epoch`` to
``end_epoch`` (the deadline) have ``settle=True``, and at each of them
`event_target` reads the watch's history (`last_nnx.train.watch`) to decide. Its fine-tuning epochs
(``pruning.finetune_epochs``) follow the deadline, so the plan, and with it the
learning-rate schedule and the step count, is fixed before the run starts;
when the event fires earlier, the training epochs after it train the smaller model.
"""

import dataclasses

from absl import logging

from last_nnx import pruning
from last_nnx.pruning.hinf import resolve_horizon
from last_nnx.pruning.schedule import is_settled, settle_targets, settle_window, settled_target
from last_nnx.ssm import ssm_kind
from last_nnx.train.watch import unwatchable, watchable, watched_criterion


@dataclasses.dataclass(frozen=True)
class EpochSpec:
  train_epoch: int  # 1-based training epoch this epoch belongs to
  finetune: bool  # a fine-tuning epoch after an event
  target_ratio: float | None  # cumulative fraction pruned after this epoch's event
  settle: bool = False  # 'settled' schedule: an event may fire here (decided at run time)


def event_targets(pcfg, train_epochs: int) -> dict[int, float]:
  """Training epoch -> cumulative target fraction of the initial states pruned."""
  last = lambda e: train_epochs if e < 0 else e
  return pruning.PruningSchedule(
    kind=pcfg.schedule,
    target_ratio=pcfg.target_ratio,
    start_epoch=last(pcfg.start_epoch),
    end_epoch=last(pcfg.end_epoch),
    every=pcfg.every,
    ramp=pcfg.ramp,
  ).events()


def epoch_plan(config) -> list[EpochSpec]:
  p, epochs = config.pruning, config.train.epochs
  if p.schedule == "settled":
    start, end = settle_window(p, epochs)
    plan = [EpochSpec(e, False, None, settle=start <= e <= end) for e in range(1, epochs + 1)]
    plan[end:end] = [EpochSpec(end, True, None)] * p.finetune_epochs
    return plan
  targets = event_targets(config.pruning, config.train.epochs)
  plan = []
  for epoch in range(1, config.train.epochs + 1):
    plan.append(EpochSpec(epoch, False, targets.get(epoch)))
    if epoch in targets:
      plan += [EpochSpec(epoch, True, None)] * config.pruning.finetune_epochs
  return plan


def event_target(config, spec: EpochSpec, run) -> float | None:
  """The cumulative target of the pruning event to run after epoch ``spec``, or None.

  The plan's for the fixed schedules; for ``settled``, the decision of
  `last_nnx.pruning.schedule.settled_target` on the watch history of ``run``
  (a `RunState`: its ``watch`` records and the ``events`` done so far).
  """
  p = config.pruning
  if p.schedule != "settled":
    return spec.target_ratio
  if not spec.settle:
    return None
  changes = [None if r["overlap_prev"] is None else 1.0 - r["overlap_prev"] for r in run.watch]
  start, end = settle_window(p, config.train.epochs)
  target = settled_target(
    epoch=spec.train_epoch,
    changes=changes,
    steps_done=len(run.events),
    targets=settle_targets(p.target_ratio, p.settle_steps, p.ramp),
    tolerance=p.settle_tolerance,
    epochs=p.settle_epochs,
    start_epoch=start,
    end_epoch=end,
  )
  if target is not None:
    stable = is_settled(changes, p.settle_tolerance, p.settle_epochs)
    logging.info(
      "settled schedule: %s after epoch %d: pruning to %.1f%%",
      "keep set stable" if stable else "deadline reached",
      spec.train_epoch,
      100 * target,
    )
  return target


def validate_config(config) -> None:
  """One-line errors for settings that cannot work."""
  p, t = config.pruning, config.train
  for name in ("start_epoch", "end_epoch"):
    if p.schedule != "none" and getattr(p, name) > t.epochs:
      raise ValueError(
        f"pruning.{name}={getattr(p, name)} is after the last training epoch "
        f"(train.epochs={t.epochs})"
      )
  event_targets(p, t.epochs)  # the schedule's own checks (`pruning.PruningSchedule`)
  pruning.PruneOptions.from_config(p, 1)  # the event's (`pruning.PruneOptions`)
  resolve_horizon(config.regularizer.horizon, 1)
  validate_watch(config)
  if t.batch_size % config.optim.grad_accum:
    raise ValueError(
      f"train.batch_size={t.batch_size} must be divisible by "
      f"optim.grad_accum={config.optim.grad_accum}"
    )


def validate_watch(config) -> None:
  """The watch options, and what the ``settled`` schedule needs of them."""
  p, w = config.pruning, config.watch
  if w.criterion and w.criterion not in pruning.registered_criteria():
    raise ValueError(
      f"watch.criterion={w.criterion!r} is unknown; registered: "
      f"{pruning.registered_criteria()} ('' watches pruning.criterion)"
    )
  if p.schedule != "settled":
    return
  kind = ssm_kind(config.model.ssm)
  reason = unwatchable(watched_criterion(config), kind)
  if not w.enabled or reason:
    raise ValueError(
      "pruning.schedule='settled' prunes when the watched keep set stops "
      f"changing: {reason or 'watch.enabled is False'}; set watch.enabled=True "
      f"and watch.criterion to a data-free one ({', '.join(watchable(kind))})"
    )
  if not 0.0 <= p.settle_tolerance < 1.0:
    raise ValueError(
      f"pruning.settle_tolerance={p.settle_tolerance} must be in [0, 1): the "
      "largest keep-set change (1 - Jaccard) still called stable"
    )
  for name in ("settle_epochs", "settle_steps"):
    if getattr(p, name) < 1:
      raise ValueError(f"pruning.{name}={getattr(p, name)} must be at least 1")
  start, end = settle_window(p, config.train.epochs)
  if end < start:
    raise ValueError(f"pruning.end_epoch={end} (the deadline) is before start_epoch={start}")


def epoch_label(plan: list[EpochSpec], index: int) -> str:
  """How the log names plan entry ``index``: ``'epoch 3/5'`` for a training
  epoch, ``'fine-tune 1/2 after epoch 3/5'`` for a fine-tuning one (a plan
  entry count would read "epoch 7 of 5" once fine-tuning epochs are added)."""
  spec = plan[index]
  epochs = max(s.train_epoch for s in plan)
  label = f"epoch {spec.train_epoch}/{epochs}"
  if not spec.finetune:
    return label
  same = [i for i, s in enumerate(plan) if s.finetune and s.train_epoch == spec.train_epoch]
  return f"fine-tune {same.index(index) + 1}/{len(same)} after {label}"
