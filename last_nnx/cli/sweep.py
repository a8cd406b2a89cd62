r"""Pruning sweeps: one-shot curves and iterative prune-and-fine-tune schedules.

  python -m last_nnx.sweep --workdir runs/listops-s5              # one-shot curves
  python -m last_nnx.sweep --workdir runs/listops-s5 --iterative --target=0.8 --steps=4
  python -m last_nnx.sweep --report runs/a/sweep runs/b/sweep     # compressibility over tasks

One-shot: every criterion at every ratio (``random`` over several seeds) prunes a
copy of the trained model, with no retraining, and is evaluated on val and
test. Iterative: prune by steps toward a target, fine-tuning between steps.
Each point is appended to ``points.jsonl`` as soon as it is measured, so a
rerun skips finished points. Outputs in the sweep directory: ``points.csv``,
``points.json``, ``table.md`` (accuracy loss per ratio and criterion, plus
compressibility: the largest ratio within 0.5 / 1 point of the dense model),
``accuracy_vs_ratio.png``, ``allocation.png`` (states kept per layer),
``scores.png`` (per-layer score distributions).

A criterion is a registered name, or ``name@T``: the same criterion with its
norms taken over ``T`` steps (``name@L``: the task's sequence length) instead of
infinite time (see `last_nnx.pruning.hinf`). ``last@L`` is in the default set.
"""

import csv
import json
import math
import os
import sys

import numpy as np
from absl import app, flags, logging
from flax import nnx

from last_nnx.prune_search import (max_drop_points, max_drop_search, own_buffers,
                                   parse_criterion, prune_copy)

CRITERIA = ("last", "last@L", "energy", "calibrated", "balanced", "balanced@L",
            "calibrated_balanced", "uniform", "global_hinf", "magnitude", "random")

DEFAULT_RATIOS = tuple(round(0.1 * i, 2) for i in range(10))


# ----------------------------------------------------------------------------
# Points: measured once, stored as JSON lines, skipped on rerun.


def point_key(p: dict) -> str:
  return f"{p['kind']}|{p['criterion']}|{p['ratio']:.4f}|{p['seed']}"


class PointStore:
  """Append-only JSONL of measured points (tolerates a torn last line)."""

  def __init__(self, directory: str):
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, "points.jsonl")
    self.points: dict[str, dict] = {}
    if os.path.exists(self.path):
      with open(self.path) as f:
        for line in f:
          try:
            p = json.loads(line)
          except json.JSONDecodeError:
            logging.warning("ignoring a torn line in %s", self.path)
            continue
          self.points[point_key(p)] = p

  def __contains__(self, key: str) -> bool:
    return key in self.points

  def add(self, point: dict) -> None:
    self.points[point_key(point)] = point
    with open(self.path, "a") as f:
      f.write(json.dumps(point) + "\n")
      f.flush()
      os.fsync(f.fileno())


# ----------------------------------------------------------------------------
# Measuring.


def _evaluate(model, task, splits):
  from last_nnx.train.steps import evaluate
  out = {}
  for split in splits:
    m = evaluate(model, task, split)
    out[f"{split}_accuracy"], out[f"{split}_loss"] = m["accuracy"], m["loss"]
  return out


def one_shot(model, task, config, store: PointStore, *, ratios, criteria, seeds: int,
             splits=("val", "test"), recalibrate_batches: int = 0,
             calibration_batches: int = 4) -> None:
  """Measures every (criterion, ratio, seed) point not yet in ``store``.

  Masked pruning is used for subset criteria: the same outputs as compaction
  (tested), and no recompilation between points; reduction criteria
  (``balanced``) compact each copy. Calibrated criteria read
  ``calibration_batches`` training batches. ``recalibrate_batches > 0`` re-estimates the
  BatchNorm statistics of each pruned copy on that many training batches
  (`last_nnx.train.batchnorm`) before evaluating it.
  """
  from last_nnx import pruning
  from last_nnx.train.batchnorm import recalibrate_batch_norm
  from last_nnx.train.events import states_per_layer
  base = states_per_layer(model)
  dense_key = point_key(dict(kind="one_shot", criterion="dense", ratio=0.0, seed=0))
  if dense_key not in store:
    store.add(dict(kind="one_shot", criterion="dense", ratio=0.0, seed=0, states=base,
                   ratio_achieved=0.0, **_evaluate(model, task, splits)))
  todo = [(c, r, s) for c in criteria for r in ratios
          for s in range(seeds if c == "random" else 1)]
  for i, (criterion, ratio, seed) in enumerate(todo):
    point = dict(kind="one_shot", criterion=criterion, ratio=float(ratio), seed=seed)
    if point_key(point) in store:
      continue
    pruned, report = prune_copy(model, task, criterion, ratio, seed=seed,
                                calibration_batches=calibration_batches)
    if recalibrate_batches:
      recalibrate_batch_norm(pruned, task.train_batches(0), max_batches=recalibrate_batches)
    states = states_per_layer(pruned)
    point.update(states=states, ratio_achieved=1 - sum(states.values()) / sum(base.values()),
                 threshold=report.threshold, recalibrate_batches=recalibrate_batches,
                 **_evaluate(pruned, task, splits))
    store.add(point)
    logging.info("[%d/%d] %s r=%.2f seed %d: val acc %.4f", i + 1, len(todo), criterion, ratio,
                 seed, point.get("val_accuracy", float("nan")))


def iterative(model, task, config, store: PointStore, *, criterion: str, target: float,
              steps: int, finetune_epochs: int, splits=("val", "test")) -> None:
  """Prunes toward ``target`` in ``steps`` equal cumulative steps, fine-tuning between.

  Compaction is used (the model really shrinks and trains on). The model is
  carried from step to step, so a rerun restarts the schedule but skips the
  measurements already stored only if the whole schedule finished.
  """
  from last_nnx import pruning
  from last_nnx.train import events, steps as train_steps
  from last_nnx.train.optim import make_optimizer
  keys = [point_key(dict(kind="iterative", criterion=criterion, ratio=target * (k + 1) / steps,
                         seed=0)) for k in range(steps)]
  if all(k in store for k in keys):
    return
  name, horizon = parse_criterion(criterion, task.seq_len)
  base = events.states_per_layer(model)
  n0 = sum(base.values())
  model.train()
  for k in range(steps):
    cumulative = target * (k + 1) / steps
    now = sum(events.states_per_layer(model).values())
    ratio = pruning.event_ratio(cumulative, now, n0)
    optimizer, _ = make_optimizer(model, config.optim, total_steps=max(1, finetune_epochs * (
        task.steps_per_epoch)), steps_per_epoch=task.steps_per_epoch)
    pruning.prune(model, ratio, criterion=name, mode="compact", optimizer=optimizer,
                  horizon=horizon)
    after_prune = _evaluate(model, task, ("val",))
    for epoch in range(finetune_epochs):
      train_steps.fit(model, optimizer, task.train_batches(1000 + 10 * k + epoch))
    states = events.states_per_layer(model)
    point = dict(kind="iterative", criterion=criterion, ratio=cumulative, seed=0, states=states,
                 ratio_achieved=1 - sum(states.values()) / n0,
                 val_accuracy_before_finetune=after_prune["val_accuracy"],
                 **_evaluate(model, task, splits))
    store.add(point)
    logging.info("iterative step %d/%d: %.0f%% pruned, val acc %.4f -> %.4f after fine-tuning",
                 k + 1, steps, 100 * point["ratio_achieved"], after_prune["val_accuracy"],
                 point["val_accuracy"])


# ----------------------------------------------------------------------------
# Reporting.


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
    curve = _mean_curve(points, criterion, key)
    out[criterion] = {}
    for tol in tolerances:
      best = 0.0
      for ratio, (mean, _) in sorted(curve.items()):
        if 100 * (dense_acc - mean) > tol:
          break
        best = ratio
      out[criterion][f"within_{tol}"] = best
  return out


def _mean_curve(points, criterion, key) -> dict[float, tuple[float, float]]:
  by_ratio: dict[float, list[float]] = {}
  for p in points:
    if p["kind"] == "one_shot" and p["criterion"] == criterion and key in p:
      by_ratio.setdefault(round(p["ratio"], 4), []).append(p[key])
  return {r: (float(np.mean(v)), float(np.std(v))) for r, v in by_ratio.items()}


def write_table(points: list[dict], path: str, *, synthetic: bool, split: str = "test") -> str:
  """Markdown: accuracy loss (points) per ratio and criterion, then compressibility."""
  key = f"{split}_accuracy"
  dense = next((p[key] for p in points if p["criterion"] == "dense" and key in p), None)
  lines = []
  if synthetic:
    lines.append("_Synthetic data: these numbers are not LRA results._\n")
  if dense is None:
    return ""
  measured = {p["criterion"] for p in points if p["kind"] == "one_shot"} - {"dense"}
  criteria = [c for c in CRITERIA if c in measured] + sorted(measured - set(CRITERIA))
  ratios = sorted({round(p["ratio"], 4) for p in points if p["kind"] == "one_shot"} - {0.0})
  lines.append(f"Dense {split} accuracy: {100 * dense:.2f}%. Accuracy loss in points "
               f"(dense minus pruned; mean ± std over seeds) at each pruning ratio:\n")
  lines.append("| criterion | " + " | ".join(f"{100 * r:.0f}%" for r in ratios) + " |")
  lines.append("|---|" + "---|" * len(ratios))
  for c in criteria:
    curve = _mean_curve(points, c, key)
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
        lines.append(f"| {c} | {100 * comp[c]['within_0.5']:.0f}% | "
                     f"{100 * comp[c]['within_1.0']:.0f}% |")
  searched = [p for p in points if p["kind"] == "max_drop"]
  if searched:
    lines.append("\nHow far can I prune: largest ratio within the tolerance on val "
                 "(bisection), and test accuracy there:\n")
    lines.append("| criterion | tolerance (pt) | fine-tune epochs | pruned | val acc | "
                 "test acc | test drop (pt) |")
    lines.append("|---|---|---|---|---|---|---|")
    for p in sorted(searched, key=lambda p: (p["seed"], -p["ratio"], p["criterion"])):
      lines.append(f"| {p['criterion']} | {p['max_drop']:g} | {p['seed']} | "
                   f"{100 * p['ratio']:.1f}% | {100 * p['val_accuracy']:.2f} | "
                   f"{100 * p['test_accuracy']:.2f} | {100 * (dense - p['test_accuracy']):.2f} |")
  iters = sorted((p for p in points if p["kind"] == "iterative"), key=lambda p: p["ratio"])
  if iters:
    lines.append("\nIterative prune-and-fine-tune:\n")
    lines.append("| criterion | pruned | val acc before fine-tune | val acc | test acc |")
    lines.append("|---|---|---|---|---|")
    for p in iters:
      lines.append(f"| {p['criterion']} | {100 * p['ratio_achieved']:.1f}% | "
                   f"{100 * p['val_accuracy_before_finetune']:.2f} | "
                   f"{100 * p['val_accuracy']:.2f} | {100 * p.get('test_accuracy', float('nan')):.2f} |")
  text = "\n".join(lines) + "\n"
  with open(path, "w") as f:
    f.write(text)
  return text


def write_points(points: list[dict], directory: str) -> None:
  with open(os.path.join(directory, "points.json"), "w") as f:
    json.dump(points, f, indent=1)
  columns = ["kind", "criterion", "ratio", "seed", "ratio_achieved", "val_accuracy",
             "val_loss", "test_accuracy", "test_loss", "threshold"]
  with open(os.path.join(directory, "points.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(points)


def plot_curves(points: list[dict], path: str, *, synthetic: bool, split: str = "test") -> list[str]:
  """Accuracy vs pruning ratio, one line (mean, shaded spread) per criterion."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  key = f"{split}_accuracy"
  dense = next((p[key] for p in points if p["criterion"] == "dense" and key in p), None)
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  drawn = []
  for c in CRITERIA:
    curve = _mean_curve(points, c, key)
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


def plot_allocation(points: list[dict], path: str, *, ratios=(0.3, 0.5),
                    criteria=("last", "energy", "uniform", "global_hinf"),
                    synthetic: bool) -> None:
  """States kept per layer at chosen ratios: the layer-adaptive allocation."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  dense = next(p for p in points if p["criterion"] == "dense")
  layers = list(dense["states"])
  fig, axes = plt.subplots(1, len(ratios), figsize=(5 * len(ratios), 3.6), squeeze=False)
  for ax, ratio in zip(axes[0], ratios):
    width = 0.8 / (len(criteria) + 1)
    x = np.arange(len(layers))
    ax.bar(x, [dense["states"][l] for l in layers], width, label="dense", color="lightgray")
    for i, c in enumerate(criteria):
      p = next((p for p in points if p["kind"] == "one_shot" and p["criterion"] == c
                and abs(p["ratio"] - ratio) < 1e-6 and p["seed"] == 0), None)
      if p is not None:
        ax.bar(x + (i + 1) * width, [p["states"][l] for l in layers], width, label=c)
    ax.set_xticks(x + 0.4 - width / 2, [l.replace(".ssm", "").replace("blocks.", "L")
                                         for l in layers])
    ax.set_title(f"{100 * ratio:.0f}% of states pruned" + (" (SYNTHETIC)" if synthetic else ""))
    ax.set_ylabel("states kept")
  handles, labels = axes[0][0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_scores(model, path: str, *, synthetic: bool, criteria=("last", "energy")) -> None:
  """Per-layer distributions of the scores (log scale), one panel per criterion."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from last_nnx import pruning
  fig, axes = plt.subplots(1, len(criteria), figsize=(5.5 * len(criteria), 3.6), squeeze=False)
  for ax, c in zip(axes[0], criteria):
    scores = pruning.score(model, c)
    data = [np.log10(np.maximum(s[np.isfinite(s)], 1e-30)) for s in scores.values()]
    ax.boxplot(data, showfliers=True)
    ax.set_xticks(range(1, len(scores) + 1),
                  [l.replace(".ssm", "").replace("blocks.", "L") for l in scores])
    ax.set_ylabel(f"log10 {c} score")
    ax.set_title(f"{c} scores per layer" + (" (SYNTHETIC)" if synthetic else ""))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(store: PointStore, directory: str, *, synthetic: bool, model=None) -> str:
  points = list(store.points.values())
  write_points(points, directory)
  text = write_table(points, os.path.join(directory, "table.md"), synthetic=synthetic)
  if any(p["kind"] == "one_shot" and p["criterion"] != "dense" for p in points):
    plot_curves(points, os.path.join(directory, "accuracy_vs_ratio.png"), synthetic=synthetic)
    plot_allocation(points, os.path.join(directory, "allocation.png"), synthetic=synthetic)
  if model is not None:
    plot_scores(model, os.path.join(directory, "scores.png"), synthetic=synthetic)
  return text


def average_compressibility(directories: list[str], split: str = "test") -> str:
  """Markdown table of compressibility per task and its average over tasks."""
  rows, per_task = [], {}
  for d in directories:
    with open(os.path.join(d, "points.json")) as f:
      per_task[d] = compressibility(json.load(f), split)
  criteria = sorted({c for comp in per_task.values() for c in comp})
  rows.append("| criterion | " + " | ".join(os.path.basename(os.path.dirname(d.rstrip("/"))) or d
                                            for d in directories) + " | average |")
  rows.append("|---|" + "---|" * (len(directories) + 1))
  for c in criteria:
    vals = [per_task[d].get(c, {}).get("within_1.0", float("nan")) for d in directories]
    rows.append(f"| {c} (≤1 pt) | " + " | ".join(f"{100 * v:.0f}%" for v in vals) +
                f" | {100 * np.nanmean(vals):.1f}% |")
  return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------
# Command line.

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing is free)."""
  flags.DEFINE_string("workdir", None, "Training workdir whose checkpoint is swept.")
  flags.DEFINE_string("out", None, "Sweep directory (default: WORKDIR/sweep).")
  flags.DEFINE_enum("which", "checkpoints", ["checkpoints", "best"], "Which checkpoint to sweep.")
  flags.DEFINE_list("ratios", [str(r) for r in DEFAULT_RATIOS], "Pruning ratios in [0, 1).")
  flags.DEFINE_list("criteria", list(CRITERIA), "Criteria to compare: registered names, or "
                    "name@T / name@L (norms over T steps / the sequence length).")
  flags.DEFINE_integer("seeds", 3, "Seeds for the random criterion.")
  flags.DEFINE_integer("recalibrate_batches", 0, "One-shot: re-estimate BatchNorm statistics "
                       "of each pruned copy on this many training batches (0: off).")
  flags.DEFINE_integer("calibration_batches", 4, "Training batches calibrated criteria read.")
  flags.DEFINE_float("max_drop", -1.0, "Also search, per criterion, the largest ratio within "
                     "this many accuracy points of dense on val (bisection); < 0: off.")
  flags.DEFINE_list("max_drop_finetune", ["0"], "Fine-tuning epochs after pruning in the "
                    "--max_drop search (one search per value, e.g. 0,1).")
  flags.DEFINE_bool("iterative", False, "Also run an iterative prune-and-fine-tune schedule.")
  flags.DEFINE_float("target", 0.8, "Iterative: final fraction of states pruned.")
  flags.DEFINE_integer("steps", 4, "Iterative: number of pruning steps.")
  flags.DEFINE_integer("finetune_epochs", 1, "Iterative: fine-tuning epochs after each step.")
  flags.DEFINE_string("iterative_criterion", "last", "Iterative: the criterion.")
  flags.DEFINE_multi_string("report", None, "Only report: average compressibility over these "
                            "sweep directories.")


def main(argv):
  del argv
  if FLAGS.report:
    print(average_compressibility(FLAGS.report))
    return
  if not FLAGS.workdir:
    sys.exit("error: --workdir is required (the directory of a training run)")
  from last_nnx import config_errors, data
  from last_nnx.train.checkpoint import load_model
  try:  # one-line errors (exit 2): bad flags, a wrong workdir
    ratios = config_errors.parse_numbers("ratios", FLAGS.ratios, low=0.0, high=1.0,
                                         high_open=True)
    for spec in list(FLAGS.criteria) + [FLAGS.iterative_criterion]:
      parse_criterion(spec, 1)
    model, config, _ = load_model(FLAGS.workdir, which=FLAGS.which)
  except (ValueError, FileNotFoundError) as e:
    config_errors.fail(str(e))
  task = data.build_task(config.data, batch_size=config.train.batch_size,
                         eval_batch_size=config.train.eval_batch_size, seed=config.seed)
  out = FLAGS.out or os.path.join(FLAGS.workdir, "sweep")
  store = PointStore(out)
  other = {p.get("recalibrate_batches", 0) for p in store.points.values()
           if p["kind"] == "one_shot" and p["criterion"] != "dense"} - {FLAGS.recalibrate_batches}
  if other:
    sys.exit(f"error: {out} holds points measured with --recalibrate_batches={other.pop()}: "
             "give another --out")
  logging.info("sweep of %s into %s (%d points already measured)", FLAGS.workdir, out,
               len(store.points))
  one_shot(model, task, config, store, ratios=ratios, criteria=FLAGS.criteria, seeds=FLAGS.seeds,
           recalibrate_batches=FLAGS.recalibrate_batches,
           calibration_batches=FLAGS.calibration_batches)
  if FLAGS.max_drop >= 0:
    max_drop_points(model, task, config, store, criteria=FLAGS.criteria, max_drop=FLAGS.max_drop,
                    finetune_epochs=[int(e) for e in FLAGS.max_drop_finetune],
                    calibration_batches=FLAGS.calibration_batches)
  if FLAGS.iterative:
    copy = nnx.clone(model)
    own_buffers(copy)  # fine-tuning donates buffers `clone` shares with `model`
    iterative(copy, task, config, store, criterion=FLAGS.iterative_criterion,
              target=FLAGS.target, steps=FLAGS.steps, finetune_epochs=FLAGS.finetune_epochs)
  text = write_report(store, out, synthetic=task.synthetic, model=model)
  print(text)


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  from last_nnx import config_errors
  app.run(main, flags_parser=config_errors.flags_parser())  # one-line flag errors
