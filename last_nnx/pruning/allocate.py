"""From per-layer scores to per-layer keep sets (pure numpy).

``global``: one threshold. For a ratio ``r`` the model keeps
``K = max(1, floor(N (1 - r)))`` of its ``N`` live states: the ``K`` highest
scores over all layers, ties broken by layer order, then slot index. Each
layer first keeps its ``min_per_layer`` strongest states (so no layer is
emptied); they count toward ``K``, and only if ``K`` is smaller than those
forced keeps does the model keep more than ``K``.

``uniform``: every layer keeps ``max(min_per_layer, floor(n_l (1 - r)))`` of its
own ``n_l`` states.
"""

import math

import numpy as np


def check_ratio(ratio: float) -> float:
  ratio = float(ratio)
  if not (0.0 <= ratio < 1.0) or math.isnan(ratio):
    raise ValueError(f"pruning ratio {ratio} is outside [0, 1): it is the fraction of states "
                     "to remove, e.g. 0.3 removes 30% and keeps 70%")
  return ratio


def target_count(n: int, ratio: float) -> int:
  return max(1, math.floor(n * (1.0 - check_ratio(ratio)) + 1e-9))


def _top(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the ``k`` largest finite scores, ties by lower index."""
  live = np.flatnonzero(np.isfinite(scores))
  order = live[np.lexsort((live, -scores[live]))]
  return order[:k]


def allocate_global(scores: dict[str, np.ndarray], ratio: float,
                    min_per_layer: int = 1) -> dict[str, np.ndarray]:
  """Keep masks ``{layer: (S,) bool}`` under one global threshold.

  Args:
    scores: per layer, ``(S,)`` scores with ``-inf`` for dead slots.
    ratio: fraction of live states to remove, in [0, 1).
    min_per_layer: states every layer keeps regardless of scores.
  """
  names = list(scores)
  n_live = sum(int(np.isfinite(s).sum()) for s in scores.values())
  k = target_count(n_live, ratio)
  keep = {name: np.zeros(s.shape, bool) for name, s in scores.items()}
  for name, s in scores.items():
    keep[name][_top(s, min_per_layer)] = True
  remaining = k - sum(int(m.sum()) for m in keep.values())
  if remaining > 0:
    layer_idx = np.concatenate([np.full(s.shape, i) for i, s in enumerate(scores.values())])
    slot = np.concatenate([np.arange(s.size) for s in scores.values()])
    flat = np.concatenate(list(scores.values()))
    already = np.concatenate([keep[n] for n in names])
    candidates = np.flatnonzero(np.isfinite(flat) & ~already)
    order = candidates[np.lexsort((slot[candidates], layer_idx[candidates],
                                   -flat[candidates]))][:remaining]
    for j in order:
      keep[names[layer_idx[j]]][slot[j]] = True
  return keep


def allocate_uniform(scores: dict[str, np.ndarray], ratio: float,
                     min_per_layer: int = 1) -> dict[str, np.ndarray]:
  """Keep masks with the same fraction kept in every layer."""
  check_ratio(ratio)
  keep = {}
  for name, s in scores.items():
    n = int(np.isfinite(s).sum())
    k = max(min(min_per_layer, n), math.floor(n * (1.0 - ratio) + 1e-9))
    mask = np.zeros(s.shape, bool)
    mask[_top(s, k)] = True
    keep[name] = mask
  return keep


def threshold(scores: dict[str, np.ndarray], keep: dict[str, np.ndarray]) -> float | None:
  """Score of the weakest kept state (the global threshold), or None if nothing kept."""
  kept = [s[m] for s, m in ((scores[n], keep[n]) for n in scores) if m.any()]
  return float(np.min(np.concatenate(kept))) if kept else None
