"""Datasets: real-format readers and synthetic stand-ins behind one `build_task`.

  task = data.build_task(config.data, batch_size=50, seed=0)
  for inputs, lengths, labels in task.train_batches(epoch=0): ...
  for inputs, lengths, labels in task.eval_batches("val"): ...

``data.dir = None`` (the default) runs the task's synthetic generator and says
so in a WARNING; a folder runs the reader of the original release found under
it (`layout`); ``data.source = "tfds"`` reads the TensorFlow Datasets build
(image, text, speech; `tfds_sources`). All are cached under ``data.cache_dir``.
Two tasks are real data without an LRA release: ``digits`` (embedded in
scikit-learn, `digits`) and ``arrays`` (your ``.npz`` files, or numpy arrays
through `from_arrays`; `arrays`). See docs/data.md.

Each of these is a `source.Source`; `table` chooses one by task, data dir and
source, and a new source is one `table.register` call.
"""

import ml_collections
from absl import logging

from last_nnx.data import table
from last_nnx.data.arrays import ArrayError, from_arrays, save_arrays
from last_nnx.data.config import BYTE_VOCAB, SPECS, TASKS, TFDS_TASKS
from last_nnx.data.layout import DataError
from last_nnx.data.pipeline import SPLITS, Batch, Continuous, Features, Split, Task, Tokens
from last_nnx.data.source import Resolved, Source
from last_nnx.data.table import (
  choose,
  default_config,
  effective_seq_len,
  is_synthetic,
  register,
  resolve,
  tasks,
)

default_data_config = default_config  # the name configs and tests know


def build_task(
  c: ml_collections.ConfigDict,
  *,
  batch_size: int,
  eval_batch_size: int | None = None,
  seed: int = 0,
  process_index: int = 0,
  process_count: int = 1,
) -> Task:
  """Loads (or generates) the data of ``c.task`` and wraps it in a batching `Task`.

  Args:
    c: the ``data`` section (`default_data_config`).
    batch_size: training examples per batch on this process.
    eval_batch_size: examples per evaluation batch (default ``batch_size``).
    seed: orders the training epochs (not the synthetic data: that is
      ``c.synthetic.seed``).
    process_index, process_count: this host's shard of every split.
  """
  c, source, splits, meta, encoding = table.load(c)
  synthetic_data = source.synthetic
  n_classes = meta["n_classes"]
  fields = dict(
    name=c.task,
    n_classes=n_classes,
    vocab_size=encoding.vocab_size,
    in_dim=encoding.in_dim,
    seq_len=c.seq_len,
    retrieval=c.task in SPECS and SPECS[c.task].retrieval,
    synthetic=synthetic_data,
    splits=splits,
    encoding=encoding,
    batch_size=batch_size,
    eval_batch_size=eval_batch_size or batch_size,
    seed=seed,
    process_index=process_index,
    process_count=process_count,
  )
  # A source whose batches are not (inputs, lengths, labels) rows makes its own Task
  # (text: next-token targets).
  make_task = getattr(source, "make_task", None)
  task = make_task(meta, **fields) if make_task else Task(**fields)
  if task.steps_per_epoch < 1:
    raise ValueError(
      f"{len(splits['train'])} training examples over {process_count} "
      f"process(es) cannot fill one batch of {batch_size}: lower "
      "train.batch_size" + (" or raise data.synthetic.n_train" if synthetic_data else "")
    )
  logging.info(
    "data %s: %s examples, L=%d, %d classes, %d steps per epoch",
    c.task,
    task.num_examples,
    task.seq_len,
    n_classes,
    task.steps_per_epoch,
  )
  return task


__all__ = [
  "ArrayError",
  "BYTE_VOCAB",
  "Batch",
  "Continuous",
  "DataError",
  "Features",
  "Resolved",
  "SPECS",
  "SPLITS",
  "Source",
  "Split",
  "TASKS",
  "TFDS_TASKS",
  "Task",
  "Tokens",
  "build_task",
  "choose",
  "default_config",
  "default_data_config",
  "effective_seq_len",
  "from_arrays",
  "is_synthetic",
  "register",
  "resolve",
  "save_arrays",
  "tasks",
]
