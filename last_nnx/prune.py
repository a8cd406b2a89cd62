r"""Prune a trained model and evaluate it.

  python -m last_nnx.prune --workdir runs/listops-s5 --ratio 0.3 --criterion last

Loads the newest checkpoint of a training run, evaluates it, prunes it
(compact by default: the saved model is really smaller), evaluates again, and
writes the pruned model to ``--out`` (default ``WORKDIR/pruned-<criterion>-<ratio>``)
together with ``prune_report.json``. The written directory loads like a
training workdir (`last_nnx.train.checkpoint.load_model`), at the pruned size.
"""

import json
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS


def prune_saved_model(workdir: str, ratio: float, criterion: str = "last", mode: str = "compact",
                      out_dir: str | None = None, *, which: str = "checkpoints",
                      bidirectional: str = "sum", seed: int = 0, evaluate: bool = True) -> dict:
  """Prunes the model saved in ``workdir``; returns the report with accuracies."""
  from last_nnx import data, pruning
  from last_nnx.train import checkpoint, loop
  model, config, meta = checkpoint.load_model(workdir, which=which)
  result = {}
  task = None
  if evaluate:
    task = data.build_task(config.data, batch_size=config.train.batch_size,
                           eval_batch_size=config.train.eval_batch_size, seed=config.seed)
    result["before"] = loop.evaluate(model, task, "val", config.train.eval_batch_size)
  report = pruning.prune(model, ratio, criterion=criterion, mode=mode, rng=seed,
                         bidirectional=bidirectional)
  logging.info("pruned %s:\n%s", workdir, report.table())
  if evaluate:
    result["after"] = loop.evaluate(model, task, "val", config.train.eval_batch_size)
  out_dir = out_dir or os.path.join(workdir, f"pruned-{criterion}-{ratio:g}")
  history = list(meta.get("run", {}).get("events", [])) + [json.loads(report.to_json())]
  checkpoint.save_model(out_dir, model, config,
                        dict(model_spec=meta["model_spec"], run=dict(events=history)))
  result.update(report=json.loads(report.to_json()), out_dir=out_dir)
  with open(os.path.join(out_dir, "prune_report.json"), "w") as f:
    json.dump(result, f, indent=2)
  return result


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing is free)."""
  flags.DEFINE_string("workdir", None, "Training workdir to prune.")
  flags.DEFINE_float("ratio", None, "Fraction of the states to remove, in [0, 1).")
  flags.DEFINE_string("criterion", "last", "Pruning criterion.")
  flags.DEFINE_enum("mode", "compact", ["compact", "mask"], "Shrink arrays or mask states.")
  flags.DEFINE_enum("which", "checkpoints", ["checkpoints", "best"], "Checkpoint to prune.")
  flags.DEFINE_string("out", None, "Where to write the pruned model.")
  flags.DEFINE_enum("bidirectional", "sum", ["sum", "reference"], "Bidirectional score.")
  flags.DEFINE_integer("seed", 0, "Seed for the random criterion.")


def main(argv):
  del argv
  if not FLAGS.workdir or FLAGS.ratio is None:
    sys.exit("usage: python -m last_nnx.prune --workdir W --ratio 0.3 [--criterion last]")
  try:
    result = prune_saved_model(FLAGS.workdir, FLAGS.ratio, FLAGS.criterion, FLAGS.mode,
                               FLAGS.out, which=FLAGS.which, bidirectional=FLAGS.bidirectional,
                               seed=FLAGS.seed)
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  r = result["report"]
  print(f"{r['criterion']}: {100 * r['ratio_achieved']:.1f}% of states removed; val accuracy "
        f"{result['before']['accuracy']:.4f} -> {result['after']['accuracy']:.4f}; "
        f"pruned model in {result['out_dir']}")


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  app.run(main)
