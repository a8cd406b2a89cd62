""" "How far can I prune?": the largest ratio whose accuracy drop stays within a tolerance.

Accuracy after pruning falls, roughly monotonically, as more states go. The
search bisects the number of states kept, ``K`` in ``[1, N]``, with the ratio
``r = 1 - K / N`` (global allocation keeps exactly ``floor(N (1 - r)) = K``):
``K = N`` is within any tolerance (nothing pruned), and each probe halves the
interval between the smallest ``K`` known to be within it and the largest known
to be outside. ``ceil(log2 N)`` probes find the boundary exactly when the drop
is monotone in ``K``; where it is not, the result is *a* boundary (every probe
is returned, so a non-monotone curve shows). Pure: the caller's
``accuracy_at(ratio)`` prunes a copy of the model and evaluates it.
"""

import dataclasses
import math
from collections.abc import Callable


@dataclasses.dataclass
class SearchResult:
  """Outcome of `max_ratio_within`.

  Attributes:
    ratio: the largest probed ratio within the tolerance (0.0 if none).
    kept: states kept at that ratio (``N`` when 0).
    accuracy: the accuracy measured there (the baseline when 0).
    probes: ``[(ratio, accuracy)]`` in probing order.
  """

  ratio: float
  kept: int
  accuracy: float
  probes: list[tuple[float, float]]


def ratio_for_kept(kept: int, n_states: int) -> float:
  """The ratio that keeps exactly ``kept`` of ``n_states`` states under global allocation."""
  return 1.0 - kept / n_states


def max_ratio_within(
  accuracy_at: Callable[[float], float],
  baseline: float,
  max_drop: float,
  n_states: int,
  *,
  min_kept: int = 1,
) -> SearchResult:
  """Bisects the number of kept states for the largest ratio within ``max_drop``.

  Args:
    accuracy_at: ``ratio -> accuracy`` (a fraction in [0, 1]) of the model
      pruned by that ratio.
    baseline: the unpruned model's accuracy (a fraction).
    max_drop: the tolerated drop, in accuracy points (percent): 1.0 allows
      0.97 -> 0.96.
    n_states: live states of the model.
    min_kept: the fewest states probed (e.g. one per layer).

  Returns:
    A `SearchResult`.
  """
  if max_drop < 0 or math.isnan(max_drop):
    raise ValueError(f"max_drop={max_drop}: give the tolerated accuracy drop in points (>= 0)")
  if n_states < 1:
    raise ValueError(f"n_states={n_states}: nothing to prune")
  probes = []
  good_k, good_acc = n_states, baseline
  bad_k = max(0, min(min_kept, n_states) - 1)
  while good_k - bad_k > 1:
    mid = (good_k + bad_k) // 2
    ratio = ratio_for_kept(mid, n_states)
    acc = float(accuracy_at(ratio))
    probes.append((ratio, acc))
    if 100.0 * (baseline - acc) <= max_drop + 1e-9:
      good_k, good_acc = mid, acc
    else:
      bad_k = mid
  return SearchResult(
    ratio=ratio_for_kept(good_k, n_states), kept=good_k, accuracy=good_acc, probes=probes
  )
