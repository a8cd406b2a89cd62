"""The end of a run: what ``summary.json`` holds, and the table the console ends with.

Every accuracy is named for what it is:

* ``before_first_event``: the model just before the first pruning event, at the
  end of training epoch ``epoch`` (not a dense model trained as long as the
  pruned one: it has seen fewer epochs and its learning rate was still high);
* ``final``: the model at the end, after the last fine-tuning epoch;
* ``dense_baseline`` (with ``pruning.dense_baseline=True``): the same model from
  the same initialization trained without pruning for as many epochs as the
  pruned run (`last_nnx.train.baseline`), the fair comparison.
"""

from last_nnx.train import objectives, steps, watch
from last_nnx.train.events import states_per_layer


def build(model, task, run, config, mesh, plan_epochs: int, timing: dict) -> dict:
  """``summary.json`` of a finished run (see the module docstring for the names)."""
  final = {"val": steps.evaluate(model, task, "val", mesh)}
  if config.train.eval_test:
    final["test"] = steps.evaluate(model, task, "test", mesh)
  initial, now = run.initial_states, states_per_layer(model)
  final.update(states=now, epochs=plan_epochs)
  objective = objectives.for_task(task)
  return dict(
    task=config.task,
    model=config.model.ssm,
    synthetic_data=task.synthetic,
    objective=objective.name,
    score=objective.score_name,
    data=getattr(task, "info", None),  # a text task: corpus, tokenizer, n-gram baselines
    before_first_event=run.dense or None,
    final=final,
    dense_baseline=None,
    states_initial=initial,
    states_final=now,
    ratio_achieved=1.0 - sum(now.values()) / max(1, sum(initial.values())),
    pruning_events=[{k: v for k, v in e.items() if k != "report"} for e in run.events],
    epochs=run.epochs,
    watch=watch.summarize(run.watch),
    steps=run.step,
    wall_time_s=run.wall_time,
    timing=timing,
  )


def result_table(summary: dict, criterion: str) -> str:
  """Three rows a user cannot misread: which model, its val and test score (accuracy; a
  language model: bits per byte, after the n-gram baselines), its states."""
  objective = objectives.by_name(summary.get("objective", "classification"))
  figure = lambda result, split: objective.headline((result or {}).get(split))
  total = lambda states: sum(states.values())
  n0, n1 = total(summary["states_initial"]), total(summary["states_final"])
  final = summary["final"]
  rows = []
  if summary.get("dense_baseline"):
    d = summary["dense_baseline"]
    rows.append(
      (f"dense, no pruning ({d['epochs']} epochs, same init)", d, f"{total(d['states'])}")
    )
  elif summary.get("before_first_event"):
    b = summary["before_first_event"]
    rows.append(
      (
        f"before the first event (epoch {b.get('epoch', '?')}; not a dense baseline)",
        b,
        f"{total(b['states'])}",
      )
    )
  else:
    rows.append(("dense: none (pruning.dense_baseline=True trains one)", None, f"{n0}"))
  pruned = (
    f"pruned ({criterion}, {100 * summary['ratio_achieved']:.0f}% removed, "
    f"{final['epochs']} epochs)"
    if summary["pruning_events"]
    else f"final, no pruning event ({final['epochs']} epochs)"
  )
  rows.append((pruned, final, f"{n1} of {n0}"))
  title = "result" + (
    " (SYNTHETIC data: not a reproduction of any paper's numbers)"
    if summary["synthetic_data"]
    else ""
  )
  baselines = (summary.get("data") or {}).get("baselines_bits_per_byte") or {}
  rows[:0] = [
    (
      f"{name} model of the train split (baseline)",
      {s: {"bits_per_byte": v} for s, v in by_split.items()},
      "-",
    )
    for name, by_split in baselines.items()
  ]
  width = max(len(r[0]) for r in rows)
  short = objective.short_name
  lines = [title, f"{'model':<{width}}  {'val ' + short:>8}  {'test ' + short:>8}  states"]
  lines += [
    f"{name:<{width}}  {figure(r, 'val'):>8}  {figure(r, 'test'):>8}  {states}"
    for name, r, states in rows
  ]
  return "\n".join(lines)
