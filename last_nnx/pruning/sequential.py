"""Selective-state pruning with a chosen allocation, one pass or sequential (GHOST).

GHOST (arXiv 2602.11408) scores a Mamba-2 layer's states by their local output
error on calibration data, ``mean_{b,t} sum_{h in g} ||C_t,g[n] H_t,h[n, :]||^2``
(our ``calibrated`` statistic), prunes every layer to the same fraction, and goes
**sequentially**: layer ``i`` is scored on the model whose layers ``0..i-1`` are
already pruned, so its statistics see the inputs it will really get. LAST ranks
all layers' states on one scale (layer-energy normalization, one threshold), which
needs every layer's scores at once. The two compose here as:

1. **allocate** from one pass on the model as it is: every layer's scores under
   ``criterion``, then ``allocation`` (``'global'``: LAST's one threshold;
   ``'uniform'``: the same fraction in each layer; ``'measured'``: the counts that
   least raise ``loss_fn`` when each layer's cut is measured alone,
   `last_nnx.pruning.measured`) gives each layer its count ``k_i`` of states to keep;
2. **choose** (``sequential=True``): for ``i = 0, 1, ...`` in layer order, recompute
   layer ``i``'s statistics on the model with layers ``< i`` pruned (masked: the
   shapes stay, so one compiled forward serves every layer), and keep its ``k_i``
   best states by the new scores (each group keeping at least one);
   (``sequential=False``): keep the states step 1 chose;
3. ``mode='compact'`` shrinks every layer to what it keeps (ragged N per layer).

Why counts from the first pass: the global threshold compares layers through
their normalized scores, and a layer's share of the model's energy is a property
of the dense model; re-thresholding after every layer would make the counts depend
on the order. What earlier pruning changes is *which* states of a later layer
matter, and step 2 re-chooses exactly that. With ``allocation='uniform'`` and
``sequential=True`` this is GHOST's procedure. On a model with one prunable layer
sequential and one-pass pruning are the same (tests/test_lm_pruning.py checks it).

Data-free criteria (``magnitude``, ``random``) do not change when earlier layers
are pruned, so the sequential pass re-chooses the same states there.
"""

import dataclasses
import itertools
from collections.abc import Callable

import numpy as np
from flax import nnx

from last_nnx.pruning import allocate as allocate_lib
from last_nnx.pruning import measured, selective
from last_nnx.pruning.apply import apply_keep
from last_nnx.pruning.criteria import check_applies, layer_scores
from last_nnx.pruning.layers import prunable_layers
from last_nnx.pruning.options import as_generator
from last_nnx.ssm.base import is_selective

ALLOCATIONS = ("global", "uniform", "measured")


@dataclasses.dataclass
class SequentialReport:
  """What `prune_selective` did.

  Attributes:
    criterion, allocation, sequential, ratio_requested: the call's options.
    counts: ``{layer: (live before, kept)}``.
    kept: ``{layer: (S,) bool}`` over the slots before pruning.
    statistics: ``{layer: {statistic: (S,) float64}}`` each layer was finally scored
      with (the dense model's for one pass; the partly pruned model's when
      sequential); empty for data-free criteria.
    first_pass: ``{layer: {statistic: (S,)}}`` of step 1 (dense model).
    layer_costs: ``{layer: (n + 1,)}`` loss added by keeping ``k`` states of that
      layer alone (``'measured'`` allocation; None otherwise).
  """

  criterion: str
  allocation: str
  sequential: bool
  ratio_requested: float
  counts: dict
  kept: dict
  statistics: dict
  first_pass: dict
  layer_costs: dict | None = None

  @property
  def states_before(self) -> int:
    return sum(b for b, _ in self.counts.values())

  @property
  def states_after(self) -> int:
    return sum(a for _, a in self.counts.values())

  @property
  def ratio_achieved(self) -> float:
    return 1.0 - self.states_after / max(1, self.states_before)

  def per_layer(self) -> list[int]:
    """States kept per layer, in layer order."""
    return [a for _, a in self.counts.values()]

  def table(self) -> str:
    how = f"{self.criterion} / {self.allocation}{' / sequential' if self.sequential else ''}"
    head = (
      f"{how}: kept {self.states_after} of {self.states_before} states "
      f"({100 * self.ratio_achieved:.1f}% pruned)"
    )
    rows = [head]
    rows += [f"  {path}: {a}/{b}" for path, (b, a) in self.counts.items()]
    return "\n".join(rows)


def layer_statistics(model: nnx.Module, path: str, batches) -> dict[str, np.ndarray]:
  """``{statistic: state_shape float64}`` of the selective layer at ``path`` on ``batches``.

  The means of `selective.statistics`, for one layer, on the model as it is now
  (earlier layers masked or compacted). ``batches``: a sequence of ``(inputs,
  lengths, ...)``, all read.
  """
  return selective.statistics(model, batches, len(batches), paths=(path,))[path]


def _flat(stats: dict | None) -> dict:
  return {k: np.asarray(v, np.float64).reshape(-1) for k, v in (stats or {}).items()}


def prune_selective(
  model: nnx.Module,
  ratio: float,
  *,
  criterion: str = "calibrated",
  allocation: str | None = None,
  sequential: bool = False,
  calibration=None,
  calibration_batches: int = 8,
  seed=None,
  mode: str = "compact",
  min_per_layer: int = 1,
  loss_fn: Callable[[nnx.Module], float] | None = None,
  layer_costs: dict[str, np.ndarray] | None = None,
) -> SequentialReport:
  """Prunes a fraction ``ratio`` of the live states of a model's selective layers, in place.

  Args:
    model: a module whose prunable layers are all selective (Mamba-2).
    ratio: fraction of the live states to remove, in [0, 1).
    criterion: a criterion that applies to selective layers (``calibrated``,
      ``gramian``, ``magnitude``, ``random``, ``uniform``).
    allocation: ``'global'``, ``'uniform'`` or ``'measured'`` (counts from what each
      layer's cut costs ``loss_fn``: `last_nnx.pruning.measured`); None: the
      criterion's own.
    sequential: re-choose each layer's states on the model pruned so far
      (module docstring, step 2).
    calibration: a sequence or iterable of ``(inputs, lengths, ...)`` batches (the
      first ``calibration_batches`` are read, more than once when sequential).
    seed: seed or generator for ``random`` (`last_nnx.pruning.options.as_generator`).
    mode: ``'compact'`` or ``'mask'``.
    min_per_layer: states every layer keeps.
    loss_fn: ``model -> float`` for ``'measured'`` (e.g. the LM loss on the
      calibration windows).
    layer_costs: ``'measured'``'s costs from an earlier call on the same model,
      criterion and calibration (the report's ``layer_costs``): not measured again.

  Returns:
    A `SequentialReport`.
  """
  allocate_lib.check_ratio(ratio)
  layers = prunable_layers(model)
  if not all(is_selective(layer) for layer in layers.values()):
    raise ValueError(
      "prune_selective prunes selective (Mamba-2) layers only; use "
      "last_nnx.pruning.prune for LTI layers"
    )
  crit = check_applies(criterion, {p: "selective" for p in layers})
  allocation = allocation or crit.allocation
  if allocation not in ALLOCATIONS:
    raise ValueError(f"allocation={allocation!r}; expected one of {ALLOCATIONS}")
  if allocation == "measured" and loss_fn is None and layer_costs is None:
    raise ValueError(
      "allocation='measured' needs loss_fn= (model -> loss, e.g. the LM loss on the "
      "calibration windows) to measure each layer's cost"
    )
  generator = as_generator(seed)
  needs_data = crit.needs_data("selective")
  batches = []
  if needs_data:
    if calibration is None:
      raise ValueError(
        f"criterion {criterion!r} scores states on real inputs: pass "
        "calibration= (token windows as (inputs, lengths) batches)"
      )
    batches = list(itertools.islice(calibration, calibration_batches))
    if not batches:
      raise ValueError("calibration gave no batch: pass at least one (inputs, lengths) batch")

  # 1. One pass on the model as it is: scores, allocation, counts.
  first = selective.statistics(model, batches, len(batches)) if needs_data else {}
  views = {p: selective.layer_view(layer, first.get(p)) for p, layer in layers.items()}
  scores = {p: layer_scores(v, criterion, rng=generator) for p, v in views.items()}
  groups = {p: v.group for p, v in views.items()}
  if allocation == "measured":
    if layer_costs is None:
      assert loss_fn is not None  # checked above
      layer_costs = measured.layer_costs(
        model, scores, groups, loss_fn, min_per_layer=min_per_layer
      )
    keep = measured.keep_masks(scores, groups, layer_costs, ratio)
  else:
    keep = allocate_lib.allocate(scores, ratio, allocation, min_per_layer, groups)
  live = {p: int(v.valid.sum()) for p, v in views.items()}
  final_stats = {p: _flat(first.get(p)) for p in layers}

  # 2. Sequential: re-score each layer on the model with the earlier ones pruned.
  if sequential:
    for path, layer in layers.items():
      k = int(keep[path].sum())
      if needs_data:
        stats = layer_statistics(model, path, batches)
        final_stats[path] = _flat(stats)
        view = selective.layer_view(layer, stats)
        s = layer_scores(view, criterion, rng=generator)
      else:
        s = scores[path]
      keep[path] = allocate_lib.keep_best(s, k, groups[path])
      apply_keep(model, {path: keep[path]}, mode="mask")

  # 3. Apply (mask or compact) every layer's keep set.
  apply_keep(model, keep, mode=mode)
  return SequentialReport(
    criterion=criterion,
    allocation=allocation,
    sequential=bool(sequential),
    ratio_requested=float(ratio),
    counts={p: (live[p], int(keep[p].sum())) for p in layers},
    kept={p: np.asarray(m, bool) for p, m in keep.items()},
    statistics=final_stats,
    first_pass={p: _flat(first.get(p)) for p in layers},
    layer_costs=layer_costs,
  )


__all__ = ["ALLOCATIONS", "SequentialReport", "layer_statistics", "prune_selective"]
