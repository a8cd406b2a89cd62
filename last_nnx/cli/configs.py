"""Where the task configs are: ``experiments/configs/`` here, or the copy the package ships.

In the repository the configs live in ``experiments/configs/`` and import their
defaults as ``experiments.configs.base``. The wheel ships the same files as the
package ``last_nnx.configs`` (setup.py maps it). So that a command written for
the repository works anywhere, `locate` reads ``--config
experiments/configs/TASK.py[:ARG]`` as the shipped file when there is no such
file under the current directory, and `use_shipped` makes
``experiments.configs`` name the shipped package. Standard library only.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

CONFIG_DIR = os.path.join("experiments", "configs")
SHIPPED = "last_nnx.configs"


def shipped_dir() -> str | None:
  """The folder of the shipped configs (None when the package has none)."""
  try:
    spec = importlib.util.find_spec(SHIPPED)
  except ImportError:
    return None
  if spec is None or not spec.submodule_search_locations:
    return None
  return list(spec.submodule_search_locations)[0]


def config_dir(root: str = ".") -> str:
  """``root/experiments/configs`` if it exists, else the shipped configs' folder."""
  here = os.path.join(root, CONFIG_DIR)
  if os.path.isdir(here):
    return here
  return shipped_dir() or here


def use_shipped() -> None:
  """Lets the shipped configs' ``from experiments.configs import base`` find the shipped
  base, when no ``experiments.configs`` package is importable from here."""
  try:
    if importlib.util.find_spec("experiments.configs") is not None:
      return
  except ImportError:
    pass
  package = importlib.import_module(SHIPPED)
  parent = sys.modules.setdefault("experiments", types.ModuleType("experiments"))
  parent.configs = package  # type: ignore[attr-defined]
  sys.modules["experiments.configs"] = package


def locate(spec: str) -> str:
  """``FILE[:ARG]`` with FILE read as the shipped config when it names one that is
  not under the current directory (``experiments/configs/TASK.py`` or ``TASK.py``)."""
  path, sep, arg = spec.partition(":")
  if os.path.isfile(path):
    return spec
  shipped = shipped_dir()
  rel = os.path.normpath(path)
  if shipped is None or os.path.dirname(rel) not in ("", CONFIG_DIR):
    return spec
  candidate = os.path.join(shipped, os.path.basename(rel))
  if not os.path.isfile(candidate):
    return spec
  use_shipped()
  return candidate + sep + arg


def locate_in_argv(argv: list[str], name: str = "config") -> list[str]:
  """``argv`` with the value of ``--NAME`` (``--NAME=V`` or ``--NAME V``) `locate`\\ d."""
  out = list(argv)
  for i, a in enumerate(out):
    for flag in (f"--{name}", f"-{name}"):
      if a.startswith(flag + "="):
        out[i] = flag + "=" + locate(a[len(flag) + 1 :])
      elif a == flag and i + 1 < len(out):
        out[i + 1] = locate(out[i + 1])
  return out
