r"""Plots what the watch recorded in a run's workdir (`last_nnx.train.watch`).

  python -m last_nnx.cli.plot_watch --workdir runs/digits-s5            # -> W/watch.png
  python -m last_nnx.cli.plot_watch --workdir W --out fig.png --top 4

Top panel: the keep set's Jaccard overlap with the previous epoch's and with the
final one at the same model size, per epoch, with the pruning events marked.
One panel per layer below: the score trajectories of the states that rank
highest at the last epoch before the first event (or of the run, if none),
through the epochs at that model size.
"""

import json
import os
import sys

import numpy as np
from absl import app, flags

from last_nnx.train import watch

FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_string(
    "workdir",
    None,
    f"a training run's workdir (summary.json and {watch.SCORES_FILE})",
    required=True,
  )
  flags.DEFINE_string("out", None, "output image (default: WORKDIR/watch.png)")
  flags.DEFINE_integer("top", 4, "states per layer whose score trajectories are drawn")


def load(workdir: str) -> tuple[dict, list[dict]]:
  """``(summary, per-epoch scores)`` of a run; a one-line error if the watch is missing."""
  path = os.path.join(workdir, "summary.json")
  if not os.path.exists(path):
    raise ValueError(f"{path} not found: plot a finished run (rerun its command to finish it)")
  with open(path) as f:
    summary = json.load(f)
  if not summary.get("watch") or not os.path.exists(os.path.join(workdir, watch.SCORES_FILE)):
    raise ValueError(
      f"{workdir} has no watch records: train with watch.enabled=True and a "
      "data-free criterion (watch.criterion)"
    )
  return summary, watch.read_scores(workdir)


def dense_phase(scores: list[dict]) -> list[dict]:
  """The leading epochs whose layers have the slot counts of the first one."""
  shape = lambda d: {k: len(v) for k, v in d["scores"].items()}
  first = shape(scores[0])
  out = []
  for d in scores:
    if shape(d) != first:
      break
    out.append(d)
  return out


def top_trajectories(scores: list[dict], top: int) -> dict[str, dict[int, list]]:
  """``{layer: {slot: [score per epoch]}}`` for the ``top`` slots of the last epoch."""
  last = scores[-1]["scores"]
  out = {}
  for layer, s in last.items():
    values = np.array([-np.inf if v is None else v for v in s])
    slots = np.argsort(-values, kind="stable")[:top]
    out[layer] = {
      int(i): [d["scores"][layer][i] for d in scores] for i in slots if np.isfinite(values[i])
    }
  return out


def plot(summary: dict, scores: list[dict], path: str, top: int = 4) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator

  records = summary["watch"]
  layers = list(scores[0]["scores"])
  fig, axes = plt.subplots(1 + len(layers), 1, figsize=(7, 2.6 + 1.9 * len(layers)), squeeze=False)
  ax = axes[0, 0]
  epochs = [r["epoch"] for r in records]
  prev = [np.nan if r["overlap_prev"] is None else r["overlap_prev"] for r in records]
  ax.plot(epochs, prev, "o-", label="with the previous epoch")
  ax.plot(
    epochs, [r["overlap_final"] for r in records], "s--", label="with the final one (same size)"
  )
  by_step = {r["step"]: r["epoch"] for r in records}
  for e in summary.get("pruning_events", []):
    if e["status"] == "applied" and e["step"] in by_step:
      ax.axvline(by_step[e["step"]] + 0.5, color="gray", lw=1, ls=":")
  synthetic = " (synthetic data)" if summary.get("synthetic_data") else ""
  ax.set_title(
    f"{summary['task']} {summary['model']}{synthetic}: keep set of "
    f"{records[0]['criterion']} at {100 * records[0]['target']:.0f}% pruned"
  )
  ax.set_xlabel("epoch (run order; dotted: pruning events)")
  ax.set_ylabel("Jaccard overlap")
  ax.set_ylim(-0.02, 1.02)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.legend(fontsize=8)
  phase = dense_phase(scores)
  for ax, (layer, traj) in zip(axes[1:, 0], top_trajectories(phase, top).items()):
    x = [d["epoch"] for d in phase]
    for slot, ys in traj.items():
      ax.plot(x, [np.nan if y is None else y for y in ys], ".-", label=f"state {slot}")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("score")
    ax.set_title(f"{layer}: top {len(traj)} states before the first event", fontsize=9)
    ax.legend(fontsize=7, ncol=4)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv):
  del argv
  try:
    summary, scores = load(FLAGS.workdir)
  except ValueError as e:
    sys.exit(f"error: {e}")
  out = FLAGS.out or os.path.join(FLAGS.workdir, "watch.png")
  plot(summary, scores, out, FLAGS.top)
  print(out)


if __name__ == "__main__":
  _define_flags()
  app.run(main)
