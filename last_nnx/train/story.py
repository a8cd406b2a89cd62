"""The console story's own lines: the plan, one line per epoch, and the epoch's warnings.

`console` routes the lines; this module words them (the loop calls both).
"""

from absl import logging
from clu import parameter_overview
from flax import nnx

from last_nnx.train import steps
from last_nnx.train.console import DETAIL
from last_nnx.train.events import states_per_layer
from last_nnx.train.run_state import flat_config


def log_parameters(model, writer, config) -> None:
  """The parameter overview (log file only) and the config as hyperparameters."""
  logging.info(
    "parameters:\n%s",
    parameter_overview.get_parameter_overview(nnx.to_pure_dict(nnx.state(model, nnx.Param))),
    extra=DETAIL,
  )
  writer.write_hparams(
    {
      k: v
      for k, v in flat_config(config.to_dict()).items()
      if isinstance(v, (int, float, str, bool))
    }
  )


def log_plan(config, plan: list, micro: int, model) -> None:
  """``plan: 6 epochs (4 training, 2 fine-tuning, 2 pruning events, ...)``."""
  if config.pruning.schedule == "settled":
    window = [s.train_epoch for s in plan if s.settle]
    events = (
      f"pruning once the keep set settles, after an epoch in {window[0]}-{window[-1]}"
      if window
      else "no pruning window"
    )
  else:
    events = f"{sum(s.target_ratio is not None for s in plan)} pruning events"
  logging.info(
    "plan: %d epochs (%d training, %d fine-tuning, %s, %d micro-steps each); states per layer %s",
    len(plan),
    config.train.epochs,
    sum(s.finetune for s in plan),
    events,
    micro,
    states_per_layer(model),
  )


def epoch_line(label: str, scalars: dict, objective=steps.CLASSIFICATION) -> str:
  """``'epoch 3/6: train loss 2.104 acc 21.3% | val loss 2.087 acc 22.0% | 96 states'``
  (a language model: ``loss 1.62 ppl 5.05 bpb 2.34``)."""
  parts = [label + ":"]
  for split in ("train", "val"):
    if f"{split}/loss" in scalars:
      values = {k.split("/", 1)[1]: v for k, v in scalars.items() if k.startswith(split + "/")}
      parts.append(f"{split} {objective.describe(values)}")
  return " | ".join([" ".join(parts[:2])] + parts[2:] + [f"{scalars['states/total']} states"])


def warn_if_at_chance(val: dict, chance: float | None, run, config) -> None:
  """``chance``: the accuracy of guessing (None: the objective has no such warning)."""
  if chance is None:
    return
  acc = val["accuracy"]
  run.chance_epochs = run.chance_epochs + 1 if acc <= chance + 0.02 else 0
  if run.chance_epochs >= config.train.chance_warning_epochs:
    logging.warning(
      "validation accuracy %.3f has sat at chance (%.3f) for %d epochs: on "
      "Path-X this is the known failure; check dt_min, the lr and the data",
      acc,
      chance,
      run.chance_epochs,
    )


def warn_if_unstable(scalars: dict, config) -> None:
  """Poles on or past the unit circle: the recurrence no longer forgets, and the state
  norms pruning ranks by are infinite (a penalty on them can push poles there)."""
  largest = scalars.get("ssm/pole_abs_max")
  if largest is not None and largest >= 1.0:
    logging.warning(
      "a discrete pole has |lambda| = %.5f >= 1 (unstable state); set "
      "model.ssm_config.clip_eigs=True (S5) to keep poles inside the unit "
      "circle%s",
      largest,
      ", or lower regularizer.weight" if config.regularizer.kind != "none" else "",
    )
