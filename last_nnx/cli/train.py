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
config_flags.DEFINE_config_file(
  "config",
  None,
  "Task config file, e.g. experiments/configs/listops.py:s4d,smoke",
  lock_config=True,
)
flags.DEFINE_string(
  "workdir",
  None,
  "Directory for checkpoints, TensorBoard logs and "
  "summary.json; rerunning with the same directory resumes.",
)
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries(pylogging.Filter):
  """Drops INFO chatter of orbax (dozens of lines per checkpoint) and its reports of a
  full disk (each of its threads logs a traceback; the run ends in one line that says
  what to do); keeps its other warnings and errors."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    if "/orbax/" not in record.pathname:
      return True
    if record.exc_info and record.exc_info[1] is not None:
      from last_nnx.train import workdir

      if workdir.disk_error(record.exc_info[1]) is not None:
        return False
    return record.levelno >= pylogging.WARNING


def quiet_library_logs() -> None:
  logging.get_absl_handler().addFilter(_QuietLibraries())


def _main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  from last_nnx.train import distributed, preemption, workdir

  quiet_library_logs()
  # A full disk fails every write of the log file too: one line at the end, not a
  # "--- Logging error ---" traceback per log line.
  pylogging.raiseExceptions = False
  lock = None
  try:
    distributed.initialize(FLAGS.config.train)  # before anything touches the devices
    lock = workdir.hold_for_run(FLAGS.workdir)  # one run per workdir, all its processes
    preemption.install()  # SIGTERM/SIGINT/SIGUSR1: a checkpoint, then errors.EXIT_STOPPED
    from last_nnx.train import console
    from last_nnx.train.loop import train_and_evaluate  # after the lock: a quick refusal

    log_file = console.route_logs(FLAGS.workdir, FLAGS.config.train.get("console", "story"))
    logging.info(
      "full log (per-step scalars, histograms, hyperparameters): %s; "
      "TensorBoard: tensorboard --logdir %s",
      log_file,
      FLAGS.workdir,
    )
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except Exception as e:  # those a user can act on end in one line; a bug keeps its traceback
    if distributed.lost_peer(e):
      _exit_now(
        f"{str(e).splitlines()[0]} -- another process of this run has stopped: rerun "
        "all of them with the same commands; they resume from the last committed "
        "checkpoint",
        lock=lock,
      )
    ending = errors.run_ending(e, FLAGS.workdir, FLAGS.config)
    if ending is None:
      raise
    code, line = ending
    if code == errors.EXIT_NO_SPACE:  # the writers' and orbax's threads would fail again
      _exit_now(line, code, lock=lock)
    _end(line, code, lock, prefix="" if code == errors.EXIT_STOPPED else "error: ")
  finally:
    if lock is not None:
      lock.release()


def _end(message: str, code: int, lock, prefix: str = "error: ") -> None:
  """Ends the program with ``message`` as its last line and exit status ``code``."""
  (logging.warning if code == errors.EXIT_STOPPED else logging.error)("%s", message)
  if lock is not None:
    lock.release()
  logging.flush()
  sys.stderr.write(f"{prefix}{message}\n")
  sys.exit(code)


def _exit_now(message: str, code: int = errors.EXIT_FAILED, lock=None) -> None:
  """Ends the process at once with one error line: a normal exit would wait (minutes, then
  abort with a traceback) for the distributed service's barriers of a process that is gone,
  and for the checkpoint that was in flight, which the rerun discards."""
  logging.error("%s", message)
  if lock is not None:
    lock.release()
  logging.flush()
  sys.stdout.flush()
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  os._exit(code)


def run():
  sys.path.insert(0, os.getcwd())  # config files import experiments.configs.base
  sys.argv = configs.locate_in_argv(sys.argv)  # elsewhere: the configs the package ships
  app.run(_main, flags_parser=errors.flags_parser(errors.check_config_argv))


if __name__ == "__main__":
  run()
