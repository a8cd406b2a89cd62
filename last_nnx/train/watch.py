"""Watching the states while training: per-epoch scores and would-be keep sets.

At every epoch end (after validation, before any pruning event) the loop calls
`epoch_end`. For the watched criterion (``watch.criterion``, by default
``pruning.criterion``) it scores every state from the current weights and
records what an event at the target (``pruning.target_ratio``, cumulative over
the initial states) would do now:

* per layer, a histogram of ``log10`` of the scores (TensorBoard
  ``watch/log10_score/<layer>``; LAST scores span orders of magnitude);
* the would-be allocation (``watch/states_kept/<layer>``) and the share of each
  layer's energy (the criterion's norm) it keeps (``watch/energy_kept/<layer>``,
  their mean ``watch/energy_kept_mean``);
* the keep set itself, and its Jaccard overlap ``|A & B| / |A | B|`` with the
  previous epoch's (``watch/overlap_prev``). Keep sets are sets of state slots,
  so two epochs are compared only when the model has the same slots and live
  states and the same target (not across a pruning event).

The records go into ``RunState.watch`` (checkpointed, so the ``settled``
decision, `last_nnx.train.plan.event_target`, survives a resume) and into summary.json
under ``watch``, where each also gets ``overlap_final``: the overlap with the last record at
the same model size, i.e. the keep set the model had when it was pruned (or when training
ended). The full per-state scores are appended to ``watch_scores.jsonl`` in the
workdir for plotting (`last_nnx.cli.plot_watch`).

The data-free criteria score in milliseconds. Criteria that need calibration
data (on the model's layer kind: every criterion of a selective layer but
``magnitude`` and ``random``), and reductions (``balanced``), whose "states"
are not the model's, are not watched (one log line says so).
"""

import json
import os

import jax
import numpy as np
from absl import logging

from last_nnx import pruning
from last_nnx.pruning import criteria, pipeline
from last_nnx.pruning.hinf import resolve_horizon
from last_nnx.pruning.schedule import jaccard
from last_nnx.ssm import ssm_kind
from last_nnx.train.console import DETAIL

SCORES_FILE = "watch_scores.jsonl"
_LOG10_FLOOR = -30.0  # log10 of a zero score


def unwatchable(criterion: str, kind: str = "lti") -> str | None:
  """Why ``criterion`` cannot be watched every epoch on ``kind`` layers, or None if it can."""
  crit = criteria.get_criterion(criterion)
  if kind not in crit.kinds:
    return f"criterion {criterion!r} does not score {kind} layers"
  if crit.needs_data(kind):
    return f"criterion {criterion!r} needs calibration data"
  if crit.reduction:
    return f"criterion {criterion!r} is a projection, not a subset of the states"
  return None


def watchable(kind: str) -> tuple[str, ...]:
  """The criteria `unwatchable` lets through on ``kind`` layers (for error messages)."""
  return tuple(c for c in criteria.registered_criteria(kind) if unwatchable(c, kind) is None)


def watched_criterion(config) -> str:
  return config.watch.criterion or config.pruning.criterion


def encode_keep(keep: dict[str, np.ndarray]) -> dict[str, str]:
  """``{layer: (S,) bool}`` -> ``{layer: hex of the packed bits}`` (compact JSON)."""
  return {k: np.packbits(np.asarray(m, bool)).tobytes().hex() for k, m in keep.items()}


def decode_keep(hexes: dict[str, str], layout: dict[str, list]) -> dict[str, np.ndarray]:
  """Inverse of `encode_keep`; ``layout[layer][0]`` is the layer's slot count."""
  return {
    k: np.unpackbits(np.frombuffer(bytes.fromhex(h), np.uint8))[: layout[k][0]].astype(bool)
    for k, h in hexes.items()
  }


def keep_ids(record: dict) -> set[tuple[str, int]]:
  """A record's keep set as ``{(layer, slot)}``."""
  keep = decode_keep(record["keep"], record["layout"])
  return {(k, int(i)) for k, m in keep.items() for i in np.flatnonzero(m)}


def comparable(a: dict, b: dict) -> bool:
  """Same criterion, target and model (slots and live states per layer)."""
  return all(a[k] == b[k] for k in ("criterion", "target", "layout"))


def observe(
  model,
  *,
  criterion: str,
  target: float,
  initial_states: int,
  bidirectional: str,
  horizon: int | None,
  min_per_layer: int,
  seed: int,
):
  """Scores ``model``'s states and allocates at ``target``, as an event now would.

  Args:
    model: a model with `PrunableSSM` layers.
    criterion: a data-free subset criterion (`unwatchable` is None).
    target: cumulative fraction of the initial states pruned.
    initial_states: live states of the dense model.
    bidirectional, horizon, min_per_layer: as `pruning.prune`.
    seed: seeds ``random`` (the same draw every epoch).

  Returns:
    ``(record, scores)``: the JSON record (module docstring; ``keep`` hex-packed)
    and ``{layer: (S,) float64}`` scores, ``-inf`` on dead slots.
  """
  options = pruning.PruneOptions(
    criterion=criterion,
    min_per_layer=min_per_layer,
    bidirectional=bidirectional,
    horizon=horizon,
    seed=(seed, 0),
  )
  scored = pipeline.score_states(model, options)  # StateModes (LTI) or data-free statistics
  scores = scored.scores
  live = {path: int(np.isfinite(s).sum()) for path, s in scores.items()}
  ratio = pruning.event_ratio(target, sum(live.values()), initial_states)
  plan = pipeline.plan_event(scored, ratio)  # the event's dry run: nothing is pruned
  keep = plan.keep
  energy_kept = {path: layer.energy_kept for path, layer in plan.layers.items()}
  record = dict(
    criterion=criterion,
    target=float(target),
    ratio=float(ratio),
    layout={p: [int(s.size), live[p]] for p, s in scores.items()},
    keep=encode_keep(keep),
    states_kept={p: int(m.sum()) for p, m in keep.items()},
    energy_kept=energy_kept,
    energy_kept_mean=float(np.mean(list(energy_kept.values()))),
  )
  return record, scores


def log10_scores(s: np.ndarray) -> np.ndarray:
  """``log10`` of the finite scores, zeros floored at 1e-30."""
  s = np.asarray(s, np.float64)
  s = s[np.isfinite(s)]
  with np.errstate(divide="ignore"):
    return np.maximum(np.log10(np.maximum(s, 0.0)), _LOG10_FLOOR)


def write(writer, step: int, record: dict, scores: dict, histograms: bool) -> None:
  """TensorBoard: score histograms and the watch scalars."""
  if histograms:
    writer.write_histograms(
      step, {f"watch/log10_score/{p}": log10_scores(s) for p, s in scores.items()}
    )
  scalars = {f"watch/states_kept/{p}": v for p, v in record["states_kept"].items()}
  scalars.update({f"watch/energy_kept/{p}": v for p, v in record["energy_kept"].items()})
  scalars["watch/energy_kept_mean"] = record["energy_kept_mean"]
  if record["overlap_prev"] is not None:
    scalars["watch/overlap_prev"] = record["overlap_prev"]
  writer.write_scalars(step, scalars)


def append_scores(workdir: str, record: dict, scores: dict) -> None:
  """One line of ``watch_scores.jsonl``: the epoch and every slot's score (null if dead)."""
  line = dict(
    epoch=record["epoch"],
    train_epoch=record["train_epoch"],
    step=record["step"],
    criterion=record["criterion"],
    scores={p: [float(v) if np.isfinite(v) else None for v in s] for p, s in scores.items()},
  )
  with open(os.path.join(workdir, SCORES_FILE), "a") as f:
    f.write(json.dumps(line) + "\n")


def read_scores(workdir: str) -> list[dict]:
  """``watch_scores.jsonl`` by epoch; a rerun epoch (after a resume) keeps its last line."""
  by_epoch = {}
  with open(os.path.join(workdir, SCORES_FILE)) as f:
    for line in f:
      try:
        d = json.loads(line)
      except json.JSONDecodeError:  # a torn last line after a kill
        continue
      by_epoch[d["epoch"]] = d
  return [by_epoch[k] for k in sorted(by_epoch)]


def epoch_end(ctx, model, run, spec) -> None:
  """The loop's call at an epoch end: when the watch is on, appends this epoch's
  record to ``run.watch`` (a `RunState`) and writes it out. Whether to prune
  now is the plan's decision (`last_nnx.train.plan.event_target`)."""
  config = ctx.config
  p, w = config.pruning, config.watch
  criterion = watched_criterion(config)
  reason = unwatchable(criterion, ssm_kind(config.model.ssm))
  if w.enabled and reason is None:
    record, scores = observe(
      model,
      criterion=criterion,
      target=p.target_ratio,
      initial_states=sum(run.initial_states.values()),
      bidirectional=p.bidirectional,
      horizon=resolve_horizon(p.horizon, ctx.task.seq_len),
      min_per_layer=p.min_per_layer,
      seed=config.seed,
    )
    prev = run.watch[-1] if run.watch else None
    overlap = (
      jaccard(keep_ids(prev), keep_ids(record))
      if prev is not None and comparable(prev, record)
      else None
    )
    record.update(
      epoch=run.epoch_index + 1, train_epoch=spec.train_epoch, step=run.step, overlap_prev=overlap
    )
    run.watch.append(record)
    write(ctx.writer, run.step, record, scores, w.histograms)
    if jax.process_index() == 0:
      append_scores(ctx.workdir, record, scores)
    logging.info(
      "watch (%s at %.0f%%): keeps %s, energy kept %.3f, overlap with the previous epoch %s",
      criterion,
      100 * p.target_ratio,
      record["states_kept"],
      record["energy_kept_mean"],
      "-" if overlap is None else f"{overlap:.3f}",
      extra=DETAIL,
    )
  elif w.enabled and run.epoch_index == 0:
    logging.info(
      "watch: skipped, %s (set watch.criterion to a data-free one: %s)",
      reason,
      ", ".join(watchable(ssm_kind(config.model.ssm))),
    )


def summarize(records: list[dict]) -> list[dict]:
  """The records for summary.json: without the packed keep sets, with ``overlap_final``
  (Jaccard with the last comparable record: the keep set at that model size's end)."""
  out = []
  for i, r in enumerate(records):
    final = next(
      (records[j] for j in range(len(records) - 1, i - 1, -1) if comparable(records[j], r)), r
    )
    d = {k: v for k, v in r.items() if k != "keep"}
    d["overlap_final"] = jaccard(keep_ids(r), keep_ids(final))
    d["final_epoch"] = final["epoch"]
    out.append(d)
  return out
