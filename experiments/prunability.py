r"""Does training for prunability help? Same model, with and without a regularizer.

  python experiments/prunability.py --out runs/prunability --epochs 12

Trains the ListOps demo model (synthetic data unless --data_dir) three times, with no
penalty, with the modal l1 penalty and with the Hankel nuclear norm, sweeps each with
`last` one-shot pruning (no retraining), and writes ``table.md`` and ``curves.png``
to --out: dense accuracy, accuracy at each ratio, and the largest ratio within 1 point
of each model's own dense accuracy.
"""

import json
import os
import sys

sys.path.insert(0, os.getcwd())

from absl import app, flags, logging  # noqa: E402

from last_nnx import data, sweeps  # noqa: E402
from last_nnx.train import checkpoint, loop  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "runs/prunability", "Output directory.")
flags.DEFINE_integer("epochs", 12, "Training epochs per model.")
flags.DEFINE_integer("n_train", 6000, "Synthetic training examples.")
flags.DEFINE_string("data_dir", None, "Real ListOps release (default: synthetic).")
flags.DEFINE_float("modal_l1_weight", 0.02, "Weight of the modal l1 penalty.")
flags.DEFINE_float("hankel_weight", 0.002, "Weight of the Hankel nuclear-norm penalty.")

RATIOS = [round(0.1 * i, 1) for i in range(1, 10)]


def _config(kind: str, weight: float):
  from experiments.configs import listops

  c = listops.get_config("s5,demo")
  c.pruning.schedule = "none"
  c.train.epochs = FLAGS.epochs
  c.data.synthetic.n_train = FLAGS.n_train
  c.data.dir = FLAGS.data_dir
  c.regularizer.kind = kind
  c.regularizer.weight = weight
  c.regularizer.schedule = "ramp"
  c.regularizer.ramp_epochs = 2.0
  return c


def main(argv):
  del argv
  runs = {"none": 0.0, "modal_l1": FLAGS.modal_l1_weight, "hankel": FLAGS.hankel_weight}
  curves, rows, synthetic = {}, [], True
  for kind, weight in runs.items():
    workdir = os.path.join(FLAGS.out, kind)
    config = _config(kind, weight)
    if not os.path.exists(os.path.join(workdir, "summary.json")):
      loop.train_and_evaluate(config, workdir)
    model, config, _ = checkpoint.load_model(workdir)
    task = data.build_task(
      config.data,
      batch_size=config.train.batch_size,
      eval_batch_size=config.train.eval_batch_size,
      seed=config.seed,
    )
    synthetic = task.synthetic
    store = sweeps.PointStore(os.path.join(workdir, "sweep"))
    sweeps.one_shot(model, task, config, store, ratios=RATIOS, criteria=["last"], seeds=1)
    points = list(store.points.values())
    comp = sweeps.compressibility(points)["last"]
    dense = next(p for p in points if p["criterion"] == "dense")["test_accuracy"]
    curve = {p["ratio"]: p["test_accuracy"] for p in points if p["criterion"] == "last"}
    curves[kind] = dict(dense=dense, curve=curve, within_1=comp["within_1.0"])
    rows.append(
      f"| {kind} | {weight:g} | {100 * dense:.2f} | "
      + " | ".join(f"{100 * curve[r]:.1f}" for r in RATIOS)
      + f" | {100 * comp['within_1.0']:.0f}% |"
    )
  header = (
    "| regularizer | weight | dense test acc | "
    + " | ".join(f"{100 * r:.0f}%" for r in RATIOS)
    + " | largest ratio within 1 pt |"
  )
  lines = [
    "_Synthetic ListOps: not an LRA result._\n" if synthetic else "",
    "Test accuracy (%) after one-shot `last` pruning at each ratio, no retraining:\n",
    header,
    "|---|---|---|" + "---|" * len(RATIOS) + "---|",
  ] + rows
  text = "\n".join(lines) + "\n"
  with open(os.path.join(FLAGS.out, "table.md"), "w") as f:
    f.write(text)
  with open(os.path.join(FLAGS.out, "curves.json"), "w") as f:
    json.dump(curves, f, indent=2)
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for kind, c in curves.items():
    ratios = [0.0] + RATIOS
    ax.plot(
      [100 * r for r in ratios],
      [100 * c["dense"]] + [100 * c["curve"][r] for r in RATIOS],
      marker="o",
      ms=3,
      label=f"{kind} (within 1 pt: {100 * c['within_1']:.0f}%)",
    )
  ax.set_xlabel("states pruned (%)")
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(
    "LAST one-shot after training with/without a prunability penalty"
    + ("\n(SYNTHETIC ListOps)" if synthetic else "")
  )
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(os.path.join(FLAGS.out, "curves.png"), dpi=120)
  logging.info("\n%s", text)
  print(text)


if __name__ == "__main__":
  app.run(main)
