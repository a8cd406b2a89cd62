"""When to prune and how much (pure).

A `PruningSchedule` names the training epochs after which an event fires and
the cumulative target sparsity ``s`` (fraction of the initial live states
pruned) after each:

* ``none``: no event.
* ``one_shot``: one event after ``start_epoch``, straight to ``target_ratio``.
* ``iterative``: events after ``start_epoch``, every ``every`` epochs, and
  after ``end_epoch`` (always included), ramping like gradual magnitude
  pruning (Zhu & Gupta, 2017):

      cubic:  s(e) = s_f (1 - (1 - t/T)^3)        linear:  s(e) = s_f t/T
      t = e - (start_epoch - every),  T = end_epoch - (start_epoch - every)

  i.e. Zhu & Gupta's ``t_0`` sits one interval before the first event, so that
  event already prunes (rather than pruning to ``s_i = 0``) and the last
  reaches ``s_f`` exactly. The cubic ramp takes large steps first, while the
  model is most redundant, and small ones near the target.
* ``settled``: no fixed epochs. The loop watches, every epoch, which states
  the criterion would keep at ``target_ratio`` (`last_nnx.train.watch`); once
  that keep set has changed by at most ``settle_tolerance`` (``1 - Jaccard``
  with the previous epoch's) for ``settle_epochs`` epochs in a row, the next
  epoch end from ``start_epoch`` on prunes (`settled_target`); at
  ``end_epoch`` it prunes to the target whether settled or not. With
  ``settle_steps > 1`` it gets there in that many events on the ramp above
  (`settle_targets`), each waiting for the keep set of the smaller model to
  settle again. The decision is a pure function of the watch history, which
  checkpoints carry, so a resumed run decides as the uninterrupted one would.

An event removes a fraction of the states *remaining* at that time:
``1 - (1 - s) / (1 - s_now)`` (`event_ratio`).
"""

import dataclasses

from last_nnx.pruning.allocate import check_ratio

KINDS = ("none", "one_shot", "iterative", "settled")
RAMPS = ("cubic", "linear")
_MAX_EVENT_RATIO = 1.0 - 1e-9  # keep event ratios inside [0, 1)


def removal_fraction(target: float, done: float) -> float:
  """Fraction of the remaining states to remove to go from pruned ``done`` to ``target``.

  Both are fractions of the initial states; 0 if ``target <= done``.
  """
  if target <= done:
    return 0.0
  return min(_MAX_EVENT_RATIO, 1.0 - (1.0 - target) / (1.0 - done))


def event_ratio(target: float, states_now: int, states_initial: int) -> float:
  """Fraction of the *current* states to remove to reach a cumulative ``target``.

  Args:
    target: cumulative fraction of the initial states pruned after the event.
    states_now: live states now.
    states_initial: live states of the dense model.
  """
  return removal_fraction(target, 1.0 - states_now / max(1, states_initial))


@dataclasses.dataclass(frozen=True)
class PruningSchedule:
  """See the module docstring. Epochs are 1-based training epochs."""

  kind: str = "one_shot"
  target_ratio: float = 0.3
  start_epoch: int = 1
  end_epoch: int = 1
  every: int = 1
  ramp: str = "cubic"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"pruning.schedule={self.kind!r}; expected one of {KINDS}")
    if self.ramp not in RAMPS:
      raise ValueError(f"pruning.ramp={self.ramp!r}; expected one of {RAMPS}")
    check_ratio(self.target_ratio)
    if self.every < 1:
      raise ValueError(f"pruning.every={self.every} must be at least 1 (epochs between events)")
    if self.kind == "iterative" and self.end_epoch < self.start_epoch:
      raise ValueError(
        f"pruning.end_epoch={self.end_epoch} is before start_epoch={self.start_epoch}"
      )

  def event_epochs(self) -> list[int]:
    """The epochs after which an event fires, in order (``settled``: decided at run time)."""
    if self.kind in ("none", "settled"):
      return []
    if self.kind == "one_shot":
      return [self.start_epoch]
    epochs = list(range(self.start_epoch, self.end_epoch + 1, self.every))
    if epochs[-1] != self.end_epoch:
      epochs.append(self.end_epoch)
    return epochs

  def _ramp(self, epoch: int) -> float:
    t0 = self.start_epoch - self.every
    p = min(1.0, max(0.0, (epoch - t0) / (self.end_epoch - t0)))
    return 1.0 - (1.0 - p) ** 3 if self.ramp == "cubic" else p

  def events(self) -> dict[int, float]:
    """``{epoch: cumulative fraction pruned after that epoch's event}``."""
    if self.kind == "one_shot":
      return {self.start_epoch: self.target_ratio}
    if self.kind == "settled":
      return {}
    return {e: self.target_ratio * self._ramp(e) for e in self.event_epochs()}

  def ratio_at(self, epoch: int) -> float:
    """Cumulative target sparsity once ``epoch``'s event (if any) has fired."""
    done = [r for e, r in self.events().items() if e <= epoch]
    return max(done, default=0.0)

  def event_ratio(self, epoch: int, current_fraction_pruned: float) -> float:
    """Fraction of the remaining states to remove at ``epoch``'s event (0 if none).

    Args:
      epoch: a training epoch.
      current_fraction_pruned: fraction of the initial states already pruned.
    """
    target = self.events().get(epoch)
    if target is None:
      return 0.0
    return removal_fraction(target, current_fraction_pruned)


# ----------------------------------------------------------------------------
# The 'settled' schedule: pure decisions from the watch history.


def jaccard(a, b) -> float:
  """``|a & b| / |a | b|`` of two keep sets (any iterables of hashable state ids); 1 if both
  are empty."""
  a, b = set(a), set(b)
  union = len(a | b)
  return len(a & b) / union if union else 1.0


def settle_targets(target_ratio: float, steps: int = 1, ramp: str = "cubic") -> list[float]:
  """Cumulative targets of the ``steps`` events of a ``settled`` schedule.

  Step ``i`` of ``n`` prunes to ``s_f (1 - (1 - i/n)^3)`` (cubic) or ``s_f i/n``
  (linear): the iterative ramp over event counts instead of epochs. The last is
  ``target_ratio`` exactly.
  """
  check_ratio(target_ratio)
  if steps < 1:
    raise ValueError(f"pruning.settle_steps={steps} must be at least 1")
  if ramp not in RAMPS:
    raise ValueError(f"pruning.ramp={ramp!r}; expected one of {RAMPS}")
  shape = (lambda p: 1.0 - (1.0 - p) ** 3) if ramp == "cubic" else (lambda p: p)
  return [target_ratio * shape(i / steps) for i in range(1, steps)] + [target_ratio]


def is_settled(changes: list, tolerance: float, epochs: int) -> bool:
  """Whether the last ``epochs`` keep-set changes are all known and ``<= tolerance``.

  Args:
    changes: per watched epoch, oldest first, ``1 - Jaccard`` of the keep set with
      the previous epoch's, or None where the two are not comparable (the first
      epoch, or the model changed size or target in between).
    tolerance: the largest change still called stable, in [0, 1).
    epochs: how many stable epochs in a row are needed (>= 1).
  """
  recent = list(changes)[-epochs:]
  return len(recent) == epochs and all(c is not None and c <= tolerance for c in recent)


def settled_target(
  *,
  epoch: int,
  changes: list,
  steps_done: int,
  targets: list[float],
  tolerance: float,
  epochs: int,
  start_epoch: int,
  end_epoch: int,
) -> float | None:
  """The cumulative target to prune to at ``epoch``'s end, or None (no event).

  Args:
    epoch: the training epoch just finished (1-based).
    changes: the watch history's keep-set changes (`is_settled`), this epoch's last.
    steps_done: events of this schedule already taken.
    targets: `settle_targets`.
    tolerance, epochs: `is_settled`.
    start_epoch: no event before this epoch ends.
    end_epoch: the deadline: at its end the run prunes straight to the final target
      if it has not got there.
  """
  if steps_done >= len(targets) or epoch < start_epoch or epoch > end_epoch:
    return None
  if epoch == end_epoch:
    return targets[-1]
  if is_settled(changes, tolerance, epochs):
    return targets[steps_done]
  return None


def settle_window(pcfg, train_epochs: int) -> tuple[int, int]:
  """``(start_epoch, end_epoch)`` of the pruning config, -1 read as the last training epoch."""
  last = lambda e: train_epochs if e < 0 else e
  return last(pcfg.start_epoch), last(pcfg.end_epoch)
