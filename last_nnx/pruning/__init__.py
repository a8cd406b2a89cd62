"""LAST and baseline state pruning for any `PrunableSSM` model.

  scores = pruning.score(model, "last")                      # {layer: (S,) scores}
  report = pruning.prune(model, 0.3, criterion="last", mode="compact",
                         optimizer=optimizer)                # in place
  print(report.table())
"""

import numpy as np
from flax import nnx

from last_nnx.pruning import hinf
from last_nnx.pruning.allocate import allocate_global, allocate_uniform, check_ratio, threshold
from last_nnx.pruning.apply import MODES, apply_keep, compact_optimizer_state
from last_nnx.pruning.criteria import (get_criterion, layer_energy_normalize, layer_scores,
                                       register_criterion, registered_criteria)
from last_nnx.pruning.history import PruningEvent, PruningHistory, replay
from last_nnx.pruning.report import LayerReport, PruneReport
from last_nnx.pruning.schedule import PruningSchedule, event_ratio
from last_nnx.ssm.base import find_prunable_layers


def _layers(model: nnx.Module):
  layers = find_prunable_layers(model)
  if not layers:
    raise ValueError(f"{type(model).__name__} has no prunable SSM layer (no submodule "
                     "implements last_nnx.ssm.PrunableSSM): nothing to score or prune")
  return layers


def _rng(rng) -> np.random.Generator:
  return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def score(model: nnx.Module, criterion: str = "last", *, rng=None,
          bidirectional: str = "sum") -> dict[str, np.ndarray]:
  """Per-layer scores of every state slot.

  Returns:
    ``{layer_path: (S,) float64}``, higher = more important; slots that are
    already pruned (masked or padding) score ``-inf``.
  """
  get_criterion(criterion)
  generator = _rng(rng)
  return {path: layer_scores(layer.state_modes(), criterion, rng=generator,
                             bidirectional=bidirectional)
          for path, layer in _layers(model).items()}


def prune(model: nnx.Module, ratio: float, *, criterion: str = "last", mode: str = "compact",
          optimizer: nnx.Optimizer | None = None, rng=None, min_per_layer: int = 1,
          bidirectional: str = "sum") -> PruneReport:
  """Removes a fraction ``ratio`` of the model's live states, in place.

  Args:
    model: any NNX module with `PrunableSSM` layers.
    ratio: fraction of the live states to remove, in [0, 1).
    criterion: a registered criterion (`registered_criteria()`).
    mode: ``'compact'`` (arrays shrink) or ``'mask'`` (shapes kept).
    optimizer: with ``compact``, its state is sliced like the parameters.
    rng: seed or ``np.random.Generator`` (used by ``random``).
    min_per_layer: states every layer keeps.
    bidirectional: ``'sum'`` or ``'reference'`` (see `pruning.hinf`).

  Returns:
    A `PruneReport`.
  """
  check_ratio(ratio)
  crit = get_criterion(criterion)
  if mode not in MODES:
    raise ValueError(f"unknown pruning mode {mode!r}; expected one of {MODES}")
  layers = _layers(model)
  modes = {path: layer.state_modes() for path, layer in layers.items()}
  scores = score(model, criterion, rng=rng, bidirectional=bidirectional)
  allocate = allocate_uniform if crit.allocation == "uniform" else allocate_global
  keep = allocate(scores, ratio, min_per_layer)
  layer_reports = {}
  for path, mask in keep.items():
    valid = np.asarray(modes[path].valid)
    energy = np.asarray(hinf.hinf_squared(modes[path], bidirectional=bidirectional), np.float64)
    total = energy[valid].sum()
    kept_scores = scores[path][mask]
    layer_reports[path] = LayerReport(
        states_before=int(valid.sum()), states_after=int(mask.sum()),
        kept=[int(i) for i in np.flatnonzero(mask)],
        energy_kept=float(energy[mask].sum() / total) if total > 0 else 1.0,
        min_kept_score=float(kept_scores.min()) if kept_scores.size else None)
  apply_keep(model, keep, mode=mode, optimizer=optimizer)
  before = sum(r.states_before for r in layer_reports.values())
  after = sum(r.states_after for r in layer_reports.values())
  return PruneReport(
      criterion=criterion, mode=mode, ratio_requested=float(ratio),
      ratio_achieved=1.0 - after / max(1, before),
      threshold=threshold(scores, keep) if crit.allocation == "global" else None,
      layers=layer_reports)


__all__ = ["LayerReport", "PruneReport", "PruningEvent", "PruningHistory", "PruningSchedule",
           "apply_keep", "compact_optimizer_state", "event_ratio", "layer_energy_normalize",
           "prune", "register_criterion", "registered_criteria", "replay", "score"]
