"""How long the run will take, told early and told again once an epoch has run.

Steps are dispatched asynchronously, so the time between two dispatches says
nothing about the step. `EarlyEstimate` blocks on the step it measures, twice
in the whole run (after the first, compiling step, and a few steps later), and
extrapolates completed steps. `EpochEstimate` re-estimates from the first
epoch's real wall time (evaluation, watch, events and checkpoints included,
compilation taken out). Both record what they predicted and when, so the
summary can say how close they were (``summary.json['timing']``).
"""

import time

import jax
from absl import logging
from clu import periodic_actions


def duration(seconds: float) -> str:
  """``'1h02m'``, ``'3m07s'``."""
  hours, rest = divmod(int(round(seconds)), 3600)
  return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_reporter(total_steps: int, writer, every_steps: int):
  """Steps/s and ETA in TensorBoard (and the log file) every ``every_steps``."""
  return periodic_actions.ReportProgress(
    num_train_steps=total_steps, writer=writer, every_steps=every_steps, every_secs=None
  )


class TrainClock:
  """Wall time spent in training epochs (``with clock:`` around each; ends synced)."""

  def __init__(self):
    self.total, self.since = 0.0, None

  def __enter__(self):
    self.since = time.time()
    return self

  def __exit__(self, *exc):
    self.total += time.time() - self.since
    self.since = None

  def elapsed(self) -> float:
    return self.total + (time.time() - self.since if self.since is not None else 0.0)


class EarlyEstimate:
  """The cost of the rest of the run from a few completed steps.

  Call it after each dispatched step with that step's output (any pytree of
  arrays); at steps ``first + warmup`` and ``first + warmup + measure`` it waits
  for the output, so the interval times finished steps.
  """

  def __init__(
    self, first_step: int, total_steps: int, clock: TrainClock, warmup: int = 1, measure: int = 4
  ):
    self.total = total_steps
    self.clock = clock  # the training time the prediction is checked against
    self.first_done_at = None  # when the first (compiling) step had finished
    self.start_mark = first_step + warmup
    self.end_mark = first_step + warmup + measure
    self.per_step = None
    self.prediction = None  # dict(at=time, step, rest_s)

  def __call__(self, step: int, steps_per_epoch: int, output) -> None:
    if self.prediction is not None or step not in (self.start_mark, self.end_mark):
      return
    jax.block_until_ready(output)
    now = time.time()
    if step == self.start_mark:
      self.first_done_at = now
      return
    self.per_step = (now - self.first_done_at) / (self.end_mark - self.start_mark)
    rest = self.per_step * (self.total - step)
    self.prediction = dict(step=step, rest_s=rest, train_at=self.clock.elapsed())
    logging.info(
      "measured %.3f s per completed step: one epoch (%d steps) ~ %s of training, "
      "the rest of the run (%d steps) ~ %s (evaluation and events come on top; "
      "re-estimated after the first epoch)",
      self.per_step,
      steps_per_epoch,
      duration(self.per_step * steps_per_epoch),
      self.total - step,
      duration(rest),
    )


class EpochEstimate:
  """The rest of the run from the first epoch this process ran, end to end."""

  def __init__(self):
    self.epoch_started = None
    self.prediction = None

  def start_epoch(self) -> None:
    if self.prediction is None:
      self.epoch_started = time.time()

  def end_epoch(self, epochs_left: int, early: EarlyEstimate | None, label: str) -> None:
    if self.prediction is not None or self.epoch_started is None:
      return
    now = time.time()
    wall = now - self.epoch_started
    compile_s = 0.0
    if early is not None and early.first_done_at is not None and early.per_step is not None:
      # The first step compiled: count it as one ordinary step.
      compile_s = max(0.0, early.first_done_at - self.epoch_started - early.per_step)
    per_epoch = max(0.0, wall - compile_s)
    rest = per_epoch * epochs_left
    self.prediction = dict(at=now, epochs_left=epochs_left, rest_s=rest, epoch_s=per_epoch)
    logging.info(
      "%s took %s (%s of it compiling): the rest of the run (%d epochs) ~ %s",
      label,
      duration(wall),
      duration(compile_s),
      epochs_left,
      duration(rest),
    )


def timing(early: EarlyEstimate | None, epoch: EpochEstimate | None, end: float) -> dict:
  """What each estimate predicted for the rest of the run, against what it took.

  The early estimate is of the training steps alone: its ``actual_s`` is the time
  spent in training epochs after it (``early.clock``); the epoch estimate's is the
  wall time of the rest of the run.
  """
  out = {}
  if early is not None and early.prediction is not None:
    p = early.prediction
    out["early"] = dict(
      predicted_s=p["rest_s"], actual_s=early.clock.elapsed() - p["train_at"], step=p["step"]
    )
  if epoch is not None and epoch.prediction is not None:
    p = epoch.prediction
    out["after_first_epoch"] = dict(
      predicted_s=p["rest_s"],
      actual_s=end - p["at"],
      epochs_left=p["epochs_left"],
      epoch_s=p["epoch_s"],
    )
  return out
