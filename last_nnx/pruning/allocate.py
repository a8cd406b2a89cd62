"""From per-layer scores to per-layer keep sets (pure numpy).

Inputs are ``{layer: (S,) scores}`` with ``-inf`` on dead slots (pruned or
padding); outputs are ``{layer: (S,) bool}`` keep masks over the same slots. A
dead slot is never kept. The order of the dict is the layer order used to
break ties.

``global`` (one threshold): for a ratio ``r`` the model keeps
``K = max(1, floor(N (1 - r)))`` of its ``N`` live states. Each layer first keeps
its ``min_per_layer`` strongest states (so no layer is emptied); these forced
keeps count toward ``K``, and the remaining ``K - forced`` places go to the
highest-scoring other states of all layers, ranked by
``(-score, layer order, slot index)``. So exactly ``K`` states are kept unless
the forced keeps alone exceed ``K`` (more layers times ``min_per_layer`` than
``K``), in which case exactly the forced keeps are kept. Every non-forced kept
state scores at least as high as every pruned one.

Groups (``groups={layer: (S,) group ids}``, given for selective layers, whose
groups of heads share their states): every group of such a layer also keeps
its ``min_per_group`` strongest live states, forced keeps like the per-layer
ones (counted toward ``K`` under ``global``, inside the layer's count under
``uniform``), so no group is emptied.

``uniform``: every layer keeps ``max(min(min_per_layer, n_l), floor(n_l (1 - r)))``
of its own ``n_l`` live states, its strongest by ``(-score, slot index)``.

``floor`` is taken with a 1e-9 tolerance, so that decimal ratios land where
people expect: ``N = 100, r = 0.34`` keeps 66 (``100 * (1 - 0.34)`` is
``65.99999999999999`` in floating point), ``N = 10, r = 0.8`` keeps 2.
"""

import math

import numpy as np

RULES = ("global", "uniform")


def check_ratio(ratio: float) -> float:
  """``ratio`` as a float in [0, 1), else a ValueError saying what it means."""
  try:
    ratio = float(ratio)
  except (TypeError, ValueError):
    raise ValueError(f"pruning ratio must be a number in [0, 1), got {ratio!r}") from None
  if math.isnan(ratio) or not 0.0 <= ratio < 1.0:
    raise ValueError(
      f"pruning ratio {ratio} is outside [0, 1): it is the fraction of the live "
      "states to remove (0.3 removes 30% and keeps 70%); use 0 to prune nothing"
    )
  return ratio


def check_min_per_layer(min_per_layer: int) -> int:
  if isinstance(min_per_layer, bool) or int(min_per_layer) != min_per_layer or min_per_layer < 0:
    raise ValueError(f"min_per_layer must be a nonnegative integer, got {min_per_layer!r}")
  return int(min_per_layer)


def floor_keep(n: int, ratio: float) -> int:
  """``floor(n (1 - ratio))`` with a 1e-9 tolerance for decimal ratios."""
  return math.floor(n * (1.0 - ratio) + 1e-9)


def target_count(n: int, ratio: float) -> int:
  """States kept out of ``n`` under global allocation: ``max(1, floor(n (1 - r)))``."""
  return max(1, floor_keep(n, check_ratio(ratio)))


def top_slots(scores: np.ndarray, k: int) -> np.ndarray:
  """Indices of the ``k`` largest finite scores, ranked by ``(-score, index)``."""
  scores = np.asarray(scores, np.float64)
  live = np.flatnonzero(np.isfinite(scores))
  order = live[np.lexsort((live, -scores[live]))]
  return order[: max(0, k)]


def forced_keeps(
  s: np.ndarray, min_per_layer: int, group: np.ndarray | None = None, min_per_group: int = 1
) -> np.ndarray:
  """``(S,)`` bool: a layer's ``min_per_layer`` strongest states, and each group's
  ``min_per_group`` strongest when ``group`` (``(S,)`` ids) is given."""
  keep = np.zeros(s.shape, bool)
  keep[top_slots(s, min_per_layer)] = True
  if group is not None:
    group = np.asarray(group)
    for g in np.unique(group):
      members = np.flatnonzero(group == g)
      keep[members[top_slots(s[members], min_per_group)]] = True
  return keep


def keep_best(
  scores: np.ndarray,
  k: int,
  group: np.ndarray | None = None,
  min_per_layer: int = 1,
  min_per_group: int = 1,
) -> np.ndarray:
  """``(S,)`` bool: ``k`` live slots: the forced keeps first (`forced_keeps`: the layer's
  ``min_per_layer`` best and each group's ``min_per_group`` best, ``group``: ``(S,)`` ids),
  then the best by score."""
  mask = forced_keeps(scores, min_per_layer, group, min_per_group)
  rest = np.where(mask, -np.inf, scores)
  mask[top_slots(rest, k - int(mask.sum()))] = True
  return mask


def allocate_global(
  scores: dict[str, np.ndarray],
  ratio: float,
  min_per_layer: int = 1,
  groups: dict[str, np.ndarray] | None = None,
  min_per_group: int = 1,
) -> dict[str, np.ndarray]:
  """Keep masks ``{layer: (S,) bool}`` under one global threshold (module docstring).

  Args:
    scores: per layer, ``(S,)`` scores with ``-inf`` for dead slots.
    ratio: fraction of live states to remove, in [0, 1).
    min_per_layer: states every layer keeps regardless of scores (capped at
      the layer's live count).
    groups: ``{layer: (S,) group ids}`` for the layers whose groups each keep
      ``min_per_group`` states (selective layers).
    min_per_group: see ``groups``.
  """
  check_ratio(ratio)
  min_per_layer = check_min_per_layer(min_per_layer)
  groups = groups or {}
  scores = {k: np.asarray(v, np.float64) for k, v in scores.items()}
  names = list(scores)
  n_live = sum(int(np.isfinite(s).sum()) for s in scores.values())
  k = target_count(n_live, ratio)
  keep = {
    name: forced_keeps(s, min_per_layer, groups.get(name), min_per_group)
    for name, s in scores.items()
  }
  remaining = k - sum(int(m.sum()) for m in keep.values())
  if remaining > 0:
    layer_idx = np.concatenate([np.full(s.shape, i) for i, s in enumerate(scores.values())])
    slot = np.concatenate([np.arange(s.size) for s in scores.values()])
    flat = np.concatenate(list(scores.values()))
    already = np.concatenate([keep[n] for n in names])
    candidates = np.flatnonzero(np.isfinite(flat) & ~already)
    order = candidates[np.lexsort((slot[candidates], layer_idx[candidates], -flat[candidates]))][
      :remaining
    ]
    for j in order:
      keep[names[layer_idx[j]]][slot[j]] = True
  return keep


def allocate_uniform(
  scores: dict[str, np.ndarray],
  ratio: float,
  min_per_layer: int = 1,
  groups: dict[str, np.ndarray] | None = None,
  min_per_group: int = 1,
) -> dict[str, np.ndarray]:
  """Keep masks with the same fraction kept in every layer (module docstring)."""
  ratio = check_ratio(ratio)
  min_per_layer = check_min_per_layer(min_per_layer)
  groups = groups or {}
  keep = {}
  for name, s in scores.items():
    s = np.asarray(s, np.float64)
    n = int(np.isfinite(s).sum())
    k = max(min(min_per_layer, n), floor_keep(n, ratio))
    keep[name] = keep_best(s, k, groups.get(name), min_per_layer, min_per_group)
  return keep


def allocate(
  scores: dict[str, np.ndarray],
  ratio: float,
  rule: str = "global",
  min_per_layer: int = 1,
  groups: dict[str, np.ndarray] | None = None,
  min_per_group: int = 1,
) -> dict[str, np.ndarray]:
  """Dispatches to `allocate_global` or `allocate_uniform` by ``rule``."""
  if rule not in RULES:
    raise ValueError(f"unknown allocation rule {rule!r}; expected one of {RULES}")
  fn = allocate_global if rule == "global" else allocate_uniform
  return fn(scores, ratio, min_per_layer, groups, min_per_group)


def allocate_counts(costs: dict[str, np.ndarray], keep_total: int) -> dict[str, int]:
  """States kept per layer, ``{layer: k}``, minimizing ``sum_l costs[l][k_l]`` subject to
  ``sum_l k_l = keep_total`` (exact, by dynamic programming over the layers).

  Args:
    costs: per layer, ``(n_l + 1,)`` float costs of keeping ``k = 0 .. n_l`` of its
      states; ``inf`` where a count is not allowed (below the layer's minimum).
    keep_total: states kept in all; raised to the smallest total the minimums allow.

  Ties go to the smaller count in the earlier layer. ``O(L K n)`` time.
  """
  names = list(costs)
  best = np.zeros(1)  # best[t]: least cost of the layers so far keeping t states in all
  choices = []
  for name in names:
    c = np.asarray(costs[name], np.float64)
    new = np.full(best.size + c.size - 1, np.inf)
    arg = np.zeros(new.size, int)
    for k in np.flatnonzero(np.isfinite(c)):
      candidate = best + c[k]
      window = new[k : k + best.size]
      better = candidate < window
      window[better] = candidate[better]
      arg[k : k + best.size][better] = k
    best = new
    choices.append(arg)
  feasible = np.flatnonzero(np.isfinite(best))
  if feasible.size == 0:
    raise ValueError("allocate_counts: some layer allows no count at all (every cost is inf)")
  t = int(min(max(keep_total, feasible[0]), feasible[-1]))
  counts = {}
  for name, arg in zip(reversed(names), reversed(choices)):
    counts[name] = int(arg[t])
    t -= counts[name]
  return {name: counts[name] for name in names}


def threshold(scores: dict[str, np.ndarray], keep: dict[str, np.ndarray]) -> float | None:
  """The global threshold: score of the weakest state kept on merit.

  That is the smallest kept score that is at least every pruned score; states
  kept only because of ``min_per_layer`` (weaker than some pruned state) are
  not counted. None if nothing is kept.
  """
  kept = np.concatenate([np.asarray(scores[n], np.float64)[keep[n]] for n in scores] + [[]])
  pruned = np.concatenate([np.asarray(scores[n], np.float64)[~keep[n]] for n in scores] + [[]])
  pruned = pruned[np.isfinite(pruned)]
  if pruned.size:
    kept = kept[kept >= pruned.max()]
  return float(kept.min()) if kept.size else None
