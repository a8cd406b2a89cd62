"""Packaging beyond what pyproject.toml can say: the task configs ship in the wheel.

They stay at experiments/configs/ in the repository and install as the package
``last_nnx.configs`` (last_nnx/cli/configs.py finds them outside the repository).
"""

from setuptools import find_packages, setup

setup(
  packages=[*find_packages(include=["last_nnx", "last_nnx.*"]), "last_nnx.configs"],
  package_dir={"last_nnx.configs": "experiments/configs"},
)
