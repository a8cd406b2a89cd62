"""The dense baseline: the pruned run's model, trained as long, never pruned.

With ``pruning.dense_baseline=True`` a run ends by training the same model
(same config, seed and so initialization, same data order) with
``pruning.schedule='none'`` for as many epochs as the pruned run's plan
(fine-tuning epochs included, so both see the same number of steps and the same
learning-rate schedule length), in ``WORKDIR/dense_baseline``. It checkpoints and
resumes like any run. Its accuracy stands beside the pruned one in
``summary.json['dense_baseline']`` and the final table.

Up to the first pruning event the two runs are the same computation (same
weights, optimizer state, dropout RNG, data order and learning rates), so the
baseline does not train those epochs again: just before its first event the
pruned run writes its state as the baseline's checkpoint (`fork`), and the
baseline resumes from it, training only the remaining epochs. Its final
parameters equal those of a baseline trained from scratch
(tests/test_console.py checks it).
"""

import copy
import dataclasses
import os
import shutil

import jax
import ml_collections
from absl import logging

from last_nnx.train import objectives
from last_nnx.train.checkpoint import Checkpointer
from last_nnx.train.run_state import Run, checkpoint_meta

BASELINE_DIR = "dense_baseline"


def baseline_config(config: ml_collections.ConfigDict, epochs: int) -> ml_collections.ConfigDict:
  """``config`` without pruning (and without its watch), trained for ``epochs`` epochs."""
  dense = ml_collections.ConfigDict(config.to_dict())
  dense.pruning.schedule = "none"
  dense.pruning.dense_baseline = False
  dense.train.epochs = epochs
  dense.watch.enabled = False  # it watches for pruning events that never come
  return dense


def fork(config, workdir: str, epochs: int, run: Run, val: dict, task, best: Checkpointer) -> None:
  """Writes the pruned run, just before its first event, as the baseline's checkpoint.

  Called at the end of the epoch the event follows (its validation done, the
  model not pruned yet): the baseline's `RunState` is the pruned run's as
  `end_epoch` would leave it, without pruning history or watch records; its
  ``best/`` is the pruned run's (the best model so far, or this epoch's).

  Args:
    config: the pruned run's config; epochs: its plan's length (`train_dense_baseline`).
    run: the pruned run (model, optimizer, state) at the end of that epoch.
    val: that epoch's validation metrics.
    task: the run's data (`checkpoint_meta` records its shapes).
    best: the pruned run's ``best/`` checkpointer.
  """
  state = run.state
  score = objectives.for_task(task).score(val)
  improved = state.best_val is None or score > state.best_val
  forked = dataclasses.replace(
    state,
    epoch_index=state.epoch_index + 1,
    step_in_epoch=0,
    partial_train=None,
    best_val=score if improved else state.best_val,
    dense={},
    events=[],
    watch=[],
    epochs=copy.deepcopy(state.epochs),
    initial_states=dict(state.initial_states),
  )
  meta = checkpoint_meta(forked, baseline_config(config, epochs), task)
  directory = os.path.join(workdir, BASELINE_DIR)
  ckpt = Checkpointer(os.path.join(directory, "checkpoints"), config.train.keep_checkpoints)
  ckpt.save(state.step, run.model, run.optimizer, meta)
  ckpt.close()  # before the pruned run's own save of this step (managers must not overlap)
  best_dir = os.path.join(directory, "best")
  if improved:
    best_ckpt = Checkpointer(best_dir, 1)
    best_ckpt.save(state.step, run.model, None, meta)
    best_ckpt.close()
  elif jax.process_index() == 0 and os.path.isdir(best.directory):
    best.wait()
    shutil.rmtree(best_dir, ignore_errors=True)
    shutil.copytree(best.directory, best_dir)
  logging.info(
    "dense baseline: forked from this run before its first pruning event (step "
    "%d) into %s; it trains only the %d epochs after it",
    state.step,
    directory,
    epochs - forked.epoch_index,
  )


def train_dense_baseline(config, workdir: str, epochs: int, train_fn) -> dict:
  """Trains (or resumes) the baseline with ``train_fn(config, workdir, final_table=False)``:
  from the `fork` checkpoint when the run wrote one, else from the start.

  Returns ``{'val', 'test', 'states', 'epochs', 'workdir'}`` of its final model.
  """
  directory = os.path.join(workdir, BASELINE_DIR)
  logging.info(
    "dense baseline: the same model and initialization, no pruning, %d epochs, into %s",
    epochs,
    directory,
  )
  summary = train_fn(baseline_config(config, epochs), directory, final_table=False)
  final = summary["final"]
  return dict(
    val=final["val"],
    test=final.get("test"),
    states=final["states"],
    epochs=epochs,
    workdir=directory,
  )
