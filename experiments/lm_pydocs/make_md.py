import json
import os
import sys

sys.path.insert(0, "/work/wt-lmprune")
from last_nnx.sweeps import lm as lm_sweep

out = []
P = json.load(open("/tmp/lmprune/sweep/points.json"))
pts = P["points"]
out.append(
  f"Sweep wall time {P['wall_s'] / 60:.1f} min; calibration {P['calibration']}, val windows {P['val']}.\n"
)
out.append(lm_sweep.table(pts, "bits_per_byte", "{:.3f}"))
out.append("")
out.append(lm_sweep.table(pts, "perplexity", "{:.2f}"))
out.append("")
out.append(lm_sweep.allocation_table(pts))
if os.path.exists("/tmp/lmprune/sweep/extra.json"):
  E = json.load(open("/tmp/lmprune/sweep/extra.json"))
  out.append("\nTest bits per byte: " + ", ".join(f"{k} {v:.3f}" for k, v in E["test_bpb"].items()))
  for k, f in E.get("max_drop", {}).items():
    out.append(
      f"- max_drop {k}%: ratio {f['ratio']:.3f}, val ppl {f['perplexity']:.3f} (dense {f['dense']:.3f}, limit {f['limit']:.3f}), per layer {f['per_layer']}"
    )
  if "decode" in E:
    out.append(
      "\n| model | N per layer | state bytes/stream | B=1 tok/s | B=16 | B=64 |\n|---|---|---|---|---|---|"
    )
    d = E["decode"]["dense"]
    for k, v in E["decode"].items():
      out.append(
        f"| {k} | {v['state_sizes']} | {v['state_bytes']} | "
        + " | ".join(f"{v[b]:.0f} ({v[b] / d[b]:.2f}x)" for b in ("1", "16", "64"))
        + " |"
      )
  out.append(f"extra wall {E['wall_s'] / 60:.1f} min, load {E.get('loadavg')}")
print("\n".join(out))
