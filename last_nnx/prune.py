"""``python -m last_nnx.prune``: forwards to the program `last_nnx.cli.prune` (the same flags)."""

import runpy

if __name__ == "__main__":
  runpy.run_module("last_nnx.cli.prune", run_name="__main__", alter_sys=True)
