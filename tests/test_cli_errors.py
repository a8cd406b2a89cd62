"""Command-line mistakes end in one line naming the choices, no traceback;
``make help`` stays true to the configs and the Makefile."""

import importlib
import os
import re
import subprocess
import sys

import pytest

from last_nnx.cli import errors as config_errors
from last_nnx.cli import usage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "experiments/configs/listops.py"
TASKS = usage.available_tasks(ROOT)


def _run(module, *args, timeout=120):
  """Runs ``python -m module args`` in the repository root; returns the result."""
  return subprocess.run(
    [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
  )


def _one_line_error(result, status=2) -> str:
  """The single ``error: ...`` line of a failed run (and no traceback)."""
  assert result.returncode == status, (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr + result.stdout
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  errors = [l for l in lines if l.startswith("error: ")]
  assert len(errors) == 1, result.stderr
  # Nothing else but C++ start-up chatter of TF/XLA, if anything.
  assert all(l in errors or re.match(r"^(I0000|WARNING: All log messages)", l) for l in lines), (
    result.stderr
  )
  return errors[0]


def _train(*args):
  return _run("last_nnx.train", "--workdir", "unused-workdir", *args)


# ----------------------------------------------------------------------------
# python -m last_nnx.train (make train)


def test_misspelt_task_lists_the_tasks():
  line = _one_line_error(_train("--config", "experiments/configs/listop.py:s5,smoke"))
  assert "no task 'listop'" in line and "did you mean listops?" in line
  assert all(t in line for t in TASKS)
  assert not os.path.exists(os.path.join(ROOT, "unused-workdir"))


def test_missing_config_file_outside_the_task_configs():
  line = _one_line_error(_train("--config", "no/such/dir/my_task.py:s5"))
  assert "config file no/such/dir/my_task.py does not exist" in line
  assert "experiments/configs/TASK.py" in line and "pathx" in line


def test_missing_config_flag():
  line = _one_line_error(_train())
  assert "--config is required" in line and "listops" in line


def test_unknown_preset_names_presets_and_model_types():
  line = _one_line_error(_train("--config", CONFIG + ":s5,smok"))
  assert "unknown config option(s) ['smok']" in line and "did you mean smoke?" in line
  for word in ("s5", "s4d", "lru", "smoke", "demo", "shallow"):
    assert f"'{word}'" in line


def test_unknown_field_suggests_the_nearest():
  line = _one_line_error(_train("--config", CONFIG + ":s5,smoke", "--config.model.n_layer=3"))
  assert line == "error: unknown field model.n_layer; did you mean model.n_layers?"


def test_unknown_field_without_a_near_name_lists_its_section():
  # S4D layers have no blocks: the fields they do have are listed.
  line = _one_line_error(
    _train("--config", CONFIG + ":s4d,smoke", "--config.model.ssm_config.blocks=2")
  )
  assert line.startswith("error: unknown field model.ssm_config.blocks; model.ssm_config has")
  assert "state_size" in line and "init" in line


@pytest.mark.parametrize(
  "args, message",
  [
    (
      ["--config.model.n_layers=abc"],
      "bad value 'abc' for model.n_layers: expected an integer, like its current value 2",
    ),
    (
      ["--config.model.n_layers", "abc"],  # space-separated value
      "bad value 'abc' for model.n_layers: expected an integer",
    ),
    (["--config.optim.ssm_lr=fast"], "bad value 'fast' for optim.ssm_lr: expected a number"),
    (["--config.model.prenorm=maybe"], "bad value 'maybe' for model.prenorm: expected true or"),
  ],
)
def test_bad_value_type(args, message):
  line = _one_line_error(_train("--config", CONFIG + ":s5,smoke", *args))
  assert message in line


def test_unknown_flag():
  line = _one_line_error(_train("--config", CONFIG + ":smoke", "--wokdir=x"))
  assert "Unknown command line flag 'wokdir'" in line


def test_good_command_line_parses():
  ok = _train(
    "--config",
    CONFIG + ":s4d,smoke",
    "--config.model.n_layers",
    "3",
    "--config.optim.ssm_lr=2e-3",
    "--noconfig.train.eval_test",
    "--config.data.dir=/data/x",
    "--only_check_args",
  )
  assert ok.returncode == 0, ok.stderr


def test_config_errors_come_before_any_jax_import():
  code = (
    "import sys; sys.path.insert(0, '.'); from last_nnx.cli import errors as c\n"
    "try:\n"
    f"  c.check_config_argv(['x', '--config', '{CONFIG}:smoke',\n"
    "                        '--config.model.n_layer=3'])\n"
    "except c.CommandLineError as e:\n"
    "  print(e)\n"
    "print(sorted(m for m in ('jax', 'flax', 'tensorflow') if m in sys.modules))\n"
  )
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
  ).stdout.splitlines()
  assert out == ["unknown field model.n_layer; did you mean model.n_layers?", "[]"]


# ----------------------------------------------------------------------------
# prune, sweep, bench


def test_prune_bad_choice_and_unknown_flag():
  line = _one_line_error(_run("last_nnx.cli.prune", "--workdir", "x", "--mode", "compactt"))
  assert "--mode=compactt" in line and "compact|mask" in line
  line = _one_line_error(_run("last_nnx.cli.prune", "--workdir", "x", "--ration", "0.3"))
  assert "Unknown command line flag 'ration'" in line and "ratio" in line


def test_sweep_bad_ratios():
  line = _one_line_error(_run("last_nnx.cli.sweep", "--workdir", "x", "--ratios", "0.5,1.5"))
  assert line == "error: --ratios: 1.5 is not in [0, 1)"
  line = _one_line_error(_run("last_nnx.cli.sweep", "--workdir", "x", "--ratios", "half"))
  assert line == "error: --ratios: 'half' is not a number"


def test_sweep_missing_workdir(tmp_path):
  line = _one_line_error(_run("last_nnx.cli.sweep", "--workdir", str(tmp_path / "none")))
  assert "no checkpoints/ under" in line and "--workdir of a training run" in line


def test_bench_unknown_task():
  line = _one_line_error(_run("last_nnx.bench", "--out", "unused-bench", "--tasks=listop,text"))
  assert "unknown 'listop' in --tasks" in line and "did you mean listops?" in line
  assert "choose from listops, text, retrieval, image, pathfinder, pathx, speech" in line
  assert not os.path.exists(os.path.join(ROOT, "unused-bench"))


# ----------------------------------------------------------------------------
# The helpers themselves


def test_parse_numbers_and_choices():
  assert config_errors.parse_numbers("n", ["1", "2"], int, low=1) == [1, 2]
  with pytest.raises(config_errors.CommandLineError, match="--n: 0 must be at least 1"):
    config_errors.parse_numbers("n", ["0"], int, low=1)
  with pytest.raises(config_errors.CommandLineError, match="'1.5' is not an integer"):
    config_errors.parse_numbers("n", ["1.5"], int)
  config_errors.check_choices("tasks", ["a"], ["a", "b"])
  with pytest.raises(config_errors.CommandLineError, match="did you mean abc"):
    config_errors.check_choices("tasks", ["abd"], ["abc", "xyz"])


def test_one_line_keeps_the_gist_of_a_traceback():
  text = "Error whilst parsing:\n\nTraceback (most recent call last):\n  File x\nValueError: bad"
  assert config_errors.one_line(text) == "ValueError: bad"
  assert config_errors.one_line("a\n  b") == "a b"


# ----------------------------------------------------------------------------
# make help


def test_make_help_lists_what_exists():
  text = usage.help_text(ROOT)
  sys.path.insert(0, ROOT)
  from experiments.configs import base

  assert {"listops", "pathx", "speech"} <= set(TASKS) and "base" not in TASKS
  for name in TASKS + list(base.MODEL_TYPES + base.PRESETS):
    assert re.search(rf"^  {name} +\S", text, re.M), name  # listed, with a description
  assert set(usage.MODEL_HELP) == set(base.MODEL_TYPES)
  assert set(usage.PRESET_HELP) == set(base.PRESETS)
  for task in TASKS:  # every task listed is a config that loads, with every model type
    # it takes (its MODEL_TYPES, default all); any other is a one-line refusal
    takes = getattr(
      importlib.import_module(f"experiments.configs.{task}"), "MODEL_TYPES", base.MODEL_TYPES
    )
    for model in base.MODEL_TYPES:
      spec = f"{ROOT}/{usage.CONFIG_DIR}/{task}.py:{model},smoke"
      if model in takes:
        assert config_errors.load_config(spec)
        continue
      with pytest.raises(config_errors.CommandLineError, match=f"use {task}.py:{takes[0]}"):
        config_errors.load_config(spec)


def test_make_help_examples_are_real():
  sys.path.insert(0, ROOT)
  from experiments.configs import base

  config = base.base_config("listops")
  for flag, _ in usage.TRAIN_ARGS:
    path, value = flag[len("--config.") :].split("=", 1)
    config_errors.check_override(config, path, value)
  with open(os.path.join(ROOT, "Makefile")) as f:
    makefile = f.read()
  for name, example, _ in usage.VARIABLES:
    assert re.search(rf"^{name} \?=", makefile, re.M), name
    assert f"{name}=" in example
  for target, _ in usage.TARGETS:
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


def test_make_help_runs_and_is_in_the_readme():
  out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert out.returncode == 0, out.stderr
  assert out.stdout == usage.help_text(ROOT)
  with open(os.path.join(ROOT, "README.md")) as f:
    assert out.stdout in f.read(), "stale README.md: run python3 -m last_nnx.cli.usage --readme"


def test_update_readme_refreshes_only_the_help_block(tmp_path):
  first = usage.help_text(ROOT).splitlines()[0]
  readme = tmp_path / "README.md"
  readme.write_text(f"# title\n\n```text\n{first}\nold tasks\n```\n\n## next\n")
  assert usage.update_readme(str(readme), ROOT)
  assert readme.read_text() == f"# title\n\n```text\n{usage.help_text(ROOT)}```\n\n## next\n"
  assert not usage.update_readme(str(readme), ROOT)
