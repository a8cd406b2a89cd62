"""Named batch streams: which training batches each reader of a run sees.

Every stream is a batch order of the training split drawn by the task from an
epoch number (`last_nnx.data.Task.epoch_order`); the streams differ only in
the epoch numbers they draw from, kept apart here so no two readers share an
order by accident and every reader of one stream (the training loop, the
sweeps, the saved-model pruner) sees the same batches.

=================  ===================================  ================================
stream             epoch numbers                        read by
=================  ===================================  ================================
training           ``epoch`` (0, 1, ...)                 the training loop's steps
calibration        ``2**21 + index``                     calibrated criteria (global rows)
recalibration      ``2**20 + index``                     BatchNorm re-estimation
fine-tuning        ``2000 + 10 seed + epoch``            fine-tuning a pruned copy
iterative          ``1000 + 10 step + epoch``            a sweep's iterative schedule
=================  ===================================  ================================

``index`` tells the draws of one stream apart: the plan position of the
training loop's event, the step of a sweep's iterative schedule, 0 for a
one-shot pruning of a saved model.
"""

from last_nnx.data import pipeline

_RECALIBRATION = 1 << 20
_CALIBRATION = 1 << 21
_FINETUNING = 2000
_ITERATIVE = 1000


def training(task, epoch: int, start_step: int = 0):
  """This process's ``(inputs, lengths, labels)`` batches of training epoch ``epoch``."""
  return task.train_batches(epoch, start_step=start_step)


def calibration(task, index: int = 0):
  """Training batches ``(inputs, lengths, labels)`` a calibrated criterion reads (draw
  ``index``, module docstring).

  The same rows on every process (drawn from the whole train split, not this
  process's shard): the scores, and so the keep set, must agree everywhere.
  Global batches (``task.batch_size`` rows on each of ``task.process_count``
  processes), so that a run's scores do not depend on how many processes it
  has. Lazy: criteria that need no data read nothing.
  """
  order = task.epoch_order(_CALIBRATION + index)
  size = task.batch_size * task.process_count
  for k in range(len(order) // size):
    yield pipeline.gather_rows(
      order[k * size : (k + 1) * size], task.splits["train"], task.encoding
    )


def recalibration(task, index: int = 0):
  """Training batches BatchNorm statistics are re-estimated on (draw ``index``)."""
  return task.train_batches(_RECALIBRATION + index)


def finetuning(task, seed: int, epoch: int):
  """Batches of fine-tuning epoch ``epoch`` of a pruned copy (``seed``: which copy)."""
  return task.train_batches(_FINETUNING + 10 * seed + epoch)


def iterative(task, step: int, epoch: int):
  """Batches of fine-tuning epoch ``epoch`` after step ``step`` of an iterative schedule."""
  return task.train_batches(_ITERATIVE + 10 * step + epoch)
