"""Sweep reports: accuracy-loss tables, compressibility, points as CSV/JSON, and the plots.

Outputs in the sweep directory: ``points.csv``, ``points.json``, ``table.md``
(accuracy loss per ratio and criterion, plus compressibility: the largest ratio
within 0.5 / 1 point of the dense model), ``accuracy_vs_ratio.png``,
``allocation.png`` (states kept per layer), ``scores.png`` (per-layer score
distributions; `last_nnx.sweeps.plots`).
"""

import csv
import json
import os

import numpy as np

from last_nnx.sweeps import plots
from last_nnx.sweeps.max_drop import finetune_epochs_of
from last_nnx.sweeps.points import PointStore, mean_curve


def compressibility(points: list[dict], split: str = "test", tolerances=(0.5, 1.0)) -> dict:
  """Per criterion: the largest ratio whose mean accuracy loss stays within each tolerance.

  Accuracy loss is in points (percent). A ratio counts only if every smaller
  measured ratio also stayed within the tolerance (the curve is read from 0).
  """
  key = f"{split}_accuracy"
  dense = [p[key] for p in points if p["criterion"] == "dense" and key in p]
  if not dense:
    return {}
  dense_acc = dense[0]
  out = {}
  for criterion in sorted({p["criterion"] for p in points if p["kind"] == "one_shot"} - {"dense"}):
    curve = mean_curve(points, criterion, key)
    out[criterion] = {}
    for tol in tolerances:
      best = 0.0
      for ratio, (mean, _) in sorted(curve.items()):
        if 100 * (dense_acc - mean) > tol:
          break
        best = ratio
      out[criterion][f"within_{tol}"] = best
  return out


def write_table(points: list[dict], path: str, *, synthetic: bool, split: str = "test") -> str:
  """Markdown: accuracy loss (points) per ratio and criterion, then compressibility."""
  key = f"{split}_accuracy"
  dense = next((p[key] for p in points if p["criterion"] == "dense" and key in p), None)
  lines = []
  if synthetic:
    lines.append("_Synthetic data: these numbers are not LRA results._\n")
  if dense is None:
    return ""
  criteria = plots.measured_criteria(points)
  ratios = sorted({round(p["ratio"], 4) for p in points if p["kind"] == "one_shot"} - {0.0})
  lines.append(
    f"Dense {split} accuracy: {100 * dense:.2f}%. Accuracy loss in points "
    f"(dense minus pruned; mean ± std over seeds) at each pruning ratio:\n"
  )
  lines.append("| criterion | " + " | ".join(f"{100 * r:.0f}%" for r in ratios) + " |")
  lines.append("|---|" + "---|" * len(ratios))
  for c in criteria:
    curve = mean_curve(points, c, key)
    cells = []
    for r in ratios:
      if r in curve:
        mean, std = curve[r]
        cells.append(f"{100 * (dense - mean):.2f}" + (f" ± {100 * std:.2f}" if std else ""))
      else:
        cells.append("")
    lines.append(f"| {c} | " + " | ".join(cells) + " |")
  comp = compressibility(points, split)
  if comp:
    lines.append("\nCompressibility: largest pruning ratio within 0.5 / 1 point of dense:\n")
    lines.append("| criterion | ≤ 0.5 pt | ≤ 1 pt |")
    lines.append("|---|---|---|")
    for c in criteria:
      if c in comp:
        lines.append(
          f"| {c} | {100 * comp[c]['within_0.5']:.0f}% | {100 * comp[c]['within_1.0']:.0f}% |"
        )
  searched = [p for p in points if p["kind"] == "max_drop"]
  if searched:
    lines.append(
      "\nHow far can I prune: largest ratio within the tolerance on val "
      "(bisection), and test accuracy there:\n"
    )
    lines.append(
      "| criterion | tolerance (pt) | fine-tune epochs | pruned | val acc | "
      "test acc | test drop (pt) |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for p in sorted(searched, key=lambda p: (finetune_epochs_of(p), -p["ratio"], p["criterion"])):
      lines.append(
        f"| {p['criterion']} | {p['max_drop']:g} | {finetune_epochs_of(p)} | "
        f"{100 * p['ratio']:.1f}% | {100 * p['val_accuracy']:.2f} | "
        f"{100 * p['test_accuracy']:.2f} | {100 * (dense - p['test_accuracy']):.2f} |"
      )
  iters = sorted((p for p in points if p["kind"] == "iterative"), key=lambda p: p["ratio"])
  if iters:
    lines.append("\nIterative prune-and-fine-tune:\n")
    lines.append("| criterion | pruned | val acc before fine-tune | val acc | test acc |")
    lines.append("|---|---|---|---|---|")
    for p in iters:
      lines.append(
        f"| {p['criterion']} | {100 * p['ratio_achieved']:.1f}% | "
        f"{100 * p['val_accuracy_before_finetune']:.2f} | "
        f"{100 * p['val_accuracy']:.2f} | "
        f"{100 * p.get('test_accuracy', float('nan')):.2f} |"
      )
  text = "\n".join(lines) + "\n"
  with open(path, "w") as f:
    f.write(text)
  return text


def write_points(points: list[dict], directory: str) -> None:
  with open(os.path.join(directory, "points.json"), "w") as f:
    json.dump(points, f, indent=1)
  columns = [
    "kind",
    "criterion",
    "ratio",
    "seed",
    "ratio_achieved",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "threshold",
  ]
  with open(os.path.join(directory, "points.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(points)


def write_report(
  store: PointStore, directory: str, *, synthetic: bool, model=None, calibration=None
) -> str:
  """Writes the points, ``table.md`` and the plots; returns the table.

  ``model``: the swept model, for ``scores.png`` (its scores under criteria that
  apply to it; with ``calibration``, training batches, also the calibrated ones).
  """
  points = list(store.points.values())
  write_points(points, directory)
  text = write_table(points, os.path.join(directory, "table.md"), synthetic=synthetic)
  if any(p["kind"] == "one_shot" and p["criterion"] != "dense" for p in points):
    plots.plot_curves(points, os.path.join(directory, "accuracy_vs_ratio.png"), synthetic=synthetic)
    plots.plot_allocation(points, os.path.join(directory, "allocation.png"), synthetic=synthetic)
  if model is not None:
    plots.plot_scores(
      model, os.path.join(directory, "scores.png"), synthetic=synthetic, calibration=calibration
    )
  return text


def average_compressibility(directories: list[str], split: str = "test") -> str:
  """Markdown table of compressibility per task and its average over tasks."""
  rows, per_task = [], {}
  for d in directories:
    with open(os.path.join(d, "points.json")) as f:
      per_task[d] = compressibility(json.load(f), split)
  criteria = sorted({c for comp in per_task.values() for c in comp})
  rows.append(
    "| criterion | "
    + " | ".join(os.path.basename(os.path.dirname(d.rstrip("/"))) or d for d in directories)
    + " | average |"
  )
  rows.append("|---|" + "---|" * (len(directories) + 1))
  for c in criteria:
    vals = [per_task[d].get(c, {}).get("within_1.0", float("nan")) for d in directories]
    rows.append(
      f"| {c} (≤1 pt) | "
      + " | ".join(f"{100 * v:.0f}%" for v in vals)
      + f" | {100 * np.nanmean(vals):.1f}% |"
    )
  return "\n".join(rows) + "\n"
