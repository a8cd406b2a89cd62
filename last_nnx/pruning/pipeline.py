"""The pruning pipeline, written once: score, allocate, energy kept, apply, report, history.

Every pruning goes through the same steps (`prune`; `score` stops after the
first; the training loop's watch stops before `apply_plan`):

1. `score_states`: the layers' views (`StateModes` of an LTI layer,
   `selective.StateStatistics` of a selective one), the calibration
   statistics a data-driven criterion needs, and every slot's score;
2. `plan_event` (a dry run: nothing changes yet): the keep sets under the
   criterion's allocation, the share of each layer's energy they keep, and, for
   a reduction criterion (``balanced``...), the reduced layers themselves; the
   `LayerReport` of every layer comes out whole;
3. `apply_plan`: the model (and its optimizer) masked, compacted or reduced;
4. the `PruneReport`, built once from the plan, recorded once into the history.
"""

import dataclasses
import itertools

import numpy as np
from absl import logging
from flax import nnx

from last_nnx.pruning import allocate, balanced, calibrated, criteria, refit, selective
from last_nnx.pruning.apply import apply_keep
from last_nnx.pruning.criteria import (
  applicable_criteria,
  check_applies,
  get_criterion,
  layer_energy,
)
from last_nnx.pruning.history import PruningHistory
from last_nnx.pruning.layers import layer_kinds, prunable_layers
from last_nnx.pruning.options import PruneOptions, as_generator
from last_nnx.pruning.report import LayerReport, PruneReport, long_time_constants
from last_nnx.ssm.base import StateModes

# ----------------------------------------------------------------------------
# Views of the layers, and what a criterion needs of the data.


def applicable(model: nnx.Module) -> tuple[str, ...]:
  """The registered criteria that apply to every prunable layer of ``model``."""
  return applicable_criteria(layer_kinds(model).values())


def needs_calibration(model: nnx.Module, criterion: str) -> bool:
  """Whether ``criterion`` needs calibration batches to score ``model``'s layers."""
  crit = get_criterion(criterion)
  return any(crit.needs_data(kind) for kind in set(layer_kinds(model).values()))


def calibration_stats(
  model: nnx.Module, criterion: str, calibration, calibration_batches: int
) -> dict:
  """What a data-driven criterion needs per layer, from a few batches of real inputs.

  LTI layers: ``{layer_path: (S,) output energies}`` (`calibrated.output_energies`)
  for ``calibrated``, per-group state covariances for the calibrated reductions.
  Selective layers: ``{layer_path: {statistic: state_shape}}``
  (`selective.statistics`) for the criteria that need data there. ``{}`` for
  criteria that need no data.
  """
  by_layer = layer_kinds(model)
  crit = check_applies(criterion, by_layer)
  kinds = set(by_layer.values())
  if not any(crit.needs_data(kind) for kind in kinds):
    return {}
  if calibration is None:
    raise ValueError(
      f"criterion {criterion!r} scores states on real inputs: pass "
      "calibration= (an iterable of (inputs, lengths) training batches)"
    )
  stats = {}
  if "selective" in kinds and crit.needs_data("selective"):
    if "lti" in kinds and crit.needs_data("lti"):
      calibration = list(itertools.islice(calibration, calibration_batches))  # read twice
    stats.update(selective.statistics(model, calibration, calibration_batches))
  if "lti" in kinds and crit.needs_data("lti"):
    if crit.reduction:
      stats.update(balanced.state_covariances(model, calibration, calibration_batches))
    else:
      stats.update(calibrated.output_energies(model, calibration, calibration_batches))
  return stats


def layer_views(model: nnx.Module, stats: dict | None = None) -> dict:
  """``{layer_path: view}``: `StateModes` (LTI) or `selective.StateStatistics` (selective)."""
  stats = stats or {}
  return {
    path: (
      selective.layer_view(layer, stats.get(path)) if kind == "selective" else layer.state_modes()
    )
    for (path, layer), kind in zip(prunable_layers(model).items(), layer_kinds(model).values())
  }


def view_energy(
  view,
  criterion: str,
  bidirectional: str = "sum",
  horizon: int | None = None,
  calibration: np.ndarray | None = None,
) -> np.ndarray:
  """A layer's ``(S,)`` per-state energy for the "energy kept" diagnostic.

  A selective layer's `selective.energy`; an LTI layer's ``calibration`` (its
  output energies) for a calibrated criterion, else the criterion's norm
  (`layer_energy`).
  """
  if isinstance(view, selective.StateStatistics):
    return selective.energy(view)
  if get_criterion(criterion).calibrated:
    return calibration
  return layer_energy(view, criterion, bidirectional, horizon)


def state_groups(views: dict) -> dict[str, np.ndarray]:
  """``{layer_path: (S,) group ids}`` of the selective layers in ``views`` (`layer_views`):
  the allocation keeps at least one state in each group."""
  return {path: v.group for path, v in views.items() if isinstance(v, selective.StateStatistics)}


# ----------------------------------------------------------------------------
# 1. Scores.


@dataclasses.dataclass
class Scores:
  """What `score_states` saw: ``views``, ``stats`` and ``scores`` by layer path.

  ``scores`` are ``(S,)`` float64 over every slot, higher = more important,
  ``-inf`` on dead slots. A reduction criterion also keeps each layer's group
  ``systems`` and squared Hankel singular values ``hsv2`` (`balanced`).
  """

  options: PruneOptions
  views: dict
  stats: dict
  scores: dict
  systems: dict = dataclasses.field(default_factory=dict)
  hsv2: dict = dataclasses.field(default_factory=dict)


def score_states(model: nnx.Module, options: PruneOptions, calibration=None) -> Scores:
  """Step 1: every prunable layer's view and scores under ``options.criterion``."""
  crit = check_applies(options.criterion, layer_kinds(model))
  stats = calibration_stats(model, options.criterion, calibration, options.calibration_batches)
  views = layer_views(model, stats)
  if crit.reduction:
    systems = {
      path: balanced.layer_gramians(v, options.horizon, stats.get(path))
      for path, v in views.items()
    }
    scored = {path: balanced.hsv_scores(views[path], systems[path]) for path in views}
    return Scores(
      options,
      views,
      stats,
      {p: s for p, (s, _) in scored.items()},
      systems,
      {p: sq for p, (_, sq) in scored.items()},
    )
  generator = as_generator(options.seed)  # one generator, drawn from layer by layer
  scores = {
    path: criteria.layer_scores(
      v,
      options.criterion,
      rng=generator,
      bidirectional=options.bidirectional,
      horizon=options.horizon,
      calibration=stats.get(path),
    )
    for path, v in views.items()
  }
  return Scores(options, views, stats, scores)


# ----------------------------------------------------------------------------
# 2. The plan of an event (a dry run).


@dataclasses.dataclass
class EventPlan:
  """What an event will do: ``keep`` (``{layer: (S,) bool}``), the per-layer
  reports, the global threshold, and the reduced layers of a reduction."""

  scores: Scores
  ratio: float
  keep: dict
  layers: dict[str, LayerReport]
  threshold: float | None
  reduced: dict[str, StateModes] = dataclasses.field(default_factory=dict)


def _share(energy: np.ndarray, mask: np.ndarray) -> float:
  """The share of a layer's energy on the kept states (1 for a layer with none)."""
  total = energy.sum()
  return float(energy[mask].sum() / total) if total > 0 else 1.0


def plan_event(scored: Scores, ratio: float, seq_len: int | None = None) -> EventPlan:
  """Step 2: keep sets at ``ratio`` (a fraction of the live states), energies kept, and
  with ``seq_len`` the states slower than the sequences (`report.long_time_constants`)."""
  o = scored.options
  crit = o.definition
  ratio = allocate.check_ratio(ratio)
  keep = allocate.allocate(
    scored.scores, ratio, crit.allocation, o.min_per_layer, state_groups(scored.views)
  )
  layers, reduced = {}, {}
  for path, mask in keep.items():
    s, view = scored.scores[path], scored.views[path]
    kept = s[mask]
    if crit.reduction:
      energy = scored.hsv2[path]
    else:
      energy = view_energy(view, o.criterion, o.bidirectional, o.horizon, scored.stats.get(path))
    report = dict(
      states_before=int(np.isfinite(s).sum()),
      states_after=int(mask.sum()),
      kept=[int(i) for i in np.flatnonzero(mask)],
      energy_kept=_share(energy, mask),
      min_kept_score=float(kept.min()) if kept.size else None,
      slots=int(mask.size),
    )
    if crit.reduction:
      modes, report["error_bound"] = balanced.reduce_layer(
        view, scored.systems[path], scored.hsv2[path], mask
      )
      if modes is not None:
        reduced[path] = modes
        report["states_after"] = int(modes.num_slots)
    if seq_len and isinstance(view, StateModes):
      # The criterion's norm at infinite horizon: what an infinite-horizon score credits.
      report["long_states"], report["long_share"] = long_time_constants(
        view.poles, view.valid, layer_energy(view, o.criterion, o.bidirectional), seq_len
      )
    layers[path] = LayerReport(**report)
  threshold = allocate.threshold(scored.scores, keep) if crit.allocation == "global" else None
  return EventPlan(scored, ratio, keep, layers, threshold, reduced)


# ----------------------------------------------------------------------------
# 3. Apply, 4. report and record.


def apply_plan(model: nnx.Module, plan: EventPlan, optimizer=None) -> None:
  """Step 3: masks, compacts or reduces ``model`` (and ``optimizer``) as ``plan`` says."""
  if not plan.scores.options.definition.reduction:
    apply_keep(model, plan.keep, mode=plan.scores.options.mode, optimizer=optimizer)
    return
  layers = prunable_layers(model)
  for path, modes in plan.reduced.items():
    balanced.load_reduced(layers[path], modes, optimizer, path)


def build_report(
  plan: EventPlan, history: PruningHistory | None = None, seq_len: int | None = None
) -> PruneReport:
  """Step 4: the `PruneReport` of ``plan`` (with ``history``, also against the dense model)."""
  o = plan.scores.options
  crit = o.definition
  before = sum(r.states_before for r in plan.layers.values())
  after = sum(r.states_after for r in plan.layers.values())
  original = None
  if history is not None:
    dense = history.dense_states or {k: r.states_before for k, r in plan.layers.items()}
    original = sum(dense.values())
  return PruneReport(
    criterion=o.criterion,
    mode="balanced" if crit.reduction else o.mode,
    ratio_requested=float(plan.ratio),
    ratio_achieved=1.0 - after / max(1, before),
    threshold=plan.threshold,
    layers=plan.layers,
    allocation=crit.allocation,
    bidirectional=o.bidirectional,
    horizon=o.horizon,
    min_per_layer=o.min_per_layer,
    energy_norm="hsv2" if crit.reduction else crit.norm,
    states_original=original,
    ratio_achieved_total=None if original is None else 1.0 - after / max(1, original),
    seq_len=int(seq_len) if seq_len else None,
  )


def score(
  model: nnx.Module, criterion: str = "last", *, calibration=None, **options
) -> dict[str, np.ndarray]:
  """Per-layer scores of every state slot under ``criterion``.

  Args:
    model: an NNX module with `PrunableSSM` layers (or one such layer).
    criterion: a registered criterion that applies to the model's layer kinds
      (`applicable`).
    calibration: for data-driven criteria, an iterable of ``(inputs, lengths,
      ...)`` batches (``calibration_batches`` of them are read).
    **options: the other fields of `PruneOptions` (``seed``, ``bidirectional``,
      ``horizon``, ``calibration_batches``).

  Returns:
    ``{layer_path: (S,) float64}`` over the layer's flat slots (all of them),
    higher = more important; slots already pruned (masked) or padding score
    ``-inf``.
  """
  return score_states(model, PruneOptions(criterion=criterion, **options), calibration).scores


def prune(
  model: nnx.Module,
  ratio: float,
  *,
  optimizer: nnx.Optimizer | None = None,
  calibration=None,
  history: PruningHistory | None = None,
  seq_len: int | None = None,
  options: PruneOptions | None = None,
  **fields,
) -> PruneReport:
  """Removes a fraction ``ratio`` of the model's live states, in place.

  Scores come from the current weights; ``ratio`` is a fraction of the states
  live now (use `event_ratio` to reach a cumulative target). Reduction
  criteria (``balanced``, ``calibrated_balanced``, ``balanced_refit``) project
  each layer onto fewer states (new poles), always compacting.

  Args:
    model: any NNX module with `PrunableSSM` layers (or one such layer).
    ratio: fraction of the live states to remove, in [0, 1). Global criteria
      keep exactly ``max(1, floor(N (1 - ratio)))`` (see `allocate`).
    optimizer: its state is sliced like the parameters (``compact``), or its
      moments of a reduced layer restart at zero, so training goes on
      (``mask`` changes no shape and leaves it alone).
    calibration: for data-driven criteria (``calibrated``, the calibrated
      reductions, the selective criteria that read data): an iterable of
      ``(inputs, lengths, ...)`` batches of real inputs (a few training
      batches); others ignore it.
    history: if given, the event is recorded into it, and the report gives
      the pruned fraction of the dense model as well.
    seq_len: the length of the sequences the model sees; with it the report
      says how many states (and what share of each layer's energy) have time
      constants beyond it, and suggests ``horizon=seq_len`` when that share is
      large.
    options: a `PruneOptions`; ``**fields`` replace its fields (``criterion``,
      ``mode``, ``min_per_layer``, ``bidirectional``, ``horizon``,
      ``calibration_batches``, ``seed``), or make one from the defaults.

  Returns:
    A `PruneReport`.

  Raises:
    ValueError: ratio outside [0, 1), a bad option (`PruneOptions`), or a
      model without prunable layers.
  """
  allocate.check_ratio(ratio)
  options = dataclasses.replace(options, **fields) if options else PruneOptions(**fields)
  dense = None
  if options.criterion == "balanced_refit":
    # Read twice (covariances, then the refit) and compared with the model as it was.
    if calibration is not None:
      calibration = list(itertools.islice(iter(calibration), options.calibration_batches))
    dense = nnx.clone(model)
  plan = plan_event(score_states(model, options, calibration), ratio, seq_len)
  apply_plan(model, plan, optimizer)
  if dense is not None:
    changed = [p for p, r in plan.layers.items() if r.states_after < r.states_before]
    refit.refit_outputs(model, dense, changed, calibration, options.calibration_batches)
  report = build_report(plan, history, seq_len)
  if history is not None:
    history.record(report)
  hint = report.suggestion()
  if hint:
    logging.warning("%s", hint)
  logging.debug(
    "pruned %d of %d states (%s, %s)",
    report.states_before - report.states_after,
    report.states_before,
    options.criterion,
    report.mode,
  )
  return report
