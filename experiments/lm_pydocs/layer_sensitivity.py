"""How much each layer of an LM suffers when only its own states are pruned.

    .venv/bin/python experiments/lm_pydocs/layer_sensitivity.py RUN_DIR [--ratio 0.5]

For every layer, two single-layer cuts are measured on the val windows (mask mode,
calibrated scores from GHOST's 128 x 128 calibration, the layer's strongest states kept):
to the count uniform allocation gives it at ``--ratio``, and to the count LAST's global
allocation gives it. The val bits-per-byte increase of each, and their sums over layers
(set beside the whole-model cut), say whether the layers global allocation cuts hardest
are the ones the loss can spare. Writes ``RUN_DIR/sweep-lm/layer_sensitivity.{json,md}``.
"""

import argparse
import json
import os

from flax import nnx

from last_nnx.lm.prune import as_batches
from last_nnx.pruning import allocate as allocate_lib
from last_nnx.pruning import selective
from last_nnx.pruning.apply import apply_keep
from last_nnx.pruning.criteria import layer_scores
from last_nnx.pruning.layers import prunable_layers
from last_nnx.sweeps import lm as lm_sweep
from last_nnx.sweeps.saved_lm import TextOptions, prepare


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run_dir")
  parser.add_argument("--ratio", type=float, default=0.5)
  args = parser.parse_args()
  model, rows, per_token, calib = prepare(args.run_dir, "latest", TextOptions())
  val = rows["val"]
  batches = as_batches(calib)
  layers = prunable_layers(model)
  stats = selective.statistics(model, batches, len(batches))
  views = {p: selective.layer_view(layer, stats[p]) for p, layer in layers.items()}
  scores = {p: layer_scores(v, "calibrated", rng=None) for p, v in views.items()}
  groups = {p: v.group for p, v in views.items()}
  counts = {
    rule: {
      p: int(m.sum()) for p, m in allocate_lib.allocate(scores, args.ratio, rule, 1, groups).items()
    }
    for rule in ("uniform", "global")
  }

  def bpb(m):
    return lm_sweep.text_metrics(m, val, per_token["val"])["bits_per_byte"]

  dense = bpb(model)
  out = {"run": args.run_dir, "ratio": args.ratio, "dense": dense, "layers": []}
  for path in layers:
    entry = {"layer": path}
    for rule in ("uniform", "global"):
      k = counts[rule][path]
      cut = nnx.clone(model)
      apply_keep(cut, {path: allocate_lib.keep_best(scores[path], k, groups[path])}, mode="mask")
      entry[rule] = {"kept": k, "delta": bpb(cut) - dense}
    out["layers"].append(entry)
  with open(os.path.join(args.run_dir, "sweep-lm", "layer_sensitivity.json"), "w") as f:
    json.dump(out, f, indent=1)
  n = views[next(iter(views))].valid.size
  lines = [
    f"Single-layer cuts of {args.run_dir} at the counts of {100 * args.ratio:.0f}% "
    f"(of {n} states per layer); val bits per byte over dense {dense:.4f}.",
    "",
    "| layer | uniform: kept | uniform: +bpb | global: kept | global: +bpb |",
    "|---|---|---|---|---|",
  ]
  for e in out["layers"]:
    u, g = e["uniform"], e["global"]
    lines.append(
      f"| {e['layer']} | {u['kept']} | {u['delta']:+.4f} | {g['kept']} | {g['delta']:+.4f} |"
    )
  total = {r: sum(e[r]["delta"] for e in out["layers"]) for r in ("uniform", "global")}
  lines.append(f"| sum | | {total['uniform']:+.4f} | | {total['global']:+.4f} |")
  text = "\n".join(lines)
  with open(os.path.join(args.run_dir, "sweep-lm", "layer_sensitivity.md"), "w") as f:
    f.write(text + "\n")
  print(text)


if __name__ == "__main__":
  main()
