"""LAST and baseline state pruning for any `PrunableSSM` model.

  from last_nnx import pruning
  scores = pruning.score(model, "last")                    # {layer: (S,) scores}
  report = pruning.prune(model, 0.3, criterion="last", mode="compact",
                         optimizer=optimizer)              # in place
  logging.info("%s", report.table())

Both layer kinds (`last_nnx.ssm.base`): LTI layers are scored from their
`StateModes`, selective ones (Mamba-2) from their `selective.StateStatistics`
(statistics of calibration batches); `applicable(model)` lists the criteria
that apply to a model. See docs/pruning.md. Modules: `hinf` (per-state system
norms), `criteria` (registry of scores), `selective` (scores of selective
layers), `allocate` (scores -> keep sets), `apply` (mask or compact a live
model and its optimizer), `history` (replayable events), `schedule` (when and
how much), `report`.
"""

import itertools

import numpy as np
from absl import logging
from flax import nnx

from last_nnx.pruning import hinf
from last_nnx.pruning.hinf import resolve_horizon
from last_nnx.pruning import allocate
from last_nnx.pruning.allocate import (allocate_global, allocate_uniform, check_ratio,
                                       check_min_per_layer, target_count, threshold)
from last_nnx.pruning.apply import MODES, apply_keep, compact_optimizer_state, prunable_layers
from last_nnx.pruning.criteria import (Criterion, applicable_criteria, check_applies,
                                       get_criterion, layer_energy, layer_energy_normalize,
                                       layer_scores, register_criterion, registered_criteria)
from last_nnx.pruning.history import EventRecord, PruningEvent, PruningHistory, replay
from last_nnx.pruning.report import LayerReport, PruneReport, long_time_constants
from last_nnx.pruning.schedule import PruningSchedule, event_ratio
from last_nnx.pruning import calibrated
from last_nnx.pruning import balanced  # registers 'balanced' and 'calibrated_balanced'
from last_nnx.pruning.balanced import reduce
from last_nnx.pruning.calibrated import DEFAULT_BATCHES as DEFAULT_CALIBRATION_BATCHES
from last_nnx.pruning import selective  # registers the selective criteria
from last_nnx.ssm.base import StateModes, layer_kind


def as_generator(rng) -> np.random.Generator:
  """``rng`` as a numpy Generator: None (seed 0), an int seed, a Generator or a jax key."""
  if isinstance(rng, np.random.Generator):
    return rng
  if rng is None:
    return np.random.default_rng(0)
  if isinstance(rng, (int, np.integer)):
    return np.random.default_rng(int(rng))
  import jax  # a jax PRNG key (typed or raw uint32)
  data = rng
  if jax.dtypes.issubdtype(getattr(rng, "dtype", None), jax.dtypes.prng_key):
    data = jax.random.key_data(rng)
  return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


def _check_bidirectional(bidirectional: str) -> None:
  if bidirectional not in hinf.BIDIRECTIONAL:
    raise ValueError(f"bidirectional={bidirectional!r}; expected one of {hinf.BIDIRECTIONAL}")


def layer_kinds(model: nnx.Module) -> dict[str, str]:
  """``{layer_path: 'lti' or 'selective'}`` of the model's prunable layers."""
  return {path: layer_kind(layer) for path, layer in prunable_layers(model).items()}


def applicable(model: nnx.Module) -> tuple[str, ...]:
  """The registered criteria that apply to every prunable layer of ``model``."""
  return applicable_criteria(layer_kinds(model).values())


def needs_calibration(model: nnx.Module, criterion: str) -> bool:
  """Whether ``criterion`` needs calibration batches to score ``model``'s layers."""
  crit = get_criterion(criterion)
  return any(crit.needs_data(kind) for kind in set(layer_kinds(model).values()))


def calibration_stats(model: nnx.Module, criterion: str, calibration,
                      calibration_batches: int = DEFAULT_CALIBRATION_BATCHES) -> dict:
  """What a calibrated criterion needs per layer, from a few batches of real inputs.

  LTI layers: ``{layer_path: (S,) output energies}`` (`calibrated.output_energies`)
  for ``calibrated``, per-group state covariances for ``calibrated_balanced``.
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
    raise ValueError(f"criterion {criterion!r} scores states on real inputs: pass "
                     "calibration= (an iterable of (inputs, lengths) training batches)")
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
  return {path: (selective.layer_view(layer, stats.get(path)) if layer_kind(layer) == "selective"
                 else layer.state_modes())
          for path, layer in prunable_layers(model).items()}


def view_energy(view, criterion: str, bidirectional: str = "sum",
                horizon: int | None = None, calibration: np.ndarray | None = None) -> np.ndarray:
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


def score(model: nnx.Module, criterion: str = "last", *, rng=None,
          bidirectional: str = "sum", horizon: int | None = None, calibration=None,
          calibration_batches: int = DEFAULT_CALIBRATION_BATCHES) -> dict[str, np.ndarray]:
  """Per-layer scores of every state slot under ``criterion``.

  Args:
    model: an NNX module with `PrunableSSM` layers (or one such layer).
    criterion: a registered criterion that applies to the model's layer kinds
      (`applicable`).
    rng: seed, ``np.random.Generator`` or jax key for ``random`` (None: seed 0,
      so scores are reproducible); one generator is drawn from layer by layer.
    bidirectional: ``'sum'`` or ``'reference'`` (see `pruning.hinf`).
    horizon: None for the paper's infinite-horizon norms, or the sequence
      length ``T`` the model sees: norms of the responses truncated to ``T``
      steps (see `pruning.hinf`).
    calibration, calibration_batches: for calibrated criteria, an iterable of
      ``(inputs, lengths, ...)`` batches and how many of them to read.

  Returns:
    ``{layer_path: (S,) float64}`` over the layer's flat slots (all of them),
    higher = more important; slots already pruned (masked) or padding score
    ``-inf``.
  """
  get_criterion(criterion)
  _check_bidirectional(bidirectional)
  hinf.check_horizon(horizon)
  generator = as_generator(rng)
  stats = calibration_stats(model, criterion, calibration, calibration_batches)
  return {path: layer_scores(view, criterion, rng=generator, bidirectional=bidirectional,
                             horizon=horizon, calibration=stats.get(path))
          for path, view in layer_views(model, stats).items()}


def prune(model: nnx.Module, ratio: float, *, criterion: str = "last", mode: str = "compact",
          optimizer: nnx.Optimizer | None = None, rng=None, min_per_layer: int = 1,
          bidirectional: str = "sum", horizon: int | None = None,
          history: PruningHistory | None = None, calibration=None,
          calibration_batches: int = DEFAULT_CALIBRATION_BATCHES,
          seq_len: int | None = None) -> PruneReport:
  """Removes a fraction ``ratio`` of the model's live states, in place.

  Scores come from the current weights; ``ratio`` is a fraction of the states
  live now (use `event_ratio` to reach a cumulative target). Reduction
  criteria (``balanced``, ``calibrated_balanced``) are handed to `reduce`:
  they project each layer onto fewer states (new poles), always compacting.

  Args:
    model: any NNX module with `PrunableSSM` layers (or one such layer).
    ratio: fraction of the live states to remove, in [0, 1). Global criteria
      keep exactly ``max(1, floor(N (1 - ratio)))`` (see `allocate`).
    criterion: a registered criterion (`registered_criteria()`).
    mode: ``'compact'`` (arrays shrink, optimizer state too) or ``'mask'``
      (shapes kept, pruned states zeroed by the layer's state mask).
    optimizer: with ``compact``, its state is sliced like the parameters so
      training goes on (ignored by ``mask``, which changes no shape).
    rng: seed, ``np.random.Generator`` or jax key, for ``random`` (None: 0).
    min_per_layer: states every layer keeps.
    bidirectional: ``'sum'`` or ``'reference'`` (see `pruning.hinf`).
    horizon: None (infinite-horizon norms, as the paper) or the sequence
      length the norms are taken over (see `score`).
    history: if given, the event is recorded into it, and the report gives
      the pruned fraction of the dense model as well.
    calibration: for calibrated criteria (``calibrated``,
      ``calibrated_balanced``): an iterable of ``(inputs, lengths, ...)``
      batches of real inputs (a few training batches); others ignore it.
    calibration_batches: at most this many of them are read.
    seq_len: the length of the sequences the model sees; with it the report
      says how many states (and what share of each layer's energy) have time
      constants beyond it, and suggests ``horizon=-1`` when that share is large.

  Returns:
    A `PruneReport`.

  Raises:
    ValueError: ratio outside [0, 1), unknown criterion or mode, or a model
      without prunable layers.
  """
  check_ratio(ratio)
  crit = get_criterion(criterion)
  if mode not in MODES:
    raise ValueError(f"unknown pruning mode {mode!r}; expected one of {MODES}")
  min_per_layer = check_min_per_layer(min_per_layer)
  _check_bidirectional(bidirectional)
  hinf.check_horizon(horizon)
  check_applies(criterion, layer_kinds(model))
  if crit.reduction:
    modes = layer_views(model)
    report = reduce(model, ratio, method=criterion, optimizer=optimizer,
                    min_per_layer=min_per_layer, horizon=horizon, calibration=calibration,
                    calibration_batches=calibration_batches, history=history)
    _diagnose(report, modes, criterion, bidirectional, seq_len)
    return report
  generator = as_generator(rng)
  stats = calibration_stats(model, criterion, calibration, calibration_batches)
  modes = layer_views(model, stats)
  scores = {path: layer_scores(m, criterion, rng=generator, bidirectional=bidirectional,
                              horizon=horizon, calibration=stats.get(path))
            for path, m in modes.items()}
  keep = allocate.allocate(scores, ratio, crit.allocation, min_per_layer, state_groups(modes))

  layer_reports = {}
  for path, mask in keep.items():
    energy = view_energy(modes[path], criterion, bidirectional, horizon, stats.get(path))
    total = energy.sum()
    kept_scores = scores[path][mask]
    layer_reports[path] = LayerReport(
        states_before=int(np.isfinite(scores[path]).sum()), states_after=int(mask.sum()),
        kept=[int(i) for i in np.flatnonzero(mask)],
        energy_kept=float(energy[mask].sum() / total) if total > 0 else 1.0,
        min_kept_score=float(kept_scores.min()) if kept_scores.size else None,
        slots=int(mask.size))
  apply_keep(model, keep, mode=mode, optimizer=optimizer)

  before = sum(r.states_before for r in layer_reports.values())
  after = sum(r.states_after for r in layer_reports.values())
  report = PruneReport(
      criterion=criterion, mode=mode, ratio_requested=float(ratio),
      ratio_achieved=1.0 - after / max(1, before),
      threshold=threshold(scores, keep) if crit.allocation == "global" else None,
      layers=layer_reports, allocation=crit.allocation, bidirectional=bidirectional,
      horizon=horizon,
      min_per_layer=min_per_layer, energy_norm=crit.norm)
  _diagnose(report, modes, criterion, bidirectional, seq_len)
  if history is not None:
    history.record(report)
    report.states_original = history.states_original
    report.ratio_achieved_total = 1.0 - after / max(1, report.states_original)
  logging.debug("pruned %d of %d states (%s, %s)", before - after, before, criterion, mode)
  return report


def _diagnose(report: PruneReport, modes: dict, criterion: str, bidirectional: str,
              seq_len: int | None) -> None:
  """Fills the report's time-constant diagnostic (states slower than ``seq_len``)."""
  if not seq_len:
    return
  report.seq_len = int(seq_len)
  for path, layer_report in report.layers.items():
    m = modes[path]
    if not isinstance(m, StateModes):  # a selective layer: no fixed time constants
      continue
    energy = layer_energy(m, criterion, bidirectional)  # the criterion's norm, infinite horizon
    layer_report.long_states, layer_report.long_share = long_time_constants(
        m.poles, m.valid, energy, report.seq_len)
  hint = report.suggestion()
  if hint:
    logging.warning("%s", hint)


__all__ = ["Criterion", "EventRecord", "LayerReport", "MODES", "PruneReport", "PruningEvent", "PruningHistory",
           "PruningSchedule", "allocate_global", "allocate_uniform", "apply_keep",
           "as_generator", "check_ratio", "compact_optimizer_state", "event_ratio", "hinf",
           "layer_energy_normalize", "layer_scores", "prunable_layers", "prune",
           "register_criterion", "registered_criteria", "replay", "resolve_horizon", "score",
           "target_count", "threshold", "reduce", "balanced", "calibrated", "calibration_stats",
           "applicable", "applicable_criteria", "check_applies", "layer_kinds", "layer_views",
           "needs_calibration", "selective", "state_groups", "view_energy"]
