"""One run per workdir: a lock file that names its holder.

``WORKDIR/run.lock`` holds, as JSON, who runs in the workdir (process id, host,
start time, command line), and its holder keeps an exclusive ``flock`` on it.
The kernel drops a ``flock`` when its process ends, however it ends (kill -9
included), so a lock file whose ``flock`` can be taken is stale by definition:
the next start takes it over, says whose it was in one warning line, and goes
on (it resumes from the last committed checkpoint). A live holder makes a second
start refuse in one line (`WorkdirBusy`) before it writes anything.

The lock belongs to the run, not to a process: in a multi-process run process 0
takes it for all, and every process learns the outcome from it (`hold_for_run`),
so the processes of one run share the workdir while a second run's processes all
refuse. Linux's NFS client maps ``flock`` to NFS locks, so hosts sharing the
workdir over NFS see each other's locks; on a file system mounted without
cross-host locks (e.g. Lustre with ``localflock``) only processes on the same
host do.

While it holds the lock, the run is the only writer of the workdir: a
checkpoint some earlier run left half-written (``*.orbax-checkpoint-tmp*``) is
removed then (`remove_partial_checkpoints`), before anything reads the
checkpoints.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
import time

from absl import logging

LOCK_NAME = "run.lock"
PARTIAL_CHECKPOINT = ".orbax-checkpoint-tmp"  # orbax's suffix of a step not yet committed


class WorkdirBusy(RuntimeError):
  """The workdir is held by another live run; the message is one line that says what to do."""


@dataclasses.dataclass
class Holder:
  """Who holds (or held) a workdir's lock."""

  pid: int
  host: str
  since: float  # seconds since the epoch
  command: str = ""

  def describe(self, now: float | None = None) -> str:
    """``'process 4242 on node7, since 2026-12-03 18:02:11 UTC (5 min ago)'``."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since))
    ago = _ago((now or time.time()) - self.since)
    return f"process {self.pid} on {self.host}, since {stamp} ({ago})"


def _ago(seconds: float) -> str:
  seconds = max(0.0, seconds)
  if seconds < 90:
    return f"{seconds:.0f} s ago"
  if seconds < 90 * 60:
    return f"{seconds / 60:.0f} min ago"
  return f"{seconds / 3600:.1f} h ago"


def _read(fd: int) -> Holder | None:
  try:
    raw = os.pread(fd, 1 << 16, 0)
    return Holder(**json.loads(raw)) if raw.strip() else None
  except (ValueError, TypeError, OSError):  # a torn or foreign file: no holder to name
    return None


class WorkdirLock:
  """The lock of one workdir (`acquire`, `release`; a context manager)."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_NAME)
    self._fd: int | None = None

  def acquire(self) -> Holder | None:
    """Takes the lock; returns the stale holder it took over (None if there was none).

    Raises:
      WorkdirBusy: a live process holds it (the message names it and says what to do).
    """
    os.makedirs(self.workdir, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        holder = _read(fd)
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
          raise
        raise WorkdirBusy(busy_message(self.workdir, holder)) from None
      try:  # a holder that released between our open and flock unlinked this file
        same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    stale = _read(fd)
    me = Holder(
      pid=os.getpid(), host=socket.gethostname(), since=time.time(), command=" ".join(sys.argv)
    )
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(dataclasses.asdict(me)).encode(), 0)
    self._fd = fd
    return stale

  def release(self) -> None:
    """Removes the lock file, then drops the ``flock`` (a no-op when not held)."""
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except OSError:  # already gone, or an unwritable workdir: the flock still goes
      pass
    os.close(self._fd)
    self._fd = None

  @property
  def held(self) -> bool:
    return self._fd is not None

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def busy_message(workdir: str, holder: Holder | None) -> str:
  """The one line of a refused start (the holder's command stays in the lock file)."""
  who = holder.describe() if holder else "another process (its lock file names no holder)"
  pid = holder.pid if holder else "PID"
  where = f" on {holder.host}" if holder and holder.host != socket.gethostname() else ""
  return (
    f"{workdir} is in use by {who}: wait for it to end, stop it (kill {pid}{where}: it "
    "saves a checkpoint and exits; rerun to resume), or give another --workdir"
  )


def stale_message(workdir: str, holder: Holder | None) -> str:
  who = holder.describe() if holder else "a process that left no name"
  return (
    f"taking over {os.path.join(workdir, LOCK_NAME)} from {who}, which ended without "
    "releasing it (killed?); resuming from its last committed checkpoint"
  )


def remove_partial_checkpoints(workdir: str) -> list[str]:
  """Deletes every half-written orbax step (``*.orbax-checkpoint-tmp*``) under ``workdir``;
  returns their paths. Only the lock's holder may call it: nobody else is writing."""
  removed = []
  for root, dirs, _ in os.walk(workdir):
    for d in [d for d in dirs if PARTIAL_CHECKPOINT in d]:
      shutil.rmtree(os.path.join(root, d), ignore_errors=True)
      removed.append(os.path.join(root, d))
      dirs.remove(d)
  return removed


def hold_for_run(workdir: str) -> WorkdirLock:
  """Takes ``workdir``'s lock for the whole run: process 0 takes it (taking over a stale
  one with a warning, and removing partial checkpoints), every process learns whether it
  could; call it on every process at the same point, after ``jax.distributed`` is up.

  Returns:
    The lock (held on process 0 only); `WorkdirLock.release` it when the run ends.

  Raises:
    WorkdirBusy: on every process, when another run holds the workdir.
  """
  import jax

  lock, refusal = WorkdirLock(workdir), ""
  if jax.process_index() == 0:
    try:
      stale = lock.acquire()
    except WorkdirBusy as e:
      refusal = str(e)
    else:
      if stale is not None:
        logging.warning("%s", stale_message(workdir, stale))
      removed = remove_partial_checkpoints(workdir)
      if removed:
        logging.warning(
          "removed %d checkpoint(s) left half-written by an earlier run: %s",
          len(removed),
          ", ".join(removed),
        )
  if jax.process_count() > 1:
    import numpy as np
    from jax.experimental import multihost_utils

    ok = int(multihost_utils.broadcast_one_to_all(np.int32(not refusal)))
    if not ok and not refusal:
      refusal = (
        f"{workdir} is in use by another run (process 0 of this run names it): "
        "wait for it to end, stop it, or give another --workdir"
      )
  if refusal:
    lock.release()
    raise WorkdirBusy(refusal)
  return lock


# ----------------------------------------------------------------------------
# A workdir that cannot be written (full disk, quota, read-only, permissions).

_DISK_ERRNOS = {
  errno.ENOSPC: "no space left on the device",
  errno.EDQUOT: "disk quota exceeded",
  errno.EROFS: "read-only file system",
  errno.EACCES: "permission denied",
  errno.EPERM: "permission denied",
}
# How the same failures read where no OSError carries them (TensorFlow's summary writer
# raises its own ResourceExhaustedError; orbax may re-raise a message).
_DISK_TEXT = {
  "No space left on device": errno.ENOSPC,
  "Disk quota exceeded": errno.EDQUOT,
  "Read-only file system": errno.EROFS,
  "Permission denied": errno.EACCES,
}


def _chain(error: BaseException):
  seen = set()
  e: BaseException | None = error
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def disk_error(error: BaseException) -> tuple[int, str | None] | None:
  """``(errno, path or None)`` of the first disk failure in ``error``'s chain."""
  for e in _chain(error):
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
      return e.errno, e.filename
  for e in _chain(error):
    for text, code in _DISK_TEXT.items():
      if text in str(e):
        m = re.search(r"(/[^\s;:'\"]+)", str(e))
        return code, m.group(1) if m else None
  return None


def _step_of(path: str) -> int:
  m = re.match(r"\d+", os.path.basename(path))
  return int(m.group(0)) if m else -1


def last_committed(workdir: str) -> str | None:
  """The newest committed step directory of ``workdir/checkpoints``, or None."""
  directory = os.path.join(workdir, "checkpoints")
  try:
    steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
  except OSError:
    return None
  return os.path.join(directory, str(max(steps))) if steps else None


def what_was_written(path: str | None, workdir: str) -> str:
  """What a path of the workdir holds, in words."""
  rel = os.path.relpath(path, workdir) if path else ""
  parts = rel.split(os.sep)
  if "checkpoints" in parts or "best" in parts:
    i = parts.index("checkpoints" if "checkpoints" in parts else "best")
    step = re.match(r"\d+", parts[i + 1]) if len(parts) > i + 1 else None
    kind = "checkpoint" if parts[i] == "checkpoints" else "best-model checkpoint"
    return f"the {kind} of step {step.group(0)}" if step else f"a {kind}"
  name = os.path.basename(rel)
  if name.startswith("events.out.tfevents"):
    return "the TensorBoard summaries"
  if name.startswith("log"):
    return "the log file"
  if name == "summary.json":
    return "summary.json"
  if name == LOCK_NAME:
    return "the workdir's lock"
  return "the run's files"


def disk_failure(error: BaseException, workdir: str) -> str | None:
  """The one line a run ends with when ``error`` means it cannot write its workdir (full
  disk, quota, read-only, permissions), else None. Half-written checkpoints are removed
  first (process 0), so the rerun sees only committed ones."""
  found = disk_error(error)
  if found is None:
    return None
  code, path = found
  partial = sorted(
    (
      os.path.join(root, d)
      for root, dirs, _ in os.walk(workdir)
      for d in dirs
      if PARTIAL_CHECKPOINT in d
    ),
    key=_step_of,
  )
  if not path and partial:  # orbax's threads lose the file name: the step being written
    path = partial[-1]
  if not (path and os.path.isabs(path)):
    path = os.path.join(os.path.abspath(workdir), path or "")
  try:
    import jax

    if jax.process_index() == 0:
      remove_partial_checkpoints(workdir)
  except Exception:  # the tidying may fail on the same disk: the message matters more
    pass
  last = last_committed(workdir)
  resume = (
    f"the last committed checkpoint is {last}"
    if last
    else "no checkpoint was committed yet (the rerun starts afresh)"
  )
  fix = (
    "free space"
    if code in (errno.ENOSPC, errno.EDQUOT)
    else f"make {workdir} writable (or give another --workdir)"
  )
  return (
    f"cannot write {path.rstrip(os.sep)} ({what_was_written(path, workdir)}): "
    f"{_DISK_ERRNOS[code]}; {resume}; {fix}, then rerun the same command to resume"
  )
