"""When to prune and how much (pure).

A schedule names the training epochs after which an event fires and the
cumulative fraction of the initial states pruned after each. ``iterative``
ramps the fraction over its events like gradual magnitude pruning (Zhu & Gupta,
2017): with progress ``p = k / K`` after event ``k`` of ``K``,
``cubic``: ``s = s_f (1 - (1 - p)^3)`` (large steps first, while the model
is most redundant), ``linear``: ``s = s_f p``.
"""

import dataclasses

from last_nnx.pruning.allocate import check_ratio

KINDS = ("none", "one_shot", "iterative")
RAMPS = ("cubic", "linear")


@dataclasses.dataclass(frozen=True)
class PruningSchedule:
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
    if self.kind == "iterative" and self.end_epoch < self.start_epoch:
      raise ValueError(f"pruning.end_epoch={self.end_epoch} is before "
                       f"start_epoch={self.start_epoch}")

  def events(self) -> dict[int, float]:
    """``{epoch: cumulative fraction pruned after that epoch's event}``."""
    if self.kind == "none":
      return {}
    if self.kind == "one_shot":
      return {self.start_epoch: self.target_ratio}
    epochs = list(range(self.start_epoch, self.end_epoch + 1, max(1, self.every)))
    if epochs[-1] != self.end_epoch:
      epochs.append(self.end_epoch)
    out = {}
    for k, epoch in enumerate(epochs, start=1):
      p = k / len(epochs)
      frac = 1 - (1 - p) ** 3 if self.ramp == "cubic" else p
      out[epoch] = self.target_ratio * frac
    return out

  def ratio_at(self, epoch: int) -> float:
    """Cumulative fraction pruned once ``epoch``'s event (if any) has fired."""
    done = [r for e, r in self.events().items() if e <= epoch]
    return max(done) if done else 0.0


def event_ratio(target: float, states_now: int, states_initial: int) -> float:
  """Fraction of the *current* states to remove to reach a cumulative ``target``."""
  done = 1.0 - states_now / max(1, states_initial)
  if target <= done:
    return 0.0
  return min(1.0 - 1e-9, 1.0 - (1.0 - target) / (1.0 - done))
