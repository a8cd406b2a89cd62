"""``make help``: the tasks, model types, presets and the most used arguments.

  python3 -m last_nnx.cli.usage             # print it
  python3 -m last_nnx.cli.usage --readme    # refresh its copy in README.md

Standard library only (no virtual environment needed): the tasks are the config
files in ``experiments/configs/`` (with the first line of each docstring), and
the model types and presets are read from ``experiments/configs/base.py``'s
``MODEL_TYPES`` and ``PRESETS`` without importing it. The examples are checked
against the config and the Makefile by ``tests/test_cli_errors.py``.
"""

from __future__ import annotations

import ast
import os

from last_nnx.cli import configs

CONFIG_DIR = configs.CONFIG_DIR
config_dir = configs.config_dir  # here, or the configs the package ships

NOT_TASKS = ("__init__", "base")

MODEL_HELP = {
  "s5": "S5: MIMO diagonal SSM, states in J blocks (default)",
  "s4d": "S4D: one SISO diagonal SSM per channel, the S4 repository's LRA settings",
  "lru": "LRU: linear recurrent unit, ring-initialized eigenvalues",
  "mamba2": "Mamba-2: selective SSM (chunked SSD scan), causal; pruned with calibrated scores",
}
PRESET_HELP = {
  "smoke": "seconds-long end-to-end run: tiny model, 2 epochs, one pruning event",
  "demo": "minutes-long run: small model, 6 epochs, iterative pruning to 50%",
  "shallow": "ListOps only: shallow synthetic expressions (depth 3, L = 64)",
  "long": "language models only: a dense LM trained 3000 steps, no pruning (then make sweep)",
}
TARGETS = (
  ("train", "train one task (and prune it on the config's schedule) into WORKDIR"),
  ("test", "the fast test suite (test-all: with the slow tests too)"),
  ("lint", "ruff check, ruff format --check and mypy (make format rewrites the tree)"),
  ("sweep", "prune copies of a trained WORKDIR at ratios 0-90% with every criterion"),
  ("bench", "train-step, pruning-event, latency and memory benchmarks into bench/"),
  ("clean", "remove runs/ and bench/results.json"),
  ("help", "this text"),
)
# (make variable, example, what it does). Checked against the Makefile by the tests.
VARIABLES = (
  ("TASK", "make train TASK=pathx", "the task (default listops)"),
  ("MODEL", "make train TASK=listops MODEL=s4d", "the layer type (default s5)"),
  ("PRESET", "make train TASK=image PRESET=smoke", "presets, comma-separated"),
  ("WORKDIR", "make train WORKDIR=runs/mine", "where the run is written; rerun to resume"),
  ("ARGS", 'make sweep WORKDIR=runs/listops-s5 ARGS="--iterative"', "flags of the program"),
  ("PYTEST_ARGS", 'make test PYTEST_ARGS="-k ssm"', "pytest arguments"),
)
# (flag, what it does). Every --config.FIELD must exist in base_config (tests).
TRAIN_ARGS = (
  ("--config.data.dir=/data/lra_release", "real data (default: the synthetic generator)"),
  ("--config.train.epochs=3", "training epochs"),
  ("--config.train.batch_size=16", "global batch size"),
  ("--config.model.n_layers=4", "any model field: d_model, ssm_config.state_size, ..."),
  ("--config.pruning.schedule=none", "a dense model (none | one_shot | iterative)"),
  ("--config.pruning.target_ratio=0.5", "fraction of the states removed, in [0, 1)"),
  ("--config.pruning.criterion=energy", "last (default), energy, uniform, random, ..."),
  ("--config.pruning.finetune_epochs=2", "training epochs after each pruning event"),
  ("--config.regularizer.kind=modal_l1", "train for prunability (with regularizer.weight)"),
)


def available_tasks(root: str = ".") -> list[str]:
  """Names of the task config files, ``experiments/configs/NAME.py``, sorted."""
  d = config_dir(root)
  if not os.path.isdir(d):
    return []
  return sorted(f[:-3] for f in os.listdir(d) if f.endswith(".py") and f[:-3] not in NOT_TASKS)


def _module_ast(path: str) -> ast.Module:
  with open(path) as f:
    return ast.parse(f.read(), filename=path)


def task_summary(task: str, root: str = ".", width: int = 80) -> str:
  """The first paragraph of the task config's docstring, cut to ``width`` characters."""
  doc = ast.get_docstring(_module_ast(os.path.join(config_dir(root), task + ".py"))) or ""
  text = " ".join(doc.strip().split("\n\n")[0].split())
  if len(text) <= width:
    return text
  return text[: width - 3].rsplit(" ", 1)[0].rstrip(",;:") + "..."


def base_choices(root: str = ".") -> dict[str, tuple[str, ...]]:
  """``{'MODEL_TYPES': (...), 'PRESETS': (...)}`` as assigned in ``base.py``."""
  out = {}
  for node in _module_ast(os.path.join(config_dir(root), "base.py")).body:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
      name = getattr(node.targets[0], "id", None)
      if name in ("MODEL_TYPES", "PRESETS"):
        out[name] = tuple(ast.literal_eval(node.value))
  return out


def _rows(pairs, indent: int = 2) -> list[str]:
  width = max(len(a) for a, _ in pairs) + 2
  return [" " * indent + a.ljust(width) + b for a, b in pairs]


def help_text(root: str = ".") -> str:
  """The text of ``make help``."""
  choices = base_choices(root)
  lines = [
    "last-nnx: LAST state pruning of deep SSMs. Every target but help sets up .venv",
    "on first use.",
    "",
    "Targets:",
  ]
  lines += _rows([(f"make {t}", h) for t, h in TARGETS])
  lines += ["", "Tasks (TASK=, default listops; experiments/configs/TASK.py):"]
  lines += _rows([(t, task_summary(t, root)) for t in available_tasks(root)])
  lines += ["", "Model types (MODEL=, default s5):"]
  lines += _rows([(m, MODEL_HELP.get(m, "")) for m in choices.get("MODEL_TYPES", ())])
  lines += ["", "Presets (PRESET=, comma-separated; none: the task's paper settings):"]
  lines += _rows([(p, PRESET_HELP.get(p, "")) for p in choices.get("PRESETS", ())])
  lines += ["  `make train` with neither TASK nor PRESET runs the ListOps demo (PRESET=demo)."]
  lines += ["", "Variables (one example each):"]
  lines += _rows([(ex, h) for _, ex, h in VARIABLES])
  lines += [
    "",
    "Most used ARGS of make train (--config.FIELD=VALUE overrides any field of",
    'experiments/configs/base.py), e.g. make train ARGS="--config.train.epochs=3":',
  ]
  lines += _rows(TRAIN_ARGS)
  lines += [
    "",
    "Other programs (installed as `last-nnx PROGRAM`; `last-nnx --help` lists them):",
    "  python -m last_nnx.cli.prune --workdir runs/listops-s5 --ratio 0.3;",
    "  python -m last_nnx.cli.sweep --helpshort; python -m last_nnx.bench --tasks=listops.",
  ]
  return "\n".join(lines) + "\n"


def update_readme(path: str = "README.md", root: str = ".") -> bool:
  """Replaces the ``make help`` block of the README (a ```text block starting with
  the first line of `help_text`) by the current text; returns whether it changed."""
  with open(path) as f:
    readme = f.read()
  text = help_text(root)
  start = readme.index("```text\n" + text.splitlines()[0]) + len("```text\n")
  end = readme.index("```", start)
  if readme[start:end] == text:
    return False
  with open(path, "w") as f:
    f.write(readme[:start] + text + readme[end:])
  return True


if __name__ == "__main__":
  import sys

  if sys.argv[1:] == ["--readme"]:
    print("README.md updated" if update_readme() else "README.md is up to date")
  else:
    print(help_text(), end="")
