"""What a pruning event did: threshold, per-layer allocation, diagnostics."""

import dataclasses
import json


@dataclasses.dataclass
class LayerReport:
  states_before: int
  states_after: int
  kept: list[int]  # flat slot indices kept (slots as before this event)
  energy_kept: float  # share of the layer's H-inf^2 energy kept
  min_kept_score: float | None

  @property
  def pruned_fraction(self) -> float:
    return 1.0 - self.states_after / max(1, self.states_before)


@dataclasses.dataclass
class PruneReport:
  criterion: str
  mode: str
  ratio_requested: float
  ratio_achieved: float  # fraction of this event's live states removed
  threshold: float | None  # weakest kept score (global allocation), else None
  layers: dict[str, LayerReport]

  @property
  def states_before(self) -> int:
    return sum(l.states_before for l in self.layers.values())

  @property
  def states_after(self) -> int:
    return sum(l.states_after for l in self.layers.values())

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> "PruneReport":
    d = json.loads(text)
    d["layers"] = {k: LayerReport(**v) for k, v in d["layers"].items()}
    return cls(**d)

  def table(self) -> str:
    """A fixed-width per-layer table for logs."""
    rows = [f"{'layer':<16} {'before':>7} {'after':>7} {'pruned':>7} {'energy kept':>12} "
            f"{'min kept score':>15}"]
    for name, l in self.layers.items():
      score = "-" if l.min_kept_score is None else f"{l.min_kept_score:.3e}"
      rows.append(f"{name:<16} {l.states_before:>7d} {l.states_after:>7d} "
                  f"{100 * l.pruned_fraction:>6.1f}% {100 * l.energy_kept:>11.2f}% {score:>15}")
    rows.append(f"{'total':<16} {self.states_before:>7d} {self.states_after:>7d} "
                f"{100 * self.ratio_achieved:>6.1f}%   criterion={self.criterion} "
                f"mode={self.mode} threshold={self.threshold}")
    return "\n".join(rows)
