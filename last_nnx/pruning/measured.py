"""Measured allocation: per-layer counts from what each layer's cut costs the loss.

LAST's global threshold compares layers by each state's share of its own layer's output
energy. On a language model that share is not what the loss sees: on the 8-layer byte LM of
docs/results.md it left the last layer 10 of 64 states, and lost 3x what uniform
allocation lost at 50%. Measured allocation asks the loss instead:

1. Each layer's states are ranked by the criterion's scores, as under any allocation.
2. For each layer ``l`` and each count ``k`` of a grid, layer ``l`` alone is masked to its
   ``k`` best states and ``cost_l(k) = loss_fn(model) - dense loss`` is measured (for a
   language model, the next-token loss on the calibration windows).
3. ``cost_l`` is interpolated linearly between grid counts, made non-increasing in ``k``
   (a state added never counts as harm) and is 0 at the layer's live count; counts below
   the layer's minimum (``min_per_layer``, one state per group) are not allowed.
4. The counts minimize ``sum_l cost_l(k_l)`` subject to ``sum_l k_l = K``, the same ``K``
   as global allocation keeps (`allocate.allocate_counts`, exact for costs that add up;
   on the LMs of docs/results.md single-layer cuts add up to 77-100% of whole-model cuts).

Each layer then keeps its ``k_l`` best states by score. The costs depend on the model and
the scores, not on the ratio: `layer_costs` once, then `keep_masks` for every ratio.
Price: ``L x len(grid)`` calls of ``loss_fn``.
"""

from collections.abc import Callable

import numpy as np
from absl import logging
from flax import nnx

from last_nnx.pruning import allocate as allocate_lib
from last_nnx.pruning.layers import prunable_layers

DEFAULT_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def smallest_count(scores: np.ndarray, group: np.ndarray | None, min_per_layer: int) -> int:
  """The fewest states a layer may keep: ``min_per_layer`` and one per live group."""
  live = np.isfinite(np.asarray(scores, np.float64))
  groups = len(np.unique(np.asarray(group)[live])) if group is not None else 1
  return min(int(live.sum()), max(min_per_layer, groups))


def layer_costs(
  model: nnx.Module,
  scores: dict[str, np.ndarray],
  groups: dict[str, np.ndarray],
  loss_fn: Callable[[nnx.Module], float],
  *,
  grid=DEFAULT_GRID,
  min_per_layer: int = 1,
) -> dict[str, np.ndarray]:
  """``{layer: (n_l + 1,) float64}``: the loss added by keeping ``k = 0 .. n_l`` states
  of that layer alone (steps 2-3 of the module docstring); ``inf`` below the minimum.

  Args:
    model: the model as it is (its layers are masked one at a time and restored).
    scores: ``{layer: (S,) scores}``, ``-inf`` on dead slots.
    groups: ``{layer: (S,) group ids}``.
    loss_fn: ``model -> float``, lower is better.
    grid: fractions of each layer's live states kept, measured.
    min_per_layer: states every layer keeps.
  """
  layers = prunable_layers(model)
  dense = float(loss_fn(model))
  costs = {}
  for path, s in scores.items():
    n = int(np.isfinite(s).sum())
    low = smallest_count(s, groups.get(path), min_per_layer)
    counts = sorted({low, *(max(low, int(round(f * n))) for f in grid)} - {n})
    measured = []
    layer = layers[path]
    saved = layer.state_mask.get_value()
    for k in counts:
      layer.mask_states(allocate_lib.keep_best(s, k, groups.get(path)))
      measured.append(float(loss_fn(model)) - dense)
      layer.state_mask.set_value(saved)
    cost = np.interp(np.arange(n + 1), counts + [n], measured + [0.0])
    cost = np.maximum.accumulate(cost[::-1])[::-1]  # non-increasing in k
    cost[:low] = np.inf
    costs[path] = cost
    logging.info(
      "measured allocation: %s cut alone to %s of %d states costs %s",
      path,
      counts,
      n,
      np.round(measured, 5).tolist(),
    )
  return costs


def keep_masks(
  scores: dict[str, np.ndarray],
  groups: dict[str, np.ndarray],
  costs: dict[str, np.ndarray],
  ratio: float,
) -> dict[str, np.ndarray]:
  """``{layer: (S,) bool}``: step 4 of the module docstring at ``ratio``, then each
  layer's best states by score."""
  n_live = sum(int(np.isfinite(s).sum()) for s in scores.values())
  counts = allocate_lib.allocate_counts(costs, allocate_lib.target_count(n_live, ratio))
  return {p: allocate_lib.keep_best(s, counts[p], groups.get(p)) for p, s in scores.items()}
