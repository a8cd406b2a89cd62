"""``python -m last_nnx.sweep``: forwards to the program `last_nnx.cli.sweep` (the same flags)."""

import runpy

if __name__ == "__main__":
  runpy.run_module("last_nnx.cli.sweep", run_name="__main__", alter_sys=True)
