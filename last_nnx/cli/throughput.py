r"""Measures how fast the input pipeline delivers training batches.

  python -m last_nnx.cli.throughput --task pathx --batch_size 32 --n_train 2000

Builds the task (synthetic unless ``--dir``), then times full epochs of
``train_batches`` with nothing consuming the batches: examples per second is
the rate the pipeline sustains on its own, to compare with a training step's.
The first epoch includes tf.data's start-up; the figure reported is the
median over the later epochs.
"""

import statistics
import time

from absl import app, flags, logging

from last_nnx import data

FLAGS = flags.FLAGS


def _define_flags() -> None:
  """Defined only when run as a program, so importing this module defines no flags."""
  flags.DEFINE_enum("task", "listops", list(data.TASKS), "Task.")
  flags.DEFINE_string("dir", None, "Real data folder (default: the synthetic generator).")
  flags.DEFINE_integer("batch_size", 50, "Training batch size.")
  flags.DEFINE_integer("n_train", 2000, "Synthetic training examples.")
  flags.DEFINE_integer("seq_len", None, "Sequence length (default: the task's).")
  flags.DEFINE_integer("resolution", None, "Pathfinder/Path-X image side.")
  flags.DEFINE_integer("epochs", 4, "Epochs timed.")
  flags.DEFINE_string("cache_dir", None, "Cache folder (default: the config's).")


def measure(task: data.Task, epochs: int) -> dict:
  """Seconds per epoch and examples per second of ``task.train_batches``."""
  times = []
  for epoch in range(epochs):
    start = time.perf_counter()
    n = sum(len(batch[2]) for batch in task.train_batches(epoch))
    times.append(time.perf_counter() - start)
  steady = statistics.median(times[1:]) if len(times) > 1 else times[0]
  return {
    "examples_per_epoch": n,
    "first_epoch_s": times[0],
    "epoch_s": steady,
    "examples_per_s": n / steady,
    "ms_per_batch": 1000 * steady / task.steps_per_epoch,
  }


def main(argv):
  del argv
  c = data.default_data_config(FLAGS.task)
  c.dir = FLAGS.dir
  c.synthetic.n_train = FLAGS.n_train
  c.synthetic.n_val = c.synthetic.n_test = max(FLAGS.batch_size, FLAGS.n_train // 10)
  if FLAGS.resolution:
    c.resolution = FLAGS.resolution
  if FLAGS.seq_len:
    c.seq_len = FLAGS.seq_len
  if "max_length" in c.synthetic:
    c.synthetic.max_length = min(c.synthetic.max_length, c.seq_len)
  if FLAGS.cache_dir:
    c.cache_dir = FLAGS.cache_dir
  start = time.perf_counter()
  task = data.build_task(c, batch_size=FLAGS.batch_size)
  built = time.perf_counter() - start
  result = measure(task, FLAGS.epochs)
  logging.info(
    "%s L=%d batch %d: built in %.2f s; %s",
    FLAGS.task,
    task.seq_len,
    FLAGS.batch_size,
    built,
    {k: round(v, 2) for k, v in result.items()},
  )


if __name__ == "__main__":
  _define_flags()
  app.run(main)
