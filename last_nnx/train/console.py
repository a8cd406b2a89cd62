"""What a run prints, and where the rest goes.

The console tells the story: the data and plan, one line per epoch, each pruning
event's per-layer table, warnings, and the final result table. Everything else
(per-step scalars, histograms and hyperparameters from the CLU writers, the
parameter overview, the watch's per-epoch line, library chatter) goes to
TensorBoard and to the run's full log file, ``WORKDIR/log.txt``
(``log.p<i>.txt`` for process ``i > 0`` of a multi-process run).

Library code marks a line as detail with ``extra=DETAIL`` (or `detail`); the
programs call `route_logs` once they know the workdir.
"""

import logging as pylogging
import os

from absl import logging

DETAIL = {"detail": True}  # logging extra: the log file only, not the console
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../last_nnx
CONSOLE_MODES = ("story", "all")


def detail(msg: str, *args) -> None:
  """``logging.info`` for the log file (and ``--verbosity=1`` / ``train.console='all'``)."""
  logging.info(msg, *args, extra=DETAIL)


class StoryFilter(pylogging.Filter):
  """Passes warnings and errors from anywhere, and INFO lines of last_nnx not marked detail."""

  def filter(self, record: pylogging.LogRecord) -> bool:
    if record.levelno >= pylogging.WARNING:
      return True
    if getattr(record, "detail", False):
      return False
    return record.levelno >= pylogging.INFO and record.pathname.startswith(_PACKAGE)


def log_file_name(process_index: int) -> str:
  return "log.txt" if process_index == 0 else f"log.p{process_index}.txt"


def route_logs(workdir: str, mode: str = "story") -> str:
  """Full log to ``workdir``'s log file; the console (absl's stderr handler) filtered.

  ``mode='all'``, or absl's ``--verbosity`` of 1 or more, leaves the console
  unfiltered. Call it after `distributed.initialize` (the file is named by the
  process index). Returns the log file's path. Calling it again (a second run in
  the same process) moves the file and keeps one filter.
  """
  if mode not in CONSOLE_MODES:
    raise ValueError(f"train.console={mode!r}; expected one of {CONSOLE_MODES}")
  console = logging.get_absl_handler()
  for f in [f for f in console.filters if isinstance(f, StoryFilter)]:
    console.removeFilter(f)
  if mode == "story" and logging.get_verbosity() < logging.DEBUG:
    console.addFilter(StoryFilter())  # first: the backend's start-up chatter is filtered too
  import jax

  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, log_file_name(jax.process_index()))
  root = pylogging.getLogger()
  for handler in [h for h in root.handlers if getattr(h, "last_nnx_log_file", False)]:
    root.removeHandler(handler)
    handler.close()
  file_handler = pylogging.FileHandler(path)
  file_handler.last_nnx_log_file = True
  file_handler.setFormatter(logging.PythonFormatter())
  file_handler.setLevel(pylogging.INFO)
  root.addHandler(file_handler)
  return path
