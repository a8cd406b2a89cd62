"""LAST and baseline state pruning for any `PrunableSSM` model.

  from last_nnx import pruning
  scores = pruning.score(model, "last")                    # {layer: (S,) scores}
  report = pruning.prune(model, 0.3, criterion="last", mode="compact",
                         optimizer=optimizer)              # in place
  logging.info("%s", report.table())

Both layer kinds (`last_nnx.ssm.base`): LTI layers are scored from their
`StateModes`, selective ones (Mamba-2) from their `selective.StateStatistics`
(statistics of calibration batches); `applicable(model)` lists the criteria
that apply to a model. See docs/pruning.md.

This module is the table of contents; the engine lives in modules named for
what they hold: `options` (`PruneOptions`, validated once), `pipeline` (score,
allocate, energy kept, apply, report: the one pipeline), `layers` (the layer
traversal), `calibration` (capture of the layers' inputs and the one
accumulator of calibration statistics), `hinf` (per-state H-inf and H2 norms),
`criteria` (the registry of scores), `calibrated`, `selective` and `balanced`
(the data-driven and the reduction criteria), `allocate` (scores -> keep sets),
`apply` (mask or compact a live model and its optimizer), `history` (event
records and replay), `schedule` (when and how much), `report`.
"""

from last_nnx.pruning import balanced, selective  # noqa: F401 (register their criteria)
from last_nnx.pruning.criteria import (
  Criterion,
  get_criterion,
  register_criterion,
  registered_criteria,
)
from last_nnx.pruning.history import EventRecord, PruningEvent, PruningHistory, replay
from last_nnx.pruning.options import PruneOptions
from last_nnx.pruning.pipeline import applicable, needs_calibration, prune, score
from last_nnx.pruning.report import LayerReport, PruneReport
from last_nnx.pruning.schedule import PruningSchedule, event_ratio

__all__ = [
  "Criterion",
  "EventRecord",
  "LayerReport",
  "PruneOptions",
  "PruneReport",
  "PruningEvent",
  "PruningHistory",
  "PruningSchedule",
  "applicable",
  "event_ratio",
  "get_criterion",
  "needs_calibration",
  "prune",
  "register_criterion",
  "registered_criteria",
  "replay",
  "score",
]
