import json
import math
import re
import sys

sys.path.insert(0, "/work/wt-lmprune")
from last_nnx.sweeps import lm as lm_sweep

rows = {}
pat = re.compile(r"^(\S+) ([0-9.]+) (\d+) ([0-9.]+) \[([0-9, ]+)\] \d+s$")
for f in ("sweep", "sweep_B", "sweep_C", "sweep_D"):
  for line in open(f"/tmp/lmprune/{f}.log"):
    m = pat.match(line.strip())
    if not m:
      continue
    method, ratio, seed, bpb, layers = m.groups()
    if method == "random/global" and f == "sweep_B":
      continue  # seeds from D
    if method == "calibrated/uniform/seq" and f == "sweep":
      continue
    loss = float(bpb) * math.log(2)
    crit, alloc, seq = (
      ["dense", "-", False]
      if method == "dense"
      else [
        lm_sweep.parse_method(method).criterion,
        lm_sweep.parse_method(method).allocation,
        lm_sweep.parse_method(method).sequential,
      ]
    )
    rows[(method, float(ratio), int(seed))] = dict(
      method=method,
      criterion=crit,
      allocation=alloc,
      sequential=seq,
      seed=int(seed),
      ratio=float(ratio),
      loss=loss,
      perplexity=math.exp(loss),
      bits_per_byte=float(bpb),
      per_layer=[int(x) for x in layers.split(",")],
    )
order = [
  "dense",
  "calibrated/global",
  "calibrated/global/seq",
  "calibrated/uniform",
  "calibrated/uniform/seq",
  "gramian/global",
  "magnitude/global",
  "random/global",
]
pts = sorted(
  rows.values(),
  key=lambda r: (order.index(r["method"]) if r["method"] in order else 99, r["seed"], r["ratio"]),
)
json.dump(
  {
    "points": pts,
    "note": "val[:256] windows of 128 predicted bytes; bits_per_byte printed to 4 decimals, loss/perplexity derived from it",
  },
  open("/tmp/lmprune/points_all.json", "w"),
  indent=1,
)
print(lm_sweep.table(pts, "bits_per_byte", "{:.4f}"))
print()
print(lm_sweep.allocation_table(pts))
lm_sweep.plot(
  pts,
  "/work/wt-lmprune/docs/figures/lm_pydocs_bpb.png",
  key="bits_per_byte",
  title="pydocs byte LM (4 layers, N 32/layer): one-shot state pruning, val bpb",
)
