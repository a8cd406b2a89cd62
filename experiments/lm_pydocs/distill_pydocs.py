"""Recovery of the pruned pydocs LM: distillation on the dense logits vs plain fine-tuning on the text."""

import json
import math
import os
import sys
import time

sys.path.insert(0, "/tmp/lmprune")
import textdata
from flax import nnx

from last_nnx.lm import distill, evaluate, hub
from last_nnx.lm.prune import calibration_windows
from last_nnx.sweeps import lm as lm_sweep

t0 = time.time()
rows, per_token = textdata.splits(128)
dense = hub.load_pretrained("/tmp/lmprune/pydocs-lm")
calib = calibration_windows(rows["train"], 128, 128)
bpb = lambda m, s: evaluate(m, rows[s][:256], 16)["loss"] / math.log(2) / per_token[s]
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ratios = [float(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "0.7").split(",")]
res = {"dense": {"val": bpb(dense, "val"), "test": bpb(dense, "test")}, "steps": steps, "lr": 3e-4}
print(res, flush=True)
for r in ratios:
  for method in ("calibrated/global/seq",):
    pruned, rep = lm_sweep.prune_point(dense, method, r, calib, mode="compact")
    out = {
      "per_layer": rep.per_layer(),
      "pruned": {"val": bpb(pruned, "val"), "test": bpb(pruned, "test")},
    }
    print(r, method, out, f"{time.time() - t0:.0f}s", flush=True)
    for name, teacher in (("distill", dense), ("plain", None)):
      student = nnx.clone(pruned)
      h = distill.finetune(
        student,
        rows["train"],
        teacher=teacher,
        steps=steps,
        lr=3e-4,
        batch_size=16,
        seed=1,
        log_every=50,
      )
      out[name] = {"val": bpb(student, "val"), "test": bpb(student, "test"), "history": h}
      print(r, method, name, out[name], f"{time.time() - t0:.0f}s", flush=True)
    res[f"{method}@{r}"] = out
res["wall_s"] = time.time() - t0
res["loadavg"] = os.getloadavg()
json.dump(res, open("/tmp/lmprune/distill.json", "w"), indent=1)
print("wall", res["wall_s"], res["loadavg"])
