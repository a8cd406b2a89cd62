"""The pydocs LM sweep for docs/results.md: bits per byte vs ratio per method, allocations, max-drop."""

import json
import math
import sys
import time

sys.path.insert(0, "/tmp/lmprune")
import textdata

from last_nnx.lm import evaluate, hub
from last_nnx.lm.prune import calibration_windows
from last_nnx.sweeps import lm as lm_sweep

out = "/tmp/lmprune/sweep"
import os

os.makedirs(out, exist_ok=True)
t0 = time.time()
rows, per_token = textdata.splits(128)
model = hub.load_pretrained("/tmp/lmprune/pydocs-lm")
calib = calibration_windows(rows["train"], 128, 128)
val = rows["val"][:256]
methods = (
  "calibrated/global",
  "calibrated/global/seq",
  "calibrated/uniform",
  "calibrated/uniform/seq",
  "gramian/global",
  "magnitude/global",
  "random/global",
)
points = lm_sweep.curves(
  model,
  calib,
  val,
  ratios=(0.1, 0.3, 0.5, 0.7, 0.9),
  methods=methods,
  seeds=3,
  bytes_per_token=per_token["val"],
  log=lambda r: print(
    r["method"],
    r["ratio"],
    r["seed"],
    round(r["bits_per_byte"], 4),
    r["per_layer"],
    f"{time.time() - t0:.0f}s",
    flush=True,
  ),
)
json.dump(
  {
    "points": points,
    "wall_s": time.time() - t0,
    "calibration": list(calib.shape),
    "val": list(val.shape),
  },
  open(f"{out}/points.json", "w"),
  indent=1,
)
print(lm_sweep.table(points, "bits_per_byte", "{:.4f}"))
print(lm_sweep.allocation_table(points))
lm_sweep.plot(
  points,
  f"{out}/bits_per_byte.png",
  key="bits_per_byte",
  title="pydocs byte LM (4 layers, N 32): one-shot state pruning, val bits per byte",
)
# test split at 50 / 70 for the main methods
test = {}
for m in (
  "calibrated/global",
  "calibrated/global/seq",
  "calibrated/uniform",
  "calibrated/uniform/seq",
  "gramian/global",
  "magnitude/global",
  "random/global",
):
  for r in (0.5, 0.7):
    p, rep = lm_sweep.prune_point(model, m, r, calib)
    e = evaluate(p, rows["test"][:400], 16)
    test[f"{m}@{r}"] = e["loss"] / math.log(2) / per_token["test"]
    print("test", m, r, round(test[f"{m}@{r}"], 4), flush=True)
test["dense"] = evaluate(model, rows["test"][:400], 16)["loss"] / math.log(2) / per_token["test"]
md = {}
for m in ("calibrated/global/seq", "calibrated/uniform/seq"):
  for tol in (5.0,):
    f = lm_sweep.max_drop(model, m, calib, val, tol)
    md[f"{m}@{tol}"] = f
    print("max_drop", m, tol, f["ratio"], f["perplexity"], f["dense"], f["per_layer"], flush=True)
json.dump(
  {"test_bpb": test, "max_drop": md, "wall_s": time.time() - t0},
  open(f"{out}/extra.json", "w"),
  indent=1,
)
print("wall", time.time() - t0)
# decode speed of the compacted pydocs LM at 50 / 70% (its real allocations) vs dense
from last_nnx.bench import lm_pruned as bench

speed = {}
variants = {"dense": model}
for m in ("calibrated/global", "calibrated/uniform"):
  for r in (0.5, 0.7):
    p, rep = lm_sweep.prune_point(model, m, r, calib, mode="compact")
    variants[f"{m}@{r}"] = p
for b in (1, 16, 64):
  times = bench._best({k: bench._decoder(v, b, 32) for k, v in variants.items()}, 2)
  for k, t in times.items():
    speed.setdefault(
      k, {"state_sizes": list(variants[k].state_sizes()), "state_bytes": variants[k].state_bytes(1)}
    )[str(b)] = b * 32 / t
    print("decode", k, b, round(b * 32 / t, 1), flush=True)
json.dump(
  {
    "test_bpb": test,
    "max_drop": md,
    "decode": speed,
    "wall_s": time.time() - t0,
    "loadavg": os.getloadavg(),
  },
  open(f"{out}/extra.json", "w"),
  indent=1,
)
print("wall", time.time() - t0, os.getloadavg())
