"""The wheel: built from the repository, installed into a fresh venv, used from elsewhere.

The venv sees this interpreter's site-packages for the dependencies (a ``.pth``
line, which does not run their ``.pth`` files, so the repository's editable
install stays out of it): nothing is downloaded. The package under test is the
wheel's copy, and the config is the one the wheel ships.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "last_nnx", "experiments/configs")


def _run(cmd, **kwargs) -> subprocess.CompletedProcess:
  done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
  assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
  return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
  """The bin/ folder of a fresh venv holding only the wheel (dependencies: a .pth line)."""
  tmp = tmp_path_factory.mktemp("wheel")
  src = tmp / "src"  # a copy: building writes build/ and *.egg-info next to the sources
  for name in SOURCES:
    if (ROOT / name).is_dir():
      shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      (src / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy(ROOT / name, src / name)
  _run(
    [
      sys.executable,
      "-m",
      "pip",
      "wheel",
      "--quiet",
      "--no-deps",
      "--no-build-isolation",
      "--wheel-dir",
      str(tmp / "dist"),
      str(src),
    ]
  )
  wheel = next((tmp / "dist").glob("last_nnx-*.whl"))
  venv = tmp / "venv"
  _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
  python = venv / "bin" / "python"
  site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
  pathlib.Path(site.stdout.strip(), "_dependencies.pth").write_text(
    sysconfig.get_paths()["purelib"] + "\n"
  )
  _run(
    [
      sys.executable,
      "-m",
      "pip",
      "--python",
      str(python),
      "install",
      "--quiet",
      "--no-deps",
      "--no-index",
      str(wheel),
    ]
  )
  return venv / "bin"


def _env() -> dict:
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  return dict(env, JAX_PLATFORMS="cpu")


@pytest.mark.slow  # a minute of pip, venv and a training run: CI runs it (`pytest -m wheel`)
@pytest.mark.wheel
def test_the_wheel_trains_a_shipped_config_outside_the_repository(installed, tmp_path):
  away = tmp_path / "elsewhere"
  away.mkdir()
  where = _run(
    [
      str(installed / "python"),
      "-c",
      "import last_nnx, last_nnx.configs; "
      "print(last_nnx.__file__); print(last_nnx.configs.__file__)",
    ],
    cwd=away,
    env=_env(),
  ).stdout.split()
  assert all(str(installed.parent) in path for path in where), where
  listing = _run([str(installed / "last-nnx"), "--help"], cwd=away, env=_env()).stdout
  assert "train" in listing and "check-data" in listing
  tasks = _run([str(installed / "last-nnx"), "help"], cwd=away, env=_env()).stdout
  assert "listops" in tasks and "digits" in tasks  # read from the shipped configs
  _run(
    [
      str(installed / "last-nnx"),
      "train",
      "--config",
      "experiments/configs/listops.py:s5,smoke",
      "--workdir",
      "run",
      "--config.train.epochs=1",
      "--config.pruning.schedule=none",
    ],
    cwd=away,
    env=_env(),
  )
  summary = json.loads((away / "run" / "summary.json").read_text())
  assert summary and not (away / "experiments").exists()
