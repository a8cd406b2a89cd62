r"""Prune a saved model, evaluate it, and write the pruned (smaller) model.

  python -m last_nnx.cli.prune --workdir runs/listops --ratio 0.3 --criterion last \
      [--mode compact] [--out runs/listops/pruned] [--eval_splits val,test]
  python -m last_nnx.cli.prune --workdir runs/digits-s5 --max_drop 1.0 --criterion all \
      [--finetune_epochs 1]                  # how far can I prune?

A criterion must apply to the saved model's layer kind (LTI or selective, e.g.
Mamba-2): one that does not is refused in one line naming those that do.
``--criterion all`` is `ALL_CRITERIA` for an LTI model and every applicable
criterion (`last_nnx.pruning.applicable`) for a model with selective layers.

With ``--max_drop D`` it bisects, per criterion, the largest ratio whose val
accuracy stays within ``D`` points of the dense model's, reports test accuracy
there and writes each such model to ``--out/<criterion>`` (see `how_far`).

Reads the newest checkpoint of a training workdir (``--which best`` for the
best one) with `last_nnx.train.checkpoint.load_model`, prunes it with
`last_nnx.pruning.prune`, evaluates before and after on ``--eval_splits``
(none with ``--eval_splits=``), and writes the result with
`last_nnx.train.checkpoint.save_model` to ``--out``: a directory that
``load_model`` (and so ``python -m last_nnx.cli.prune`` / ``last_nnx.cli.sweep``) reads
back as the smaller model. The pruning event is appended to the checkpoint's
pruning history (``meta['run']['events']``, and ``meta['pruning']``), so the
output stays replayable from the dense model. ``prune_report.json`` in ``--out``
holds the report and the accuracies.
"""

import dataclasses
import json
import os
import sys

from absl import app, flags, logging

DEFAULT_EVAL_SPLITS = ("val",)


def _checkpoint_module():
  """`last_nnx.train.checkpoint`, or a clear error if it is not available."""
  try:
    from last_nnx.train import checkpoint
  except ImportError as e:
    raise RuntimeError("last_nnx.cli.prune needs last_nnx.train.checkpoint (load_model/save_model) "
                       f"to read and write saved models, and it failed to import: {e}") from e
  for name in ("load_model", "save_model"):
    if not hasattr(checkpoint, name):
      raise RuntimeError(f"last_nnx.train.checkpoint has no {name}(): cannot read or write "
                         "saved models")
  return checkpoint


def _history(meta):
  """The pruning history of a saved model's `CheckpointMeta` (possibly empty)."""
  from last_nnx import pruning
  saved = (meta.pruning or {}).get("history")
  if saved:
    return pruning.PruningHistory.from_json(saved)
  return pruning.PruningHistory.from_run_events(
      meta.events, dense_states=meta.run.get("initial_states") or None)


# ``--criterion all`` of the ``--max_drop`` search on an LTI model (a model with selective
# layers: `last_nnx.pruning.applicable`, see `last_nnx.sweeps.max_drop.default_criteria`).
ALL_CRITERIA = ("last", "last@L", "energy", "calibrated", "balanced", "balanced@L",
                "calibrated_balanced")


def _task(config):
  from last_nnx import data
  return data.build_task(config.data, batch_size=config.train.batch_size,
                         eval_batch_size=config.train.eval_batch_size, seed=config.seed)


def evaluate_splits(model, config, splits) -> dict[str, dict[str, float]]:
  """``{split: {'accuracy', 'loss'}}`` of ``model`` on the config's task."""
  if not splits:
    return {}
  from last_nnx import data
  from last_nnx.train.steps import evaluate
  task = data.build_task(config.data, batch_size=config.train.batch_size,
                         eval_batch_size=config.train.eval_batch_size, seed=config.seed)
  out = {split: evaluate(model, task, split) for split in splits}
  model.eval()  # `evaluate` leaves the model in training mode
  return out


def default_out_dir(workdir: str, ratio: float, criterion: str, mode: str) -> str:
  return os.path.join(workdir, f"pruned-{criterion}-{ratio:g}-{mode}")


def prune_saved_model(workdir: str, ratio: float, criterion: str | None = "last",
                      mode: str = "compact",
                      out_dir: str | None = None, *, which: str = "latest",
                      min_per_layer: int = 1, bidirectional: str = "sum", horizon: int = 0,
                      seed: int = 0, calibration_batches: int = 4,
                      evaluate: bool = True, eval_splits=DEFAULT_EVAL_SPLITS,
                      evaluate_fn=None) -> dict:
  """Loads the saved model of ``workdir``, prunes it, writes it to ``out_dir``.

  Args:
    workdir: a training workdir (or a directory this function wrote).
    ratio: fraction of the live states to remove, in [0, 1).
    criterion: a registered pruning criterion that applies to the saved
      model; None: ``last`` on an LTI model, ``calibrated`` on a selective one
      (`last_nnx.sweeps.max_drop.default_criterion`).
    mode: ``'compact'`` (the saved model is smaller) or ``'mask'``.
    out_dir: where to write (default ``workdir/pruned-CRITERION-RATIO-MODE``);
      must differ from ``workdir``.
    which: ``'latest'`` or ``'best'`` (`last_nnx.train.checkpoint.WHICH`).
    min_per_layer, bidirectional: see `last_nnx.pruning.prune`.
    horizon: 0 (infinite-horizon norms, the paper's), -1 (the run's sequence
      length) or a number of steps (see `last_nnx.pruning.resolve_horizon`).
    seed: seed of the ``random`` criterion.
    calibration_batches: training batches a calibrated criterion reads.
    evaluate: evaluate before and after pruning (False: no data is touched).
    eval_splits: the splits evaluated (needs the task's data, or its
      synthetic generator).
    evaluate_fn: ``(model, config, splits) -> {split: metrics}``; default
      `evaluate_splits`.

  Returns:
    A summary dict (also written to ``out_dir/prune_report.json``):
    ``report`` (the `PruneReport` as a dict), ``out_dir``, ``splits``
    (``{split: {'before': metrics, 'after': metrics}}``), ``before``/``after``
    (the metrics of the first evaluated split, usually ``val``; ``{}`` without
    evaluation), ``states_before``/``states_after``.
  """
  from last_nnx import pruning
  from last_nnx.sweeps import max_drop as search
  pruning.check_ratio(ratio)
  if criterion is not None:
    pruning.get_criterion(criterion)  # a misspelt name fails before any loading
  pruning.resolve_horizon(horizon, 1)  # a bad setting fails before any loading
  if mode not in pruning.MODES:
    raise ValueError(f"unknown pruning mode {mode!r}; expected one of {pruning.MODES}")
  if out_dir and os.path.abspath(out_dir) == os.path.abspath(workdir):
    raise ValueError(f"--out {out_dir!r} is the workdir itself: writing there would replace "
                     "its checkpoints; choose another directory")
  checkpoint = _checkpoint_module()
  evaluate_fn = evaluate_fn or evaluate_splits
  eval_splits = tuple(eval_splits) if evaluate else ()

  model, config, meta = checkpoint.load_model(workdir, which=which)
  criterion = criterion or search.default_criterion(model)
  pruning.check_applies(criterion, pruning.layer_kinds(model))  # before any evaluation
  if horizon and search.has_selective(model):
    raise ValueError(f"--horizon={horizon} truncates LTI norms, and this model has selective "
                     "SSM layers (no fixed poles): leave it 0")
  out_dir = out_dir or default_out_dir(workdir, ratio, criterion, mode)
  history = _history(meta)
  before = evaluate_fn(model, config, eval_splits)
  from last_nnx import data
  # A saved config may lack a data section: then no horizon -1, calibration or diagnostic.
  try:
    seq_len = data.effective_seq_len(config.data)
  except (AttributeError, KeyError, TypeError, ValueError):
    seq_len = 0
  if horizon == -1 and not seq_len:
    raise ValueError("--horizon=-1 needs the run's sequence length, and its config has no data")
  calibration = None
  if pruning.needs_calibration(model, criterion):
    calibration = search.calibration(_task(config))
  report = pruning.prune(model, ratio, criterion=criterion, mode=mode, rng=seed,
                         min_per_layer=min_per_layer, bidirectional=bidirectional,
                         horizon=pruning.resolve_horizon(horizon, seq_len), history=history,
                         calibration=calibration, calibration_batches=calibration_batches,
                         seq_len=seq_len or None)
  logging.info("pruned %s (%s, %s, ratio %.4f):\n%s", workdir, criterion, mode, ratio,
               report.table())
  after = evaluate_fn(model, config, eval_splits)

  report_dict = json.loads(report.to_json())
  event = pruning.EventRecord(
      status="applied", source="last_nnx.cli.prune", criterion=criterion, mode=mode,
      target=report.ratio_achieved_total, ratio=float(ratio),
      states_before={k: v.states_before for k, v in report.layers.items()},
      states_after={k: v.states_after for k, v in report.layers.items()},
      val_before=before.get("val"), val_after=after.get("val"), report=report_dict)
  meta = dataclasses.replace(
      meta, run=dict(meta.run, events=meta.events + [event.to_dict()]),
      pruning=dict(history=history.to_json(), source_workdir=os.path.abspath(workdir),
                   source_checkpoint=which))
  os.makedirs(out_dir, exist_ok=True)
  checkpoint.save_model(out_dir, model, config, meta)
  first = eval_splits[0] if eval_splits else None
  summary = dict(out_dir=os.path.abspath(out_dir), workdir=os.path.abspath(workdir),
                 report=report_dict,
                 splits={k: dict(before=before[k], after=after[k]) for k in before},
                 before=before.get(first, {}), after=after.get(first, {}),
                 states_before=report.states_before, states_after=report.states_after)
  with open(os.path.join(out_dir, "prune_report.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def how_far(workdir: str, max_drop: float, criteria, out_dir: str | None = None, *,
            which: str = "latest", finetune_epochs: int = 0, calibration_batches: int = 4,
            min_per_layer: int = 1, mode: str = "compact") -> dict:
  """For each criterion spec: the largest ratio within ``max_drop`` points on val, and the model.

  Bisects the ratio (`last_nnx.search.max_drop_search`) on the validation
  split, then prunes the saved model at that ratio (fine-tuned
  ``finetune_epochs`` epochs when > 0), evaluates it on val and test, and
  writes it to ``out_dir/<spec>`` (readable by ``load_model``).

  Args:
    workdir: a training workdir.
    max_drop: tolerated val accuracy drop, in points.
    criteria: criterion specs (``last``, ``last@L``, ``balanced``, ...), each
      applying to the model; ``['all']``: the model's default set
      (`last_nnx.sweeps.max_drop.resolve_criteria` with `ALL_CRITERIA`); None:
      the one default criterion (`last_nnx.sweeps.max_drop.default_criterion`).
    out_dir: default ``workdir/max_drop-<max_drop>``.

  Returns:
    ``{'dense': {split metrics}, 'results': [{criterion, ratio, kept, states,
    val_accuracy, test_accuracy, probes, out_dir}]}``, also written to
    ``out_dir/max_drop.json``.
  """
  from flax import nnx

  from last_nnx import pruning
  from last_nnx.sweeps import max_drop as search
  if criteria and list(criteria) != ["all"]:
    for spec in criteria:
      search.parse_criterion(spec, 1)  # a misspelt name fails before any loading
  out_dir = out_dir or os.path.join(workdir, f"max_drop-{max_drop:g}")
  if os.path.abspath(out_dir) == os.path.abspath(workdir):
    raise ValueError(f"--out {out_dir!r} is the workdir itself; choose another directory")
  checkpoint = _checkpoint_module()
  model, config, meta = checkpoint.load_model(workdir, which=which)
  model.eval()
  criteria = (search.resolve_criteria(model, criteria, ALL_CRITERIA) if criteria
              else [search.default_criterion(model)])
  task = _task(config)
  dense = search.evaluate(model, task, ("val", "test"))
  results = []
  for spec in criteria:
    found = search.max_drop_search(model, task, config, spec, max_drop,
                                         finetune_epochs=finetune_epochs,
                                         calibration_batches=calibration_batches,
                                         min_per_layer=min_per_layer)
    pruned, history = nnx.clone(model), _history(meta)
    report = None
    if found["ratio"] > 0:
      name, horizon = search.parse_criterion(spec, task.seq_len)
      report = pruning.prune(pruned, found["ratio"], criterion=name, mode=mode,
                             min_per_layer=min_per_layer, horizon=horizon, history=history,
                             calibration=search.calibration(task),
                             calibration_batches=calibration_batches, seq_len=task.seq_len)
      search.finetune(pruned, task, config, finetune_epochs)
    metrics = search.evaluate(pruned, task, ("val", "test"))
    target = os.path.join(out_dir, spec.replace("@", "_at_"))
    saved = dataclasses.replace(meta, pruning=dict(
        history=history.to_json(), source_workdir=os.path.abspath(workdir),
        source_checkpoint=which, max_drop=max_drop, criterion=spec,
        finetune_epochs=finetune_epochs))
    os.makedirs(target, exist_ok=True)
    checkpoint.save_model(target, pruned, config, saved)
    results.append(dict(criterion=spec, ratio=found["ratio"], kept=found["kept"],
                        states=report.states_after if report else found["kept"],
                        probes=found["probes"], out_dir=os.path.abspath(target), **metrics))
    logging.info("%s: %.1f%% pruned within %.2f points on val; test accuracy %.4f", spec,
                 100 * found["ratio"], max_drop, metrics["test_accuracy"])
  summary = dict(workdir=os.path.abspath(workdir), max_drop=max_drop,
                 finetune_epochs=finetune_epochs, dense=dense, results=results)
  with open(os.path.join(out_dir, "max_drop.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def how_far_table(summary: dict) -> str:
  """Markdown table of a `how_far` summary."""
  d = summary["dense"]
  rows = [f"dense: val {100 * d['val_accuracy']:.2f}, test {100 * d['test_accuracy']:.2f}; "
          f"tolerance {summary['max_drop']:g} points on val, {summary['finetune_epochs']} "
          "fine-tuning epochs",
          "| criterion | pruned | val acc | test acc | test drop (pt) |", "|---|---|---|---|---|"]
  for r in summary["results"]:
    rows.append(f"| {r['criterion']} | {100 * r['ratio']:.1f}% | {100 * r['val_accuracy']:.2f} | "
                f"{100 * r['test_accuracy']:.2f} | "
                f"{100 * (d['test_accuracy'] - r['test_accuracy']):.2f} |")
  return "\n".join(rows)


FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Command-line flags, defined only when run as a program: importing this module
  next to another absl program (``last_nnx.cli.sweep`` has ``--workdir`` too) stays free."""
  flags.DEFINE_string("workdir", None, "Training workdir whose saved model is pruned.")
  flags.DEFINE_float("ratio", 0.3, "Fraction of the live states to remove, in [0, 1).")
  flags.DEFINE_string("criterion", None, "Pruning criterion (LTI models: last, energy, "
                      "calibrated, balanced, calibrated_balanced, global_hinf, uniform, magnitude, "
                      "random; selective (Mamba-2): calibrated, gramian, magnitude, uniform, "
                      "random; or a registered one); with --max_drop also name@L specs, a "
                      "comma-separated list, or 'all' (those of the model's kind). Default: "
                      "last (LTI) or calibrated (selective).")
  flags.DEFINE_enum("mode", "compact", ["compact", "mask"], "compact: the saved model is "
                    "smaller; mask: shapes kept, pruned states zeroed.")
  flags.DEFINE_string("out", None,
                      "Output directory (default WORKDIR/pruned-CRITERION-RATIO-MODE).")
  flags.DEFINE_enum("which", "latest", ["latest", "best"], "Which checkpoint to prune.")
  flags.DEFINE_integer("min_per_layer", 1, "States every layer keeps.")
  flags.DEFINE_enum("bidirectional", "sum", ["sum", "reference"], "Bidirectional score: sum of "
                    "both directions' squared norms, or the reference code's quirk.")
  flags.DEFINE_integer("horizon", 0, "Norms over: 0 infinite time (the paper), -1 the run's "
                       "sequence length, T > 0 that many steps.")
  flags.DEFINE_integer("seed", 0, "Seed of the random criterion.")
  flags.DEFINE_float("max_drop", -1.0, "How far can I prune: find, per criterion, the largest "
                     "ratio within this many accuracy points of dense on val (bisection), "
                     "report test accuracy there and write that model; < 0: off (--ratio).")
  flags.DEFINE_integer("finetune_epochs", 0, "--max_drop: fine-tuning epochs after pruning.")
  flags.DEFINE_integer("calibration_batches", 4, "Training batches calibrated criteria read.")
  flags.DEFINE_list("eval_splits", list(DEFAULT_EVAL_SPLITS), "Splits to evaluate before and "
                    "after pruning (empty: no evaluation).")


def _prune_lm(prune_lm) -> None:
  """A Mamba-2 LM: `last_nnx.cli.prune_lm` (``--max_drop`` is a perplexity tolerance in %)."""
  try:
    summary = prune_lm.prune_program(
        FLAGS.workdir, ratio=FLAGS.ratio, criterion=FLAGS.criterion,
        allocation=FLAGS.allocation, sequential=FLAGS.sequential, out=FLAGS.out,
        which=FLAGS.which, seed=FLAGS.seed, fmt=FLAGS.format, layout=FLAGS.layout,
        eval_splits=[s for s in FLAGS.eval_splits if s], max_drop=FLAGS.max_drop,
        opts=prune_lm.TextOptions.from_flags())
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"error: {e}")
  print("\n".join(prune_lm.prune_lines(summary)))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if not FLAGS.workdir:
    sys.exit("error: --workdir is required (the directory of a training run)")
  from last_nnx.cli import prune_lm
  if prune_lm.is_lm_target(FLAGS.workdir):  # an LM run or checkpoint directory
    return _prune_lm(prune_lm)
  if FLAGS.max_drop >= 0:
    criteria = FLAGS.criterion.split(",") if FLAGS.criterion else None  # resolved on load
    try:
      summary = how_far(FLAGS.workdir, FLAGS.max_drop, criteria, FLAGS.out, which=FLAGS.which,
                        finetune_epochs=FLAGS.finetune_epochs,
                        calibration_batches=FLAGS.calibration_batches,
                        min_per_layer=FLAGS.min_per_layer, mode=FLAGS.mode)
    except FloatingPointError as e:  # train.steps.Diverged, while fine-tuning
      sys.exit(f"error: fine-tuning diverged: {e}; lower optim.ssm_lr or --finetune_epochs, "
               "then rerun")
    except (ValueError, FileNotFoundError, RuntimeError) as e:
      sys.exit(f"error: {e}")
    print(how_far_table(summary))
    print(f"pruned models written under {os.path.dirname(summary['results'][0]['out_dir'])}")
    return
  try:
    summary = prune_saved_model(
        FLAGS.workdir, FLAGS.ratio, FLAGS.criterion, FLAGS.mode, FLAGS.out, which=FLAGS.which,
        min_per_layer=FLAGS.min_per_layer, bidirectional=FLAGS.bidirectional,
        horizon=FLAGS.horizon, seed=FLAGS.seed, calibration_batches=FLAGS.calibration_batches,
        eval_splits=[s for s in FLAGS.eval_splits if s])
  except (ValueError, FileNotFoundError, RuntimeError) as e:
    sys.exit(f"error: {e}")
  from last_nnx.pruning import PruneReport
  print(PruneReport.from_dict(summary["report"]).table())
  for split, metrics in summary["splits"].items():
    b, a = metrics["before"], metrics["after"]
    print(f"{split}: accuracy {b['accuracy']:.4f} -> {a['accuracy']:.4f}, "
          f"loss {b['loss']:.4f} -> {a['loss']:.4f}")
  print(f"pruned model written to {summary['out_dir']}")


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  from last_nnx.cli import errors, prune_lm
  prune_lm.define_flags(prune=True)
  app.run(main, flags_parser=errors.flags_parser())  # one-line flag errors
