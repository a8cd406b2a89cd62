r"""Prune a saved model, evaluate it, and write the pruned (smaller) model.

  python -m last_nnx.cli.prune --workdir runs/listops --ratio 0.3 --criterion last \
      [--mode compact] [--out runs/listops/pruned] [--eval_splits val,test]
  python -m last_nnx.cli.prune --workdir runs/digits-s5 --max_drop 1.0 --criterion all \
      [--finetune_epochs 1]                  # how far can I prune?

A criterion must apply to the saved model's layer kind (LTI or selective, e.g.
Mamba-2): one that does not is refused in one line naming those that do.
``--criterion all`` is `last_nnx.sweeps.saved.ALL_CRITERIA` for an LTI model
and every applicable criterion (`last_nnx.pruning.applicable`) for a model
with selective layers.

With ``--max_drop D`` it bisects, per criterion, the largest ratio whose val
accuracy stays within ``D`` points of the dense model's, reports test accuracy
there and writes each such model to ``--out/<criterion>``
(`last_nnx.sweeps.saved.how_far`).

Otherwise it prunes the newest checkpoint of a training workdir (``--which
best`` for the best one), evaluates before and after on ``--eval_splits`` (none
with ``--eval_splits=``) and writes the smaller model to ``--out``
(`last_nnx.sweeps.saved.prune_saved_model`); ``prune_report.json`` there holds
the report and the accuracies. This program only reads flags and prints:
``--horizon`` (0 infinite, -1 the run's sequence length, T steps) becomes the
criterion spec's ``@L`` / ``@T``, the library's one convention.
"""

import os
import sys

from absl import app, flags

from last_nnx.pruning import PruneReport
from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.pruning.hinf import resolve_horizon
from last_nnx.sweeps import saved

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program: importing this module
  next to another absl program (``last_nnx.cli.sweep`` has ``--workdir`` too) stays free."""
  flags.DEFINE_string("workdir", None, "Training workdir whose saved model is pruned.")
  flags.DEFINE_float("ratio", 0.3, "Fraction of the live states to remove, in [0, 1).")
  flags.DEFINE_string(
    "criterion",
    None,
    "Pruning criterion (LTI models: last, energy, "
    "calibrated, balanced, calibrated_balanced, global_hinf, uniform, magnitude, "
    "random; selective (Mamba-2): calibrated, gramian, magnitude, uniform, "
    "random; or a registered one); with --max_drop also name@L specs, a "
    "comma-separated list, or 'all' (those of the model's kind). Default: "
    "last (LTI) or calibrated (selective).",
  )
  flags.DEFINE_enum(
    "mode",
    "compact",
    ["compact", "mask"],
    "compact: the saved model is smaller; mask: shapes kept, pruned states zeroed.",
  )
  flags.DEFINE_string(
    "out", None, "Output directory (default WORKDIR/pruned-CRITERION-RATIO-MODE)."
  )
  flags.DEFINE_enum("which", "latest", ["latest", "best"], "Which checkpoint to prune.")
  flags.DEFINE_integer("min_per_layer", 1, "States every layer keeps.")
  flags.DEFINE_enum(
    "bidirectional",
    "sum",
    ["sum", "reference"],
    "Bidirectional score: sum of both directions' squared norms, or the reference code's quirk.",
  )
  flags.DEFINE_integer(
    "horizon",
    0,
    "Norms over: 0 infinite time (the paper), -1 the run's sequence length, T > 0 that many steps.",
  )
  flags.DEFINE_integer("seed", 0, "Seed of the random criterion.")
  flags.DEFINE_float(
    "max_drop",
    -1.0,
    "How far can I prune: find, per criterion, the largest "
    "ratio within this many accuracy points of dense on val (bisection), "
    "report test accuracy there and write that model; < 0: off (--ratio).",
  )
  flags.DEFINE_integer("finetune_epochs", 0, "--max_drop: fine-tuning epochs after pruning.")
  flags.DEFINE_integer(
    "calibration_batches", DEFAULT_BATCHES, "Training batches calibrated criteria read."
  )
  flags.DEFINE_list(
    "eval_splits",
    list(saved.DEFAULT_EVAL_SPLITS),
    "Splits to evaluate before and after pruning (empty: no evaluation).",
  )


def _prune_lm(prune_lm, saved_lm) -> None:
  """A Mamba-2 LM: `last_nnx.sweeps.saved_lm` (``--max_drop`` is a perplexity tolerance in %)."""
  try:
    summary = saved_lm.prune_saved_lm(
      FLAGS.workdir,
      ratio=FLAGS.ratio,
      criterion=FLAGS.criterion,
      allocation=FLAGS.allocation,
      sequential=FLAGS.sequential,
      out=FLAGS.out,
      which=FLAGS.which,
      seed=FLAGS.seed,
      fmt=FLAGS.format,
      layout=FLAGS.layout,
      eval_splits=[s for s in FLAGS.eval_splits if s],
      max_drop=FLAGS.max_drop,
      opts=prune_lm.text_options(),
      recovery=prune_lm.recovery(),
    )
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"error: {e}")
  print("\n".join(prune_lm.prune_lines(summary)))


def _spec(criterion: str | None, horizon: int) -> str | None:
  """``--criterion`` with ``--horizon`` as a spec suffix: 0 none, -1 ``@L``, T ``@T``."""
  resolve_horizon(horizon, 1)  # a bad setting fails in one line
  if horizon == 0:
    return criterion
  return f"{criterion or 'last'}@{'L' if horizon == -1 else horizon}"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not FLAGS.workdir:
    sys.exit("error: --workdir is required (the directory of a training run)")
  from last_nnx.cli import prune_lm
  from last_nnx.sweeps import saved_lm

  if saved_lm.is_lm_target(FLAGS.workdir):  # an LM run or checkpoint directory
    return _prune_lm(prune_lm, saved_lm)
  if FLAGS.max_drop >= 0:
    criteria = FLAGS.criterion.split(",") if FLAGS.criterion else None  # resolved on load
    try:
      summary = saved.how_far(
        FLAGS.workdir,
        FLAGS.max_drop,
        criteria,
        FLAGS.out,
        which=FLAGS.which,
        finetune_epochs=FLAGS.finetune_epochs,
        calibration_batches=FLAGS.calibration_batches,
        min_per_layer=FLAGS.min_per_layer,
        mode=FLAGS.mode,
      )
    except FloatingPointError as e:  # train.steps.Diverged, while fine-tuning
      sys.exit(
        f"error: fine-tuning diverged: {e}; lower optim.ssm_lr or --finetune_epochs, then rerun"
      )
    except (ValueError, FileNotFoundError, RuntimeError) as e:
      sys.exit(f"error: {e}")
    print(saved.how_far_table(summary))
    print(f"pruned models written under {os.path.dirname(summary['results'][0]['out_dir'])}")
    return
  try:
    summary = saved.prune_saved_model(
      FLAGS.workdir,
      FLAGS.ratio,
      _spec(FLAGS.criterion, FLAGS.horizon),
      FLAGS.mode,
      FLAGS.out,
      which=FLAGS.which,
      min_per_layer=FLAGS.min_per_layer,
      bidirectional=FLAGS.bidirectional,
      seed=FLAGS.seed,
      calibration_batches=FLAGS.calibration_batches,
      eval_splits=[s for s in FLAGS.eval_splits if s],
    )
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"error: {e}")
  print(PruneReport.from_dict(summary["report"]).table())
  for split, metrics in summary["splits"].items():
    b, a = metrics["before"], metrics["after"]
    print(
      f"{split}: accuracy {b['accuracy']:.4f} -> {a['accuracy']:.4f}, "
      f"loss {b['loss']:.4f} -> {a['loss']:.4f}"
    )
  print(f"pruned model written to {summary['out_dir']}")


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  from last_nnx.cli import errors, prune_lm

  prune_lm.define_flags(prune=True)
  app.run(main, flags_parser=errors.flags_parser())  # one-line flag errors
