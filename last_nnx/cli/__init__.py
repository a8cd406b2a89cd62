"""The command-line programs, above the library (nothing below imports from here).

Installed, they are one command, ``last-nnx PROGRAM`` (`main`); ``python -m MODULE``
runs each one too:

  last-nnx train       last_nnx.train (cli/train.py)   --config experiments/configs/TASK.py:MODEL
  last-nnx prune       last_nnx.cli.prune              --workdir DIR --ratio 0.3 (or --max_drop)
  last-nnx sweep       last_nnx.cli.sweep              --workdir DIR [--iterative]
  last-nnx export      last_nnx.export (cli/export.py) --workdir DIR --out OUT
  last-nnx bench       last_nnx.bench                  --out bench
  last-nnx plot-watch  last_nnx.cli.plot_watch         --workdir DIR
  last-nnx check-data  last_nnx.cli.check_data         --task pathx --dir D
  last-nnx throughput  last_nnx.cli.throughput         --task pathx
  last-nnx help        last_nnx.cli.usage              (`make help`)

`errors` turns command-line mistakes into one line before anything heavy is imported;
`usage` reads tasks, models and presets from experiments/configs/ (standard library only);
`configs` finds the configs the package ships when run outside the repository.
"""
