"""``python -m last_nnx.train --config experiments/configs/TASK.py[:OPTS] --workdir DIR``."""

from last_nnx.cli import run

if __name__ == "__main__":
  run()
