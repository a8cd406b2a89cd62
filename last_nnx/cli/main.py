"""``last-nnx PROGRAM [FLAGS]``: the installed command, one word per program.

  last-nnx train --config experiments/configs/listops.py:s5,smoke --workdir runs/smoke
  last-nnx prune --workdir runs/smoke --ratio 0.3
  last-nnx PROGRAM --help        # the program's flags

Each word runs the module ``python -m`` would (`PROGRAMS`), with the same flags;
outside the repository ``--config experiments/configs/TASK.py`` reads the
configs the package ships (`configs`). Standard library only until a program
is chosen.
"""

from __future__ import annotations

import runpy
import sys

# word -> (module run as __main__, what it does)
PROGRAMS = {
  "train": ("last_nnx.cli.train", "train one task, pruning on the config's schedule"),
  "prune": ("last_nnx.cli.prune", "prune a trained workdir (--ratio or --max_drop)"),
  "sweep": ("last_nnx.cli.sweep", "prune copies of a trained workdir at many ratios"),
  "export": ("last_nnx.cli.export", "write a trained model as files that need no last_nnx"),
  "bench": ("last_nnx.bench", "train-step, pruning, latency and memory benchmarks"),
  "plot-watch": ("last_nnx.cli.plot_watch", "plot a run's watched state energies"),
  "check-data": ("last_nnx.cli.check_data", "check a data folder before a long run"),
  "throughput": ("last_nnx.cli.throughput", "time the input pipeline alone"),
  "help": ("last_nnx.cli.usage", "the tasks, model types, presets and most used flags"),
}


def usage() -> str:
  width = max(map(len, PROGRAMS)) + 2
  rows = [f"  {word.ljust(width)}{what}" for word, (_, what) in PROGRAMS.items()]
  return (
    "\n".join(
      [
        "usage: last-nnx PROGRAM [FLAGS]   (last-nnx PROGRAM --help: its flags)",
        "",
        "programs:",
        *rows,
      ]
    )
    + "\n"
  )


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "--helpshort"):
    sys.stdout.write(usage())
    return
  word = argv[1]
  if word not in PROGRAMS:
    import difflib

    close = difflib.get_close_matches(word, PROGRAMS, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    sys.exit(
      f"error: last-nnx has no program {word!r}{hint} (the programs are {', '.join(PROGRAMS)})"
    )
  sys.argv = [f"last-nnx {word}", *argv[2:]]
  runpy.run_module(PROGRAMS[word][0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
  main()
