"""Pruning history: every event, replayable onto the dense model."""

import dataclasses
import json

import numpy as np
from flax import nnx

from last_nnx.pruning.apply import apply_keep
from last_nnx.pruning.report import PruneReport
from last_nnx.ssm.base import find_prunable_layers


@dataclasses.dataclass
class PruningEvent:
  criterion: str
  ratio: float
  mode: str
  kept: dict[str, list[int]]  # layer -> flat slot indices kept (slots as before the event)


@dataclasses.dataclass
class PruningHistory:
  events: list[PruningEvent] = dataclasses.field(default_factory=list)

  def record(self, report: PruneReport) -> None:
    self.events.append(PruningEvent(report.criterion, report.ratio_requested, report.mode,
                                    {k: list(v.kept) for k, v in report.layers.items()}))

  def to_json(self) -> str:
    return json.dumps([dataclasses.asdict(e) for e in self.events])

  @classmethod
  def from_json(cls, text: str) -> "PruningHistory":
    return cls([PruningEvent(**e) for e in json.loads(text)])


def replay(model: nnx.Module, history: PruningHistory,
           optimizer: nnx.Optimizer | None = None) -> None:
  """Re-applies every recorded event, in order, to a model at its pre-pruning size."""
  for event in history.events:
    layers = find_prunable_layers(model)
    keep = {}
    for path, kept in event.kept.items():
      mask = np.zeros(int(np.prod(layers[path].state_shape)), bool)
      mask[np.asarray(kept, int)] = True
      keep[path] = mask
    apply_keep(model, keep, mode=event.mode, optimizer=optimizer)
