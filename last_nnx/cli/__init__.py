"""The command-line programs, above the library (nothing below imports from here).

  python -m last_nnx.train   --config experiments/configs/TASK.py:MODEL --workdir DIR   # cli/train.py
  python -m last_nnx.prune   --workdir DIR --ratio 0.3       # cli/prune.py (and --max_drop)
  python -m last_nnx.sweep   --workdir DIR [--iterative]     # cli/sweep.py (last_nnx.sweeps)
  python -m last_nnx.export  --workdir DIR --out OUT         # cli/export.py (last_nnx.export)
  python -m last_nnx.plot_watch --workdir DIR                # cli/plot_watch.py
  python -m last_nnx.cli.usage                               # `make help`

``python -m last_nnx.<program>`` forwards to ``python -m last_nnx.cli.<program>``.
`errors` turns command-line mistakes into one line before anything heavy is imported;
`usage` reads tasks, models and presets from experiments/configs/ (standard library only).
"""
