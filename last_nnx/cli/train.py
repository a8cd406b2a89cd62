"""Command line of the training system (absl flags + ml_collections config files).

  python -m last_nnx.train --config experiments/configs/listops.py:s5,smoke \
      --workdir runs/listops --config.pruning.target_ratio=0.5

Every config field can be overridden with ``--config.<path>=value``. Mistakes in
the command line (a missing task, an unknown preset or field, a bad value) end in
one line naming the choices, before anything heavy is imported
(`last_nnx.cli.errors`).
"""

import logging as pylogging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from last_nnx.cli import configs, errors  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Task config file, e.g. "
                                "experiments/configs/listops.py:s4d,smoke", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and "
                    "summary.json; rerunning with the same directory resumes.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(pylogging.Filter):
  """Drops INFO chatter of orbax (dozens of lines per checkpoint); keeps warnings."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    return record.levelno >= pylogging.WARNING or "/orbax/" not in record.pathname


def quiet_library_logs() -> None:
  logging.get_absl_handler().addFilter(_QuietLibraries())


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  from last_nnx.train import distributed
  from last_nnx.train.loop import train_and_evaluate
  from last_nnx.train.steps import Diverged
  quiet_library_logs()
  try:
    distributed.initialize(FLAGS.config.train)  # before anything touches the devices
    from last_nnx.train import console
    log_file = console.route_logs(FLAGS.workdir, FLAGS.config.train.get("console", "story"))
    logging.info("full log (per-step scalars, histograms, hyperparameters): %s; "
                 "TensorBoard: tensorboard --logdir %s", log_file, FLAGS.workdir)
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except (ValueError, FileNotFoundError, RuntimeError, Diverged) as e:  # Diverged: no retries left
    if distributed.lost_peer(e):
      _exit_now(f"{str(e).splitlines()[0]} -- another process of this run has stopped: rerun "
                "all of them with the same commands; they resume from the last committed "
                "checkpoint")
    if isinstance(e, RuntimeError):
      raise
    logging.error("%s", e)
    sys.exit(f"error: {e}")


def _exit_now(message: str) -> None:
  """Ends the process at once with one error line: a normal exit would wait (minutes, then
  abort with a traceback) for the distributed service's barriers of a process that is gone,
  and for the checkpoint that was in flight, which the rerun discards."""
  logging.error("%s", message)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  os._exit(1)


def run():
  sys.path.insert(0, os.getcwd())  # config files import experiments.configs.base
  sys.argv = configs.locate_in_argv(sys.argv)  # elsewhere: the configs the package ships
  app.run(_main, flags_parser=errors.flags_parser(errors.check_config_argv))


if __name__ == "__main__":
  run()
