"""A saved run, pruned after training: `prune_saved_model` and `how_far`.

Both read the newest (or best) checkpoint of a training workdir with
`last_nnx.train.checkpoint.load_model`, prune through `last_nnx.pruning.prune`
and write the result with `last_nnx.train.checkpoint.save_model`: a directory
that ``load_model`` (and so the programs ``last_nnx.cli.prune`` and
``last_nnx.cli.sweep``) reads back as the smaller model. The saved model keeps
its pruning history (``meta.pruning['history']``, and for `prune_saved_model`
an `last_nnx.pruning.EventRecord` appended to ``meta.run['events']``), so it
stays replayable from the dense model.

A criterion is a spec as everywhere in the sweeps: a registered name, or
``name@T`` (norms over ``T`` steps), ``name@L`` (over the run's sequence
length); it must apply to the saved model's layer kind (LTI or selective).
"""

import dataclasses
import json
import os

from absl import logging

from last_nnx import data, pruning
from last_nnx.pruning.allocate import check_ratio
from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.sweeps.max_drop import (
  calibration,
  check_specs,
  default_criterion,
  max_drop_search,
  parse_criterion,
  resolve_criteria,
  split_metrics,
)
from last_nnx.train import checkpoint, steps

DEFAULT_EVAL_SPLITS = ("val",)
# ``criteria=['all']`` of `how_far` on an LTI model (a model with selective layers: every
# applicable criterion, `last_nnx.sweeps.max_drop.default_criteria`).
ALL_CRITERIA = (
  "last",
  "last@L",
  "energy",
  "calibrated",
  "balanced",
  "balanced@L",
  "calibrated_balanced",
)


def saved_history(meta: checkpoint.CheckpointMeta) -> pruning.PruningHistory:
  """The pruning history of a saved model (possibly empty)."""
  saved = (meta.pruning or {}).get("history")
  if saved:
    return pruning.PruningHistory.from_json(saved)
  return pruning.PruningHistory.from_run_events(
    meta.events, dense_states=meta.run.get("initial_states") or None
  )


def task_of(config) -> data.Task:
  """The task of a saved run's config (one process)."""
  return data.build_task(
    config.data,
    batch_size=config.train.batch_size,
    eval_batch_size=config.train.eval_batch_size,
    seed=config.seed,
  )


def evaluate_splits(model, config, splits) -> dict[str, dict[str, float]]:
  """``{split: {'accuracy', 'loss'}}`` of ``model`` on the config's task
  (`last_nnx.train.steps.evaluate` of each split)."""
  if not splits:
    return {}
  task = task_of(config)
  return {split: steps.evaluate(model, task, split) for split in splits}


def default_out_dir(workdir: str, ratio: float, criterion: str, mode: str) -> str:
  return os.path.join(workdir, f"pruned-{criterion.replace('@', '_at_')}-{ratio:g}-{mode}")


def _check_out(out_dir: str | None, workdir: str) -> None:
  if out_dir and os.path.abspath(out_dir) == os.path.abspath(workdir):
    raise ValueError(
      f"--out {out_dir!r} is the workdir itself: writing there would replace "
      "its checkpoints; choose another directory"
    )


def prune_saved_model(
  workdir: str,
  ratio: float,
  criterion: str | None = "last",
  mode: str = "compact",
  out_dir: str | None = None,
  *,
  which: str = "latest",
  min_per_layer: int = 1,
  bidirectional: str = "sum",
  seed: int = 0,
  calibration_batches: int = DEFAULT_BATCHES,
  evaluate: bool = True,
  eval_splits=DEFAULT_EVAL_SPLITS,
  evaluate_fn=None,
) -> dict:
  """Loads the saved model of ``workdir``, prunes it, writes it to ``out_dir``.

  Args:
    workdir: a training workdir (or a directory this function wrote).
    ratio: fraction of the live states to remove, in [0, 1).
    criterion: a spec (module docstring) that applies to the saved model;
      None: ``last`` on an LTI model, ``calibrated`` on a selective one
      (`last_nnx.sweeps.max_drop.default_criterion`).
    mode: ``'compact'`` (the saved model is smaller) or ``'mask'``.
    out_dir: where to write (default ``workdir/pruned-CRITERION-RATIO-MODE``);
      must differ from ``workdir``.
    which: ``'latest'`` or ``'best'`` (`last_nnx.train.checkpoint.WHICH`).
    min_per_layer, bidirectional, seed, calibration_batches: as
      `last_nnx.pruning.PruneOptions`.
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
  # A bad setting fails before any loading: the ratio, the spec, the options (with the
  # spec's name, or the LTI default standing in for the model's).
  check_ratio(ratio)
  pruning.PruneOptions(
    criterion=parse_criterion(criterion or "last", 1)[0],
    mode=mode,
    min_per_layer=min_per_layer,
    bidirectional=bidirectional,
    seed=seed,
    calibration_batches=calibration_batches,
  )
  _check_out(out_dir, workdir)
  evaluate_fn = evaluate_fn or evaluate_splits
  eval_splits = tuple(eval_splits) if evaluate else ()

  model, config, meta = checkpoint.load_model(workdir, which=which)
  spec = criterion or default_criterion(model)
  check_specs(model, [spec])  # before any evaluation
  out_dir = out_dir or default_out_dir(workdir, ratio, spec, mode)
  history = saved_history(meta)
  before = evaluate_fn(model, config, eval_splits)
  # A saved config may lack a data section: then no '@L', calibration or diagnostic.
  try:
    seq_len = data.effective_seq_len(config.data)
  except (AttributeError, KeyError, TypeError, ValueError):
    seq_len = 0
  if spec.endswith("@L") and not seq_len:
    raise ValueError(
      f"criterion {spec!r} needs the run's sequence length, and its config has no data"
    )
  name, horizon = parse_criterion(spec, seq_len)
  report = pruning.prune(
    model,
    ratio,
    criterion=name,
    mode=mode,
    seed=seed,
    min_per_layer=min_per_layer,
    bidirectional=bidirectional,
    horizon=horizon,
    history=history,
    calibration=(calibration(task_of(config)) if pruning.needs_calibration(model, name) else None),
    calibration_batches=calibration_batches,
    seq_len=seq_len or None,
  )
  logging.info("pruned %s (%s, %s, ratio %.4f):\n%s", workdir, spec, mode, ratio, report.table())
  after = evaluate_fn(model, config, eval_splits)

  report_dict = json.loads(report.to_json())
  event = pruning.EventRecord(
    status="applied",
    source="last_nnx.cli.prune",
    criterion=spec,
    mode=mode,
    target=report.ratio_achieved_total,
    ratio=float(ratio),
    states_before={k: v.states_before for k, v in report.layers.items()},
    states_after={k: v.states_after for k, v in report.layers.items()},
    val_before=before.get("val"),
    val_after=after.get("val"),
    report=report_dict,
  )
  meta = dataclasses.replace(
    meta,
    run=dict(meta.run, events=meta.events + [event.to_dict()]),
    pruning=dict(
      history=history.to_json(), source_workdir=os.path.abspath(workdir), source_checkpoint=which
    ),
  )
  os.makedirs(out_dir, exist_ok=True)
  checkpoint.save_model(out_dir, model, config, meta)
  first = eval_splits[0] if eval_splits else None
  summary = dict(
    out_dir=os.path.abspath(out_dir),
    workdir=os.path.abspath(workdir),
    report=report_dict,
    splits={k: dict(before=before[k], after=after[k]) for k in before},
    before=before.get(first, {}),
    after=after.get(first, {}),
    states_before=report.states_before,
    states_after=report.states_after,
  )
  with open(os.path.join(out_dir, "prune_report.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def how_far(
  workdir: str,
  max_drop: float,
  criteria,
  out_dir: str | None = None,
  *,
  which: str = "latest",
  finetune_epochs: int = 0,
  calibration_batches: int = DEFAULT_BATCHES,
  min_per_layer: int = 1,
  mode: str = "compact",
) -> dict:
  """For each criterion spec: the largest ratio within ``max_drop`` points on val, and the model.

  Bisects the ratio (`last_nnx.sweeps.max_drop.max_drop_search`) on the
  validation split; each probe prunes a copy with ``mode`` (fine-tuned
  ``finetune_epochs`` epochs when > 0) and measures it on val and test. The
  copy measured at the ratio found is the one written to ``out_dir/<spec>``
  (readable by ``load_model``), with the accuracies measured on it.

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

  if criteria and list(criteria) != ["all"]:
    for spec in criteria:
      parse_criterion(spec, 1)  # a misspelt name fails before any loading
  out_dir = out_dir or os.path.join(workdir, f"max_drop-{max_drop:g}")
  _check_out(out_dir, workdir)
  model, config, meta = checkpoint.load_model(workdir, which=which)
  criteria = (
    resolve_criteria(model, criteria, ALL_CRITERIA) if criteria else [default_criterion(model)]
  )
  task = task_of(config)
  dense = split_metrics(model, task, ("val", "test"))
  results = []
  for spec in criteria:
    found = max_drop_search(
      model,
      task,
      config,
      spec,
      max_drop,
      finetune_epochs=finetune_epochs,
      calibration_batches=calibration_batches,
      min_per_layer=min_per_layer,
      splits=("val", "test"),
      mode=mode,
    )
    history = saved_history(meta)
    if found["copy"] is not None:
      pruned, report = found["copy"]
      history.record(report)
      metrics = found["metrics"]
    else:  # nothing could be pruned within the tolerance: the dense model
      pruned, report, metrics = nnx.clone(model), None, dense
    target = os.path.join(out_dir, spec.replace("@", "_at_"))
    saved = dataclasses.replace(
      meta,
      pruning=dict(
        history=history.to_json(),
        source_workdir=os.path.abspath(workdir),
        source_checkpoint=which,
        max_drop=max_drop,
        criterion=spec,
        finetune_epochs=finetune_epochs,
      ),
    )
    os.makedirs(target, exist_ok=True)
    checkpoint.save_model(target, pruned, config, saved)
    results.append(
      dict(
        criterion=spec,
        ratio=found["ratio"],
        kept=found["kept"],
        states=report.states_after if report else found["kept"],
        probes=found["probes"],
        out_dir=os.path.abspath(target),
        **metrics,
      )
    )
    logging.info(
      "%s: %.1f%% pruned within %.2f points on val; test accuracy %.4f",
      spec,
      100 * found["ratio"],
      max_drop,
      metrics["test_accuracy"],
    )
  summary = dict(
    workdir=os.path.abspath(workdir),
    max_drop=max_drop,
    finetune_epochs=finetune_epochs,
    dense=dense,
    results=results,
  )
  with open(os.path.join(out_dir, "max_drop.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def how_far_table(summary: dict) -> str:
  """Markdown table of a `how_far` summary."""
  d = summary["dense"]
  rows = [
    f"dense: val {100 * d['val_accuracy']:.2f}, test {100 * d['test_accuracy']:.2f}; "
    f"tolerance {summary['max_drop']:g} points on val, {summary['finetune_epochs']} "
    "fine-tuning epochs",
    "| criterion | pruned | val acc | test acc | test drop (pt) |",
    "|---|---|---|---|---|",
  ]
  for r in summary["results"]:
    rows.append(
      f"| {r['criterion']} | {100 * r['ratio']:.1f}% | {100 * r['val_accuracy']:.2f} | "
      f"{100 * r['test_accuracy']:.2f} | "
      f"{100 * (d['test_accuracy'] - r['test_accuracy']):.2f} |"
    )
  return "\n".join(rows)
