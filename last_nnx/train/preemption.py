"""Stopping a run well: a signal asks for a checkpoint at the next step boundary.

SIGTERM (a scheduler preempting the job, ``kill``), SIGINT (Ctrl-C) and SIGUSR1
(SLURM's ``--signal=B:USR1@120``) only set a flag (`StopRequest`); the loop asks
`StopRequest.due` at its step boundaries, saves a checkpoint there, and raises
`Stopped`, whose message is the one line the program ends with (the step, the
checkpoint, "rerun the same command to resume"). A second signal while that
checkpoint is written is noted and ignored, so the checkpoint completes; a third
restores the default action and ends the process at once (the last committed
checkpoint stays usable: orbax commits a step by renaming it into place).

Several processes must stop at the same step, or the others would wait forever in
the next step's collectives. As JAX's and orbax's preemption sync points do, they
agree on it: every ``every`` steps (the loop's logging steps, where the host waits
for the device anyway) and at epoch ends, each process contributes the signal it
received (0: none) to one small all-gather, and all stop if any got one. A lone
process needs no agreement and stops after the very next step.

The programs install the handlers (`install`, in the main thread) for their
lifetime; the loop reads `active()` (a request that never comes when none is
installed, e.g. a test calling the loop directly).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from absl import logging

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class Stopped(Exception):
  """The run stopped on a signal after committing a checkpoint (message: one line)."""

  def __init__(self, signum: int, step: int, checkpoint: str, own: bool = True):
    self.signum, self.step, self.checkpoint = signum, step, checkpoint
    by = (
      signal.Signals(signum).name
      if own
      else (f"{signal.Signals(signum).name} to another process of the run")
    )
    super().__init__(
      f"stopped by {by} at step {step}: checkpoint {checkpoint} is committed; "
      "rerun the same command to resume"
    )


class StopRequest:
  """What the signal handlers recorded, and the agreement on when to act on it."""

  def __init__(self):
    self.signum = 0  # the first signal received (0: none)
    self.count = 0  # signals received so far
    self._previous: dict[signal.Signals, Any] = {}

  def install(self) -> StopRequest:
    """Handles `SIGNALS` from now on (the main thread only: Python's rule for handlers)."""
    if threading.current_thread() is not threading.main_thread():
      return self
    for s in SIGNALS:
      self._previous[s] = signal.signal(s, self._handle)
    return self

  def uninstall(self) -> None:
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _handle(self, signum, frame) -> None:
    self.count += 1
    name = signal.Signals(signum).name
    if self.count == 1:
      self.signum = signum
      logging.warning(
        "%s received: saving a checkpoint at the next step boundary, then "
        "stopping (a third signal stops at once)",
        name,
      )
    elif self.count == 2:
      logging.warning(
        "%s received again: still stopping once the checkpoint is written "
        "(a third signal stops at once, keeping the last committed one)",
        name,
      )
    else:
      self.uninstall()
      signal.signal(signum, signal.SIG_DFL)
      os.kill(os.getpid(), signum)

  def due(self, step: int, every: int, *, boundary: bool = False) -> int:
    """The signal to stop on at this step boundary, or 0 to go on.

    Args:
      step: steps taken so far (the same on every process).
      every: with several processes, agree only when ``step % every == 0``.
      boundary: an epoch end (every process agrees there, whatever the step).

    Returns:
      The signal number (the first process's that received one, in process
      order), or 0.
    """
    import jax

    if jax.process_count() == 1:
      return self.signum
    if not boundary and (every <= 0 or step % every):
      return 0
    import numpy as np
    from jax.experimental import multihost_utils

    received = np.asarray(multihost_utils.process_allgather(np.int32(self.signum)))
    return int(next((s for s in received.ravel() if s), 0))

  def stopped(self, signum: int, step: int, ckpt, *others, writer=None) -> Stopped:
    """The exception to raise once the checkpoint of ``step`` was handed to ``ckpt`` (a
    `Checkpointer`): waits for it, and for the ``others`` (the best model's), to be
    committed (no write may be left in flight at exit) and flushes ``writer``."""
    for c in (ckpt, *others):
      c.wait()
    if writer is not None:
      writer.flush()
    return Stopped(signum, step, f"{ckpt.directory}/{step}", own=self.signum == signum)


class _Never(StopRequest):
  def due(self, step: int, every: int, *, boundary: bool = False) -> int:
    return 0


_ACTIVE: StopRequest | None = None


def install() -> StopRequest:
  """Installs the handlers for the rest of the process (a program calls it once)."""
  global _ACTIVE
  if _ACTIVE is None:
    _ACTIVE = StopRequest().install()
  return _ACTIVE


def uninstall() -> None:
  global _ACTIVE
  if _ACTIVE is not None:
    _ACTIVE.uninstall()
    _ACTIVE = None


def active() -> StopRequest:
  """The installed request, or one that never stops."""
  return _ACTIVE if _ACTIVE is not None else _Never()
