"""``python -m last_nnx.train --config experiments/configs/TASK.py[:OPTS] --workdir DIR``.

The program is `last_nnx.cli.train`; this file only forwards to it (by module name, so
the library package `last_nnx.train` imports nothing from the programs above it).
"""

import runpy

if __name__ == "__main__":
  runpy.run_module("last_nnx.cli.train", run_name="__main__", alter_sys=True)
