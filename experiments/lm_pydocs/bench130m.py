import json
import os
import time

t = time.time()
from last_nnx.bench import lm_pruned as b

r = b.bench_lm_pruned(
  2,
  batches=(1, 16, 64),
  steps=4,
  prefill_len=2048,
  only=("dense", "uniform 50%", "ragged 50%", "uniform 70%"),
  prefill_only=("dense", "uniform 50%", "uniform 70%"),
)
r["wall_s"] = time.time() - t
r["loadavg"] = os.getloadavg()
json.dump(r, open("/tmp/lmprune/bench130m.json", "w"), indent=1)
print("\n".join(b.markdown(r)))
print("wall", r["wall_s"], "load", r["loadavg"])
