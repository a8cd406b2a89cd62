"""Sweep plots (matplotlib, imported on first use): accuracy vs ratio, allocation, scores.

Every figure made on synthetic data says so in its title.
"""

import itertools

import numpy as np

from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.sweeps.points import CRITERIA, mean_curve


def measured_criteria(points: list[dict]) -> list[str]:
  """The criteria of the one-shot points: `CRITERIA` order first, then the others sorted
  (e.g. the selective-only ``gramian``)."""
  measured = {p["criterion"] for p in points if p["kind"] == "one_shot"} - {"dense"}
  return [c for c in CRITERIA if c in measured] + sorted(measured - set(CRITERIA))


def plot_curves(
  points: list[dict], path: str, *, synthetic: bool, split: str = "test"
) -> list[str]:
  """Accuracy vs pruning ratio, one line (mean, shaded spread) per criterion."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  key = f"{split}_accuracy"
  dense = next((p[key] for p in points if p["criterion"] == "dense" and key in p), None)
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  drawn = []
  for c in measured_criteria(points):
    curve = mean_curve(points, c, key)
    if not curve:
      continue
    if dense is not None:
      curve.setdefault(0.0, (dense, 0.0))
    r = np.array(sorted(curve))
    mean = np.array([curve[x][0] for x in r])
    std = np.array([curve[x][1] for x in r])
    # tab20: one colour per criterion (the default cycle of 10 repeats past ten criteria).
    color = plt.get_cmap("tab20")(len(drawn) % 20)
    ax.plot(100 * r, 100 * mean, marker="o", ms=3, label=c, color=color)
    if std.any():
      ax.fill_between(100 * r, 100 * (mean - std), 100 * (mean + std), alpha=0.2, color=color)
    drawn.append(c)
  if dense is not None:
    ax.axhline(100 * dense, color="gray", ls=":", lw=1, label="dense")
  ax.set_xlabel("states pruned (%)")
  ax.set_ylabel(f"{split} accuracy (%)")
  ax.set_title("One-shot pruning, no retraining" + (" (SYNTHETIC data)" if synthetic else ""))
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return drawn


ALLOCATION_CRITERIA = ("last", "energy", "uniform", "global_hinf")


def plot_allocation(
  points: list[dict], path: str, *, ratios=(0.3, 0.5), criteria=None, synthetic: bool
) -> None:
  """States kept per layer at chosen ratios: the layer-adaptive allocation.

  ``criteria`` None: up to four measured criteria, those of `ALLOCATION_CRITERIA`
  first, then the others but random (a selective model's sweep has few of them).
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  if criteria is None:
    measured = measured_criteria(points)
    first = [c for c in ALLOCATION_CRITERIA if c in measured]
    criteria = (first + [c for c in measured if c not in first and c != "random"])[:4]
  dense = next(p for p in points if p["criterion"] == "dense")
  layers = list(dense["states"])
  fig, axes = plt.subplots(1, len(ratios), figsize=(5 * len(ratios), 3.6), squeeze=False)
  for ax, ratio in zip(axes[0], ratios):
    width = 0.8 / (len(criteria) + 1)
    x = np.arange(len(layers))
    ax.bar(x, [dense["states"][l] for l in layers], width, label="dense", color="lightgray")
    for i, c in enumerate(criteria):
      p = next(
        (
          p
          for p in points
          if p["kind"] == "one_shot"
          and p["criterion"] == c
          and abs(p["ratio"] - ratio) < 1e-6
          and p["seed"] == 0
        ),
        None,
      )
      if p is not None:
        ax.bar(x + (i + 1) * width, [p["states"][l] for l in layers], width, label=c)
    ax.set_xticks(
      x + 0.4 - width / 2, [l.replace(".ssm", "").replace("blocks.", "L") for l in layers]
    )
    ax.set_title(f"{100 * ratio:.0f}% of states pruned" + (" (SYNTHETIC)" if synthetic else ""))
    ax.set_ylabel("states kept")
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_scores(model, path: str, *, synthetic: bool, criteria=None, calibration=None) -> bool:
  """Per-layer distributions of the scores (log scale), one panel per criterion.

  ``criteria`` None: ``last`` and ``energy`` on an LTI model, ``calibrated`` and
  ``gramian`` on a selective one; those that need calibration batches are left
  out without ``calibration`` (training batches, as `last_nnx.pruning.score`
  takes). Returns whether a figure was written (False: no criterion left).
  """
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from last_nnx import pruning

  if criteria is None:
    applicable = pruning.applicable(model)
    criteria = [c for c in ("last", "energy") if c in applicable] or [
      c for c in ("calibrated", "gramian") if c in applicable
    ]
  if calibration is None:
    criteria = [c for c in criteria if not pruning.needs_calibration(model, c)]
  elif any(pruning.needs_calibration(model, c) for c in criteria):
    # A list: each criterion reads the same batches (a generator would be consumed).
    calibration = list(itertools.islice(calibration, DEFAULT_BATCHES))
  if not criteria:
    return False
  fig, axes = plt.subplots(1, len(criteria), figsize=(5.5 * len(criteria), 3.6), squeeze=False)
  for ax, c in zip(axes[0], criteria):
    scores = pruning.score(model, c, calibration=calibration)
    data = [np.log10(np.maximum(s[np.isfinite(s)], 1e-30)) for s in scores.values()]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(
      range(1, len(scores) + 1), [l.replace(".ssm", "").replace("blocks.", "L") for l in scores]
    )
    ax.set_ylabel(f"log10 {c} score")
    ax.set_title(f"{c} scores per layer" + (" (SYNTHETIC)" if synthetic else ""))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return True
