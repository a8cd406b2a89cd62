"""One-line errors for command-line mistakes, found before any heavy import.

The programs (``last_nnx.train``, ``.prune``, ``.sweep``, ``.bench``) hand
`flags_parser` to ``absl.app.run``. It checks the command line first (for the
training program, `check_config_argv`: the config file, the preset words after
its colon, every ``--config.FIELD`` override and its value type), then parses
the flags, and turns any mistake into one line on stderr, ``error: ...``, with
exit status 2: no traceback, and the choices named. Config files load in a
fraction of a second (no JAX), so a mistake costs no compilation or data.

`run_ending` words how a training run ends when it cannot go on (stopped on a
signal, a workdir held or full, a step too big for the memory) and gives each its
exit code (`EXIT_STOPPED`, `EXIT_WORKDIR_BUSY`, `EXIT_NO_SPACE`, `EXIT_FAILED`).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from last_nnx.cli import usage

# Exit codes of the training program, for scripts that requeue or rerun it.
EXIT_FAILED = 1  # an error line: fix what it says before rerunning
EXIT_USAGE = 2  # a command-line mistake
EXIT_WORKDIR_BUSY = 73  # another run holds the workdir (sysexits' EX_CANTCREAT)
EXIT_NO_SPACE = 74  # the workdir cannot be written: free space, rerun (EX_IOERR)
EXIT_STOPPED = 75  # stopped on a signal after a checkpoint: rerun (EX_TEMPFAIL, "try again")
HELP_FLAGS = (
  "-h",
  "-?",
  "--help",
  "-help",
  "--helpshort",
  "-helpshort",
  "--helpfull",
  "-helpfull",
  "--helpxml",
  "-helpxml",
)


class CommandLineError(ValueError):
  """A mistake on the command line; its message is one line that says what to do."""


def fail(message: str) -> NoReturn:
  """Prints ``error: message`` (one line) to stderr and exits with status 2."""
  print(f"error: {one_line(message)}", file=sys.stderr)
  sys.exit(EXIT_USAGE)


def one_line(message: str) -> str:
  """The gist of a possibly multi-line message (e.g. one wrapping a traceback)."""
  lines = [l.strip() for l in str(message).splitlines() if l.strip()]
  if not lines:
    return "invalid command line"
  if any(l.startswith("Traceback") for l in lines):
    return lines[-1]
  return " ".join(lines)


def did_you_mean(word: str, choices: Iterable[str], n: int = 1) -> str:
  """``'; did you mean X?'`` for the nearest choices (difflib), or ``''``."""
  close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
  return f"; did you mean {' or '.join(close)}?" if close else ""


def check_choices(flag: str, values: Iterable[str], choices: Sequence[str]) -> None:
  """Each of ``values`` (of ``--flag``) must be one of ``choices``."""
  for v in values:
    if v not in choices:
      raise CommandLineError(
        f"unknown {v!r} in --{flag}: choose from {', '.join(choices)}{did_you_mean(v, choices)}"
      )


def parse_numbers(
  flag: str,
  values: Iterable[str],
  kind: type = float,
  *,
  low: float | None = None,
  high: float | None = None,
  high_open: bool = False,
) -> list:
  """``--flag`` values as ``kind`` within ``[low, high]`` (``[low, high)`` with
  ``high_open``; a bound of None is no bound), or a `CommandLineError` naming the
  bad one."""
  out = []
  for v in values:
    try:
      x = kind(v)
    except (TypeError, ValueError):
      raise CommandLineError(
        f"--{flag}: {v!r} is not {'an integer' if kind is int else 'a number'}"
      ) from None
    too_high = high is not None and (x >= high if high_open else x > high)
    if high is None and low is not None and x < low:
      raise CommandLineError(f"--{flag}: {v} must be at least {low:g}")
    if (low is not None and x < low) or too_high:
      lo = "-inf" if low is None else f"{low:g}"
      raise CommandLineError(f"--{flag}: {v} is not in [{lo}, {high:g}{')' if high_open else ']'}")
    out.append(x)
  return out


# ----------------------------------------------------------------------------
# The training program's --config FILE[:ARG] and --config.FIELD=VALUE.


def _flag_value(argv: Sequence[str], name: str) -> str | None:
  """The value of ``--name=V`` / ``--name V`` (last one wins), or None."""
  value = None
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    m = re.match(rf"^--?{re.escape(name)}(=(.*))?$", arg)
    if m:
      value = m.group(2) if m.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
  return value


def config_overrides(argv: Sequence[str], name: str = "config") -> list[tuple[str, str | None]]:
  """``[(field path, value or None)]`` of the ``--name.FIELD[=VALUE]`` arguments;
  ``--noname.FIELD`` gives ``'false'``; the value of ``--name.FIELD VALUE``
  (space-separated) is read by `check_config_argv`, which knows the type."""
  out = []
  for arg in argv:
    if arg == "--":
      break
    m = re.match(rf"^--?(no)?{re.escape(name)}\.([^=]+)(=(.*))?$", arg)
    if m:
      value = "false" if m.group(1) else (m.group(4) if m.group(3) else None)
      out.append((m.group(2), value))
  return out


def _task_hint(root: str = ".") -> str:
  tasks = usage.available_tasks(root)
  return f"the tasks are {', '.join(tasks)}" if tasks else "no task configs found"


def check_config_file(path: str) -> None:
  """The config file must exist; a missing task config names the tasks."""
  if not path:
    raise CommandLineError(
      "--config is empty: give a config file, e.g. --config experiments/configs/listops.py:s5,smoke"
    )
  if os.path.isfile(path):
    return
  in_tasks = os.path.abspath(os.path.dirname(path)) == os.path.abspath(usage.config_dir())
  if in_tasks:
    task = os.path.splitext(os.path.basename(path))[0]
    tasks = usage.available_tasks()
    raise CommandLineError(
      f"no task {task!r} (no file {path}): {_task_hint()}"
      f"{did_you_mean(task, tasks)} (make train TASK=NAME)"
    )
  raise CommandLineError(
    f"config file {path} does not exist; the task configs are "
    f"{usage.CONFIG_DIR}/TASK.py where TASK is one of "
    f"{', '.join(usage.available_tasks())}"
  )


def load_config(spec: str):
  """``get_config(ARG)`` of ``FILE[:ARG]``, as ml_collections' config flag calls it.

  Raises:
    CommandLineError: no such file, no ``get_config``, or a ValueError of the
      config file (an unknown preset or model type: its message names them).
  """
  path, *arg = spec.split(":", 1)
  check_config_file(path)
  module_spec = importlib.util.spec_from_file_location("_checked_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise CommandLineError(f"{path} has no get_config(arg): not a config file")
  try:
    return module.get_config(*arg)
  except ValueError as e:
    raise CommandLineError(f"--config {spec}: {one_line(e)}") from None


def field_paths(config, prefix: str = "") -> list[str]:
  """Every dotted field path of a ConfigDict, sections included."""
  out = []
  for key, value in config.items():
    path = prefix + key
    out.append(path)
    if hasattr(value, "items") and hasattr(value, "lock"):
      out += field_paths(value, path + ".")
  return out


def _get(config, path: str):
  node = config
  for key in path.split("."):
    if not hasattr(node, "items") or key not in node:
      raise KeyError(path)
    node = node[key]
  return node


def _check_field(config, path: str) -> None:
  """The field must exist; else the nearest names: among its siblings when its
  section exists (or the section's fields), else among every field path."""
  try:
    _get(config, path)
    return
  except KeyError:
    pass
  parent, _, key = path.rpartition(".")
  try:
    section = _get(config, parent) if parent else config
  except KeyError:  # no such section: the nearest full paths
    hint = did_you_mean(path, field_paths(config)) or (
      f"; the config has {', '.join(config.keys())}"
    )
  else:
    if not hasattr(section, "keys"):
      raise CommandLineError(
        f"unknown field {path}: {parent} is a value, not a section (--config.{parent}=VALUE)"
      )
    fields = list(section.keys())
    hint = did_you_mean(key, fields).replace("mean ", "mean " + (parent + "." if parent else ""))
    hint = hint or f"; {parent or 'the config'} has {', '.join(fields)}"
  raise CommandLineError(f"unknown field {path}{hint}")


def _check_value(config, path: str, value: str | None) -> None:
  """The override must parse as the field's type (bool, int, float)."""
  from absl import flags

  current = _get(config, path)
  if isinstance(current, bool):
    parser, what = flags.BooleanParser(), "true or false"
  elif isinstance(current, int):
    parser, what = flags.IntegerParser(), "an integer"
  elif isinstance(current, float):
    parser, what = flags.FloatParser(), "a number"
  else:
    return
  if value is None and not isinstance(current, bool):
    raise CommandLineError(
      f"--config.{path} needs a value ({what}), e.g. --config.{path}={current!r}"
    )
  if value is None:
    return
  try:
    parser.parse(value)
  except (TypeError, ValueError):
    raise CommandLineError(
      f"bad value {value!r} for {path}: expected {what}, like its current value {current!r}"
    ) from None


def check_override(config, path: str, value: str | None) -> None:
  """``--config.PATH=VALUE`` must name a field of ``config`` and parse as its type."""
  _check_field(config, path)
  _check_value(config, path, value)


def check_config_argv(argv: Sequence[str], name: str = "config") -> None:
  """Checks ``--NAME FILE[:ARG]`` and each ``--NAME.FIELD=VALUE`` of ``argv``.

  Raises:
    CommandLineError: a one-line message naming the choices.
  """
  spec = _flag_value(argv, name)
  if spec is None:
    raise CommandLineError(
      f"--{name} is required, e.g. --{name} "
      f"experiments/configs/listops.py:s5,smoke ({_task_hint()})"
    )
  config = load_config(spec)
  args = list(argv)
  for path, value in config_overrides(argv, name):
    _check_field(config, path)  # before reading the type of a space-separated value
    if value is None and not isinstance(_get(config, path), bool):
      flag = f"--{name}.{path}"  # space-separated: the next argument is the value
      i = args.index(flag) if flag in args else args.index("-" + flag[2:])
      value = args[i + 1] if i + 1 < len(args) else None
    check_override(config, path, value)


# ----------------------------------------------------------------------------
# The hook into absl.app.run.


def asks_for_help(argv: Sequence[str]) -> bool:
  return any(a in HELP_FLAGS for a in argv)


def flags_parser(
  check: Callable[[Sequence[str]], None] | None = None, validate: Callable[[], None] | None = None
):
  """A ``flags_parser`` for ``absl.app.run(main, flags_parser=...)``.

  Runs ``check(argv)`` on the raw arguments (unless help is asked for), parses
  the flags, then runs ``validate()`` (which reads the parsed ``FLAGS``). A
  `CommandLineError` of either, or any absl flag error (unknown flag, bad
  value, missing required flag), exits with one line (`fail`).

  Returns:
    The arguments left after the flags, as absl's default parser does.
  """

  def parse(argv):
    from absl import flags

    try:
      if check is not None and not asks_for_help(argv):
        check(argv)
      rest = flags.FLAGS(argv)
      if validate is not None:
        validate()
      return rest
    except (CommandLineError, flags.Error) as e:
      fail(str(e))

  return parse


# ----------------------------------------------------------------------------
# How a run ends when it cannot go on: exit code and one line.


def run_ending(error: BaseException, workdir: str, config) -> tuple[int, str] | None:
  """``(exit code, one line)`` for an error that ends a training run, or None for one
  that is a bug (its traceback is the report).

  Stopped on a signal (`EXIT_STOPPED`), a workdir held by another run
  (`EXIT_WORKDIR_BUSY`) or that cannot be written (`EXIT_NO_SPACE`), a step that
  does not fit in memory, or any error the library words for the user (a
  ValueError, a missing file, a divergence with no retries left): `EXIT_FAILED`.
  """
  from last_nnx.train import memory, preemption, steps
  from last_nnx.train import workdir as workdir_lib

  if isinstance(error, preemption.Stopped):
    return EXIT_STOPPED, str(error)
  if isinstance(error, workdir_lib.WorkdirBusy):
    return EXIT_WORKDIR_BUSY, str(error)
  disk = workdir_lib.disk_failure(error, workdir)
  if disk is not None:
    return EXIT_NO_SPACE, disk
  if memory.out_of_memory(error):
    return EXIT_FAILED, memory.out_of_memory_message(error, config)
  if isinstance(error, (ValueError, FileNotFoundError, steps.Diverged)):
    return EXIT_FAILED, one_line(str(error))
  return None
