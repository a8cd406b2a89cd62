"""``python -m last_nnx.plot_watch``: forwards to the program `last_nnx.cli.plot_watch` (the same flags)."""

import runpy

if __name__ == "__main__":
  runpy.run_module("last_nnx.cli.plot_watch", run_name="__main__", alter_sys=True)
