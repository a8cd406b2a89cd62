"""Perplexity curves and the how-far search for a Mamba-2 language model's states.

    from last_nnx.sweeps import lm as lm_sweep
    rows = lm_sweep.curves(model, calib, val, ratios=(0.1, 0.3, 0.5),
                           methods=lm_sweep.DEFAULT_METHODS, bytes_per_token=1.0)
    print(lm_sweep.table(rows))
    lm_sweep.plot(rows, "sweep/bpb.png", key="bits_per_byte")
    found = lm_sweep.max_drop(model, "calibrated/global/seq", calib, val, tolerance=5.0)

A **method** is ``criterion/allocation[/seq]`` (`parse_method`): a selective criterion
(``calibrated``, ``gramian``, ``magnitude``, ``random``), an allocation (``global``: LAST's
one threshold over layer-normalized scores; ``uniform``: the same fraction in every
layer; ``measured``: the counts that least raise the calibration loss, from each
layer's cut measured alone, `last_nnx.pruning.measured`) and whether layers are
re-scored sequentially on the model pruned so far (GHOST, `last_nnx.pruning.sequential`).
``calibrated/uniform/seq`` is GHOST's procedure.

Each point prunes a copy of the dense model in mask mode (the same shapes, so one
compiled forward serves every point; masked and compacted models give the same outputs,
tests/test_lm_pruning.py) and evaluates it on the eval windows: loss (nats per token),
perplexity, and bits per byte ``loss / ln 2 / bytes_per_token`` when given. ``random``
runs ``seeds`` seeds.

`max_drop`: the largest ratio whose eval perplexity stays within ``tolerance`` percent
of the dense model's (``ppl <= dense (1 + tolerance / 100)``): a grid in steps of
``step``, then bisection between the last ratio inside and the first outside.
"""

import dataclasses
import math

import numpy as np
from flax import nnx

from last_nnx.lm.generate import evaluate
from last_nnx.lm.prune import CALIBRATION_BATCH, prune_lm, state_counts

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_METHODS = (
  "calibrated/global",
  "calibrated/global/seq",
  "calibrated/uniform",
  "calibrated/uniform/seq",
  "calibrated/measured",
  "gramian/global",
  "gramian/uniform",
  "magnitude/global",
  "random/global",
)
CRITERIA = ("calibrated", "gramian", "magnitude", "random")
ALLOCATIONS = ("global", "uniform", "measured")


@dataclasses.dataclass(frozen=True)
class Method:
  criterion: str
  allocation: str
  sequential: bool

  @property
  def name(self) -> str:
    return f"{self.criterion}/{self.allocation}{'/seq' if self.sequential else ''}"


def parse_method(spec: str) -> Method:
  """``'criterion/allocation[/seq]'`` (allocation defaults to ``global``)."""
  parts = [p.strip() for p in spec.split("/") if p.strip()]
  seq = bool(parts) and parts[-1] in ("seq", "sequential")
  if seq:
    parts = parts[:-1]
  if (
    not parts
    or len(parts) > 2
    or parts[0] not in CRITERIA
    or (len(parts) == 2 and parts[1] not in ALLOCATIONS)
  ):
    raise ValueError(
      f"method {spec!r}: write criterion/allocation[/seq] with a criterion in "
      f"{CRITERIA} and an allocation in {ALLOCATIONS} (e.g. calibrated/uniform/seq)"
    )
  return Method(parts[0], parts[1] if len(parts) == 2 else "global", seq)


def text_metrics(model, windows, bytes_per_token, batch_size: int = 16) -> dict:
  """Loss (nats per token) and perplexity of ``model`` on ``windows`` ((n, L + 1) int32),
  and bits per byte when ``bytes_per_token`` is given."""
  m = evaluate(model, windows, batch_size)
  out = {"loss": m["loss"], "perplexity": m["perplexity"]}
  if bytes_per_token:
    out["bits_per_byte"] = m["loss"] / math.log(2) / bytes_per_token
  return out


def prune_point(
  dense: nnx.Module,
  method: Method | str,
  ratio: float,
  calibration,
  *,
  seed: int = 0,
  mode: str = "mask",
  batch_size: int = CALIBRATION_BATCH,
  layer_costs: dict | None = None,
):
  """``(pruned copy, report)``: ``dense`` untouched. ``layer_costs``: a ``measured``
  method's costs from an earlier report of the same method and seed (not measured again)."""
  method = parse_method(method) if isinstance(method, str) else method
  model = nnx.clone(dense)
  report = prune_lm(
    model,
    ratio,
    criterion=method.criterion,
    allocation=method.allocation,
    sequential=method.sequential,
    calibration=calibration,
    seed=seed,
    mode=mode,
    batch_size=batch_size,
    layer_costs=layer_costs,
  )
  return model, report


def curves(
  dense: nnx.Module,
  calibration,
  windows,
  *,
  ratios=DEFAULT_RATIOS,
  methods=DEFAULT_METHODS,
  seeds: int = 3,
  bytes_per_token: float | None = None,
  eval_batch_size: int = 16,
  log=None,
) -> list[dict]:
  """Rows ``{method, criterion, allocation, sequential, seed, ratio, loss, perplexity,
  [bits_per_byte], per_layer}``, the dense model first (ratio 0, method ``dense``).

  ``calibration``: windows ``(n, L)`` the scores read; ``windows``: the eval windows.
  ``log``: called with each row as it is measured (progress).
  """
  base = {
    "method": "dense",
    "criterion": "dense",
    "allocation": "-",
    "sequential": False,
    "seed": 0,
    "ratio": 0.0,
    "per_layer": list(state_counts(dense)),
  }
  rows = [{**base, **text_metrics(dense, windows, bytes_per_token, eval_batch_size)}]
  if log:
    log(rows[0])
  for spec in methods:
    method = parse_method(spec)
    for seed in range(seeds if method.criterion == "random" else 1):
      costs = None  # measured once per method and seed, reused at every ratio
      for ratio in ratios:
        model, report = prune_point(dense, method, ratio, calibration, seed=seed, layer_costs=costs)
        costs = report.layer_costs
        row = {
          "method": method.name,
          "criterion": method.criterion,
          "allocation": method.allocation,
          "sequential": method.sequential,
          "seed": seed,
          "ratio": float(ratio),
          "ratio_achieved": report.ratio_achieved,
          "per_layer": report.per_layer(),
          **text_metrics(model, windows, bytes_per_token, eval_batch_size),
        }
        rows.append(row)
        if log:
          log(row)
  return rows


def mean_rows(rows: list[dict], key: str) -> dict[str, dict[float, tuple[float, float]]]:
  """``{method: {ratio: (mean, std over seeds)}}`` of ``key``."""
  out: dict = {}
  for r in rows:
    out.setdefault(r["method"], {}).setdefault(r["ratio"], []).append(r[key])
  return {
    m: {x: (float(np.mean(v)), float(np.std(v))) for x, v in sorted(c.items())}
    for m, c in out.items()
  }


def table(rows: list[dict], key: str = "perplexity", fmt: str = "{:.3f}") -> str:
  """Markdown: one row per method, one column per ratio (random: mean ± std over seeds)."""
  means = mean_rows(rows, key)
  dense = means.pop("dense", {}).get(0.0, (float("nan"), 0.0))[0]
  ratios = sorted({x for c in means.values() for x in c})
  lines = [
    f"| method ({key}; dense {fmt.format(dense)}) | "
    + " | ".join(f"{100 * x:.0f}%" for x in ratios)
    + " |",
    "|---|" + "---|" * len(ratios),
  ]
  for method, c in means.items():
    cells = []
    for x in ratios:
      if x not in c:
        cells.append("")
        continue
      mean, std = c[x]
      cells.append(fmt.format(mean) + (f" ± {fmt.format(std)}" if std > 0 else ""))
    lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def achieved_table(rows: list[dict]) -> str:
  """Markdown: the fraction of states each method pruned at each ratio asked, for the
  methods where it differs from the ratio by more than half a percent (seed 0)."""
  achieved = mean_rows(
    [r for r in rows if "ratio_achieved" in r and r["seed"] == 0], "ratio_achieved"
  )
  ratios = sorted({x for c in achieved.values() for x in c})
  lines = ["| method | " + " | ".join(f"{100 * x:.0f}%" for x in ratios) + " |"]
  lines.append("|---|" + "---|" * len(ratios))
  for method, c in achieved.items():
    if any(abs(c[x][0] - x) > 0.005 for x in c):
      cells = [f"{100 * c[x][0]:.1f}%" if x in c else "" for x in ratios]
      lines.append(f"| {method} | " + " | ".join(cells) + " |")
  return "\n".join(lines) if len(lines) > 2 else "every method pruned the ratio asked (±0.5%)"


def allocation_table(rows: list[dict], ratios=(0.5, 0.7)) -> str:
  """Markdown: states kept per layer at ``ratios`` for every method (seed 0)."""
  lines = ["| method | ratio | states kept per layer |", "|---|---|---|"]
  dense = next((r for r in rows if r["method"] == "dense"), None)
  if dense:
    lines.append(f"| dense | 0% | {' '.join(str(n) for n in dense['per_layer'])} |")
  for r in rows:
    if r["seed"] == 0 and any(abs(r["ratio"] - x) < 1e-9 for x in ratios):
      lines.append(
        f"| {r['method']} | {100 * r['ratio']:.0f}% | {' '.join(str(n) for n in r['per_layer'])} |"
      )
  return "\n".join(lines)


def plot(
  rows: list[dict],
  path: str,
  *,
  key: str = "perplexity",
  title: str = "",
  log_scale: bool = False,
  over_dense: bool = False,
) -> str:
  """``key`` vs the fraction of states pruned, one line per method (random: mean, shaded
  ± std); writes ``path``. The x of a point is the ratio its method achieved (uniform
  allocation keeps ``floor(N (1 - r))`` per layer, so it can prune more than asked).
  ``over_dense``: ``key`` minus the dense model's, on a log scale (small gaps readable);
  points at or below dense (a gap of zero or less) are left out of their line.
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  means = mean_rows(rows, key)
  achieved = mean_rows([r for r in rows if "ratio_achieved" in r], "ratio_achieved")
  dense = means.pop("dense", {}).get(0.0, (None, 0.0))[0]
  fig, ax = plt.subplots(figsize=(6.8, 4.4))
  for i, (method, c) in enumerate(means.items()):
    ratios = sorted(c)
    x = np.array([achieved.get(method, {}).get(r, (r, 0.0))[0] for r in ratios])
    mean = np.array([c[r][0] for r in ratios]) - (dense if over_dense and dense else 0.0)
    std = np.array([c[r][1] for r in ratios])
    if over_dense:
      mean = np.where(mean > 0, mean, np.nan)  # a log axis has no place for gaps <= 0
    color = plt.get_cmap("tab10")(i % 10)
    style = "--" if method.endswith("/seq") else "-"
    ax.plot(100 * x, mean, style, marker="o", ms=3, label=method, color=color)
    if std.any():
      low = np.maximum(mean - std, mean / 10) if over_dense else mean - std
      ax.fill_between(100 * x, low, mean + std, alpha=0.2, color=color)
  if dense is not None and not over_dense:
    ax.axhline(dense, color="gray", ls=":", lw=1, label="dense")
  if log_scale or over_dense:
    ax.set_yscale("log")
  ax.set_xlabel("states pruned (%, as achieved)")
  label = key.replace("_", " ")
  ax.set_ylabel(f"{label} minus dense ({dense:.4g})" if over_dense and dense else label)
  ax.set_title(title or f"One-shot state pruning, no fine-tuning: {key}")
  ax.legend(fontsize=7)
  ax.grid(alpha=0.3, which="both")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def max_drop(
  dense: nnx.Module,
  method: Method | str,
  calibration,
  windows,
  tolerance: float,
  *,
  step: float = 0.1,
  bisections: int = 4,
  seed: int = 0,
  eval_batch_size: int = 16,
) -> dict:
  """The largest ratio with eval perplexity ``<= dense (1 + tolerance / 100)`` (module doc).

  Returns ``{'method', 'tolerance', 'dense', 'limit', 'ratio', 'perplexity', 'per_layer',
  'tried': [(ratio, perplexity), ...]}``; ``ratio`` 0 (nothing pruned) when even the
  first grid point is outside.
  """
  if not tolerance >= 0:
    raise ValueError(
      f"max_drop: tolerance {tolerance} must be >= 0 (percent of the dense "
      "perplexity, e.g. 5 allows 5% higher perplexity)"
    )
  method = parse_method(method) if isinstance(method, str) else method
  dense_ppl = evaluate(dense, windows, eval_batch_size)["perplexity"]
  limit = dense_ppl * (1.0 + tolerance / 100.0)
  tried = []
  costs = None  # a measured method's layer costs, measured at the first ratio tried

  def ppl(r):
    nonlocal costs
    model, report = prune_point(dense, method, r, calibration, seed=seed, layer_costs=costs)
    costs = report.layer_costs
    p = evaluate(model, windows, eval_batch_size)["perplexity"]
    tried.append((float(r), p, report.per_layer()))
    return p

  good, bad = 0.0, None
  r = step
  while r < 1.0 - 1e-9:
    if ppl(r) <= limit:
      good = r
      r = round(r + step, 10)
    else:
      bad = r
      break
  hi = bad if bad is not None else 0.99
  for _ in range(bisections if hi - good > 1e-3 else 0):
    mid = (good + hi) / 2
    if ppl(mid) <= limit:
      good = mid
    else:
      hi = mid
  best = next((t for t in tried if t[0] == good), (0.0, dense_ppl, list(state_counts(dense))))
  return {
    "method": method.name,
    "tolerance": float(tolerance),
    "dense": dense_ppl,
    "limit": limit,
    "ratio": good,
    "perplexity": best[1],
    "per_layer": best[2],
    "tried": [(r, p) for r, p, _ in tried],
  }
