import json
import os
import sys
import time

sys.path.insert(0, "/tmp/lmprune")
import textdata

from last_nnx.lm import hub
from last_nnx.lm.prune import calibration_windows
from last_nnx.sweeps import lm as lm_sweep

name, methods = sys.argv[1], sys.argv[2].split(",")
t0 = time.time()
rows, per_token = textdata.splits(128)
model = hub.load_pretrained("/tmp/lmprune/pydocs-lm")
calib = calibration_windows(rows["train"], 128, 128)
val = rows["val"][:256]
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
  {"points": points, "wall_s": time.time() - t0},
  open(f"/tmp/lmprune/points_{name}.json", "w"),
  indent=1,
)
print("wall", time.time() - t0, os.getloadavg())
