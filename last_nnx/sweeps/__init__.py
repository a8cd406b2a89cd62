"""Sweeps over a trained model: one-shot curves, iterative schedules, how-far searches.

  from last_nnx import sweeps
  store = sweeps.PointStore("runs/listops-s5/sweep")
  sweeps.one_shot(model, task, config, store, ratios=[0.3, 0.5], criteria=["last"], seeds=1)
  sweeps.write_report(store, "runs/listops-s5/sweep", synthetic=task.synthetic, model=model)

Modules: `points` (what is measured, stored once per point), `report` (tables,
compressibility), `plots`, `max_drop` (pruned copies, fine-tuning, the bisection
of ``--max_drop``). The program is `last_nnx.cli.sweep`.
"""

from last_nnx.sweeps.max_drop import (
  check_specs,
  default_criteria,
  default_criterion,
  max_drop_points,
  max_drop_search,
  own_buffers,
  parse_criterion,
  prune_copy,
  resolve_criteria,
)
from last_nnx.sweeps.plots import plot_allocation, plot_curves, plot_scores
from last_nnx.sweeps.points import (
  CRITERIA,
  DEFAULT_RATIOS,
  PointStore,
  iterative,
  mean_curve,
  one_shot,
  point_key,
)
from last_nnx.sweeps.report import (
  average_compressibility,
  compressibility,
  write_points,
  write_report,
  write_table,
)
