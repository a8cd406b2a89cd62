"""The dense baseline: the pruned run's model, trained as long, never pruned.

With ``pruning.dense_baseline=True`` a run ends by training the same model
(same config, seed and so initialization, same data order) with
``pruning.schedule='none'`` for as many epochs as the pruned run's plan
(fine-tuning epochs included, so both see the same number of steps and the same
learning-rate schedule length), in ``WORKDIR/dense_baseline``. It checkpoints and
resumes like any run. Its accuracy stands beside the pruned one in
``summary.json['dense_baseline']`` and the final table.
"""

import os

import ml_collections
from absl import logging

BASELINE_DIR = "dense_baseline"


def baseline_config(config: ml_collections.ConfigDict, epochs: int) -> ml_collections.ConfigDict:
  """``config`` without pruning (and without its watch), trained for ``epochs`` epochs."""
  dense = ml_collections.ConfigDict(config.to_dict())
  dense.pruning.schedule = "none"
  dense.pruning.dense_baseline = False
  dense.train.epochs = epochs
  dense.watch.enabled = False  # it watches for pruning events that never come
  return dense


def train_dense_baseline(config, workdir: str, epochs: int, train_fn) -> dict:
  """Trains (or resumes) the baseline with ``train_fn(config, workdir, final_table=False)``.

  Returns ``{'val', 'test', 'states', 'epochs', 'workdir'}`` of its final model.
  """
  directory = os.path.join(workdir, BASELINE_DIR)
  logging.info("dense baseline: the same model and initialization, no pruning, %d epochs, "
               "into %s", epochs, directory)
  summary = train_fn(baseline_config(config, epochs), directory, final_table=False)
  final = summary["final"]
  return dict(val=final["val"], test=final.get("test"), states=final["states"], epochs=epochs,
              workdir=directory)
