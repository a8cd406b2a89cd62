"""Train the small byte-level pydocs Mamba-2 LM (the pydocs config's model shape) with lm.distill.finetune's CE loop."""

import math
import sys
import time

sys.path.insert(0, "/tmp/lmprune")
import textdata
from flax import nnx

from last_nnx.lm import Mamba2LM, Mamba2LMConfig, distill, evaluate, hub

t0 = time.time()
rows, per_token = textdata.splits(128)
print({k: v.shape for k, v in rows.items()}, per_token, flush=True)
cfg = Mamba2LMConfig(
  vocab_size=256,
  d_model=128,
  n_layers=4,
  state_size=32,
  head_dim=32,
  expand=2,
  conv_width=4,
  chunk_size=32,
  tie_embeddings=True,
  pad_vocab_size_multiple=8,
)
model = Mamba2LM(cfg, rngs=nnx.Rngs(0))
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1200
done = 0
for lr, n in ((3e-3, int(steps * 0.8)), (1e-3, steps - int(steps * 0.8))):
  h = distill.finetune(
    model, rows["train"], steps=n, lr=lr, batch_size=16, weight_decay=0.1, seed=done, log_every=50
  )
  for s_, l_ in h:
    print("step", done + s_, "loss", round(l_, 4), flush=True)
  done += n
  v = evaluate(model, rows["val"][:256], 32)
  print(
    f"steps {done} lr {lr}: train {h[-1][1]:.4f} val loss {v['loss']:.4f} bpb "
    f"{v['loss'] / math.log(2) / per_token['val']:.4f} ({time.time() - t0:.0f}s)",
    flush=True,
  )
hub.save_pretrained(model, "/tmp/lmprune/pydocs-lm", format="transformers")
v = evaluate(model, rows["val"], 32)
print(
  "final val bpb", v["loss"] / math.log(2) / per_token["val"], "wall", time.time() - t0, flush=True
)
