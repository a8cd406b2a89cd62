"""A folder filled once per test session, shared by all xdist workers."""

import fcntl
import os
import pathlib
from collections.abc import Callable


def session_folder(tmp_path_factory, name: str) -> pathlib.Path:
  """The folder ``name`` that every worker of this test session sees (created)."""
  shared = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    shared = shared.parent  # the folder all workers' temporary folders share
  root = shared / name
  os.makedirs(root, exist_ok=True)
  return root


def once_per_session(
  tmp_path_factory, name: str, fill: Callable[[pathlib.Path], None]
) -> pathlib.Path:
  """`session_folder` ``name``, after ``fill(folder)`` has run once in it: the
  first worker to ask runs it, the others wait for it (a file lock)."""
  root = session_folder(tmp_path_factory, name)
  with open(root / "lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
    if not (root / "done").exists():
      fill(root)
      (root / "done").touch()
  return root
