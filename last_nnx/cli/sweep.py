r"""Pruning sweeps: one-shot curves and iterative prune-and-fine-tune schedules.

  python -m last_nnx.cli.sweep --workdir runs/listops-s5              # one-shot curves
  python -m last_nnx.cli.sweep --workdir runs/listops-s5 --iterative --target=0.8 --steps=4
  python -m last_nnx.cli.sweep --report runs/a/sweep runs/b/sweep     # compressibility over tasks

(``python -m last_nnx.cli.sweep`` is the same program.) What is measured:
`last_nnx.sweeps.points`; the tables and plots: `last_nnx.sweeps.report`.
Without ``--criteria`` an LTI model is swept with `CRITERIA` and a selective one
(Mamba-2) with every criterion that applies to it; a named criterion that does
not apply is refused in one line that names those that do.
"""

import os
import sys

from absl import app, flags, logging
from flax import nnx

from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.sweeps.max_drop import (
  calibration,
  check_specs,
  default_criterion,
  max_drop_points,
  own_buffers,
  parse_criterion,
  resolve_criteria,
)
from last_nnx.sweeps.points import CRITERIA, DEFAULT_RATIOS, PointStore, iterative, one_shot
from last_nnx.sweeps.report import average_compressibility, write_report

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags (defined only when run as a program, so importing is free)."""
  flags.DEFINE_string("workdir", None, "Training workdir whose checkpoint is swept.")
  flags.DEFINE_string("out", None, "Sweep directory (default: WORKDIR/sweep).")
  flags.DEFINE_enum("which", "latest", ["latest", "best"], "Which checkpoint to sweep.")
  flags.DEFINE_list("ratios", [str(r) for r in DEFAULT_RATIOS], "Pruning ratios in [0, 1).")
  flags.DEFINE_list(
    "criteria",
    [],
    "Criteria to compare: registered names, or name@T / "
    "name@L (LTI norms over T steps / the sequence length). Default: those "
    f"that apply to the model ({', '.join(CRITERIA)} on an LTI one; every "
    "applicable one on a selective one).",
  )
  flags.DEFINE_integer("seeds", 3, "Seeds for the random criterion.")
  flags.DEFINE_integer(
    "recalibrate_batches",
    0,
    "One-shot: re-estimate BatchNorm statistics "
    "of each pruned copy on this many training batches (0: off).",
  )
  flags.DEFINE_integer(
    "calibration_batches", DEFAULT_BATCHES, "Training batches calibrated criteria read."
  )
  flags.DEFINE_float(
    "max_drop",
    -1.0,
    "Also search, per criterion, the largest ratio within "
    "this many accuracy points of dense on val (bisection); < 0: off.",
  )
  flags.DEFINE_list(
    "max_drop_finetune",
    ["0"],
    "Fine-tuning epochs after pruning in the --max_drop search (one search per value, e.g. 0,1).",
  )
  flags.DEFINE_bool("iterative", False, "Also run an iterative prune-and-fine-tune schedule.")
  flags.DEFINE_float("target", 0.8, "Iterative: final fraction of states pruned.")
  flags.DEFINE_integer("steps", 4, "Iterative: number of pruning steps.")
  flags.DEFINE_integer("finetune_epochs", 1, "Iterative: fine-tuning epochs after each step.")
  flags.DEFINE_float(
    "iterative_lr_scale",
    0.0,
    "Iterative: fine-tune at this fraction of "
    "the run's learning rates, no warmup (0: the run's rates and warmup).",
  )
  flags.DEFINE_string(
    "iterative_criterion",
    None,
    "Iterative: the criterion (default: last on an LTI model, calibrated on a selective one).",
  )
  flags.DEFINE_multi_string(
    "report", None, "Only report: average compressibility over these sweep directories."
  )


def main(argv):
  del argv
  if FLAGS.report:
    print(average_compressibility(FLAGS.report))
    return
  if not FLAGS.workdir:
    sys.exit("error: --workdir is required (the directory of a training run)")
  from last_nnx.cli import errors, prune_lm
  from last_nnx.sweeps import saved_lm

  if saved_lm.is_lm_target(FLAGS.workdir):  # an LM run or checkpoint directory
    try:
      ratios = errors.parse_numbers("ratios", FLAGS.ratios, low=0.0, high=1.0, high_open=True)
      print(
        saved_lm.sweep_saved_lm(
          FLAGS.workdir,
          out=FLAGS.out,
          which=FLAGS.which,
          ratios=[r for r in ratios if r > 0],  # the dense model is always the first row
          methods=FLAGS.criteria,
          seeds=FLAGS.seeds,
          opts=prune_lm.text_options(),
        )
      )
    except (ValueError, FileNotFoundError) as e:
      errors.fail(str(e))
    return
  from last_nnx import data
  from last_nnx.train.checkpoint import load_model

  try:  # one-line errors (exit 2): bad flags, a wrong workdir
    ratios = errors.parse_numbers("ratios", FLAGS.ratios, low=0.0, high=1.0, high_open=True)
    for spec in list(FLAGS.criteria) + [FLAGS.iterative_criterion or "last"]:
      parse_criterion(spec, 1)  # a misspelt name fails before any loading
    model, config, _ = load_model(FLAGS.workdir, which=FLAGS.which)
    criteria = resolve_criteria(model, FLAGS.criteria, CRITERIA)  # refused if inapplicable
    iterative_criterion = FLAGS.iterative_criterion or default_criterion(model)
    if FLAGS.iterative:
      check_specs(model, [iterative_criterion])
  except (ValueError, FileNotFoundError) as e:
    errors.fail(str(e))
  task = data.build_task(
    config.data,
    batch_size=config.train.batch_size,
    eval_batch_size=config.train.eval_batch_size,
    seed=config.seed,
  )
  out = FLAGS.out or os.path.join(FLAGS.workdir, "sweep")
  store = PointStore(out)
  other = {
    p.get("recalibrate_batches", 0)
    for p in store.points.values()
    if p["kind"] == "one_shot" and p["criterion"] != "dense"
  } - {FLAGS.recalibrate_batches}
  if other:
    sys.exit(
      f"error: {out} holds points measured with --recalibrate_batches={other.pop()}: "
      "give another --out"
    )
  logging.info(
    "sweep of %s into %s (%d points already measured)", FLAGS.workdir, out, len(store.points)
  )
  try:  # fine-tuning (--iterative, --max_drop_finetune) can diverge: one line, points kept
    one_shot(
      model,
      task,
      config,
      store,
      ratios=ratios,
      criteria=criteria,
      seeds=FLAGS.seeds,
      recalibrate_batches=FLAGS.recalibrate_batches,
      calibration_batches=FLAGS.calibration_batches,
    )
    if FLAGS.max_drop >= 0:
      max_drop_points(
        model,
        task,
        config,
        store,
        criteria=criteria,
        max_drop=FLAGS.max_drop,
        finetune_epochs=[int(e) for e in FLAGS.max_drop_finetune],
        calibration_batches=FLAGS.calibration_batches,
      )
    if FLAGS.iterative:
      copy = nnx.clone(model)
      own_buffers(copy)  # fine-tuning donates buffers `clone` shares with `model`
      iterative(
        copy,
        task,
        config,
        store,
        criterion=iterative_criterion,
        target=FLAGS.target,
        steps=FLAGS.steps,
        finetune_epochs=FLAGS.finetune_epochs,
        calibration_batches=FLAGS.calibration_batches,
        lr_scale=FLAGS.iterative_lr_scale or None,
      )
  except FloatingPointError as e:  # train.steps.Diverged
    sys.exit(
      f"error: fine-tuning diverged: {errors.one_line(str(e))}; the points measured so "
      f"far are kept in {out} (lower optim.ssm_lr or --finetune_epochs, then rerun)"
    )
  text = write_report(
    store, out, synthetic=task.synthetic, model=model, calibration=calibration(task)
  )
  print(text)


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  from last_nnx.cli import errors, prune_lm

  prune_lm.define_flags(prune=False)
  app.run(main, flags_parser=errors.flags_parser())  # one-line flag errors
