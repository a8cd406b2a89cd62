"""Checks that a layer-adaptively pruned Mamba-2 LM, saved zero-padded, runs exactly in
stock transformers (``Mamba2ForCausalLM.from_pretrained``). Run on purpose, in two venvs:

    PYTHONPATH=$PWD .venv/bin/python scripts/check_padded_stock.py write /tmp/padded
    /work/venv-torch/bin/python scripts/check_padded_stock.py check /tmp/padded

``write`` loads the two-group golden fixture, prunes 60% of its states with the
calibrated criterion (the layers keep different counts), saves it with
``layout='padded'`` in transformers' format, and stores the tokens and the pruned
model's logits; ``check`` loads that directory with transformers and prints the largest
relative difference of its logits (float32 round-off: ~1e-7).
"""

import pathlib
import sys


def write(out: pathlib.Path) -> None:
  import jax.numpy as jnp
  import numpy as np

  from last_nnx import pruning
  from last_nnx.lm import hub

  fixture = pathlib.Path(__file__).parents[1] / "tests" / "fixtures" / "mamba2_golden"
  tokens = np.load(fixture / "golden.npz")["g2_untied/tokens"]
  model = hub.load_pretrained(fixture / "g2_untied_transformers")
  calibration = [(jnp.asarray(tokens), jnp.full((tokens.shape[0],), tokens.shape[1]))]
  pruning.prune(model, 0.6, criterion="calibrated", calibration=calibration)
  hub.save_pretrained(model, out, format="transformers", layout="padded")
  np.savez(
    out / "pruned_logits.npz",
    tokens=tokens,
    logits=np.asarray(model(jnp.asarray(tokens))),
    sizes=np.array(model.state_sizes()),
  )
  print(
    f"wrote {out}: per-layer state sizes {model.state_sizes()}, padded to "
    f"{max(model.state_sizes())}"
  )


def check(out: pathlib.Path) -> None:
  import numpy as np
  import torch
  from transformers import Mamba2ForCausalLM

  ref = np.load(out / "pruned_logits.npz")
  model = Mamba2ForCausalLM.from_pretrained(out).eval()
  with torch.no_grad():
    logits = model(torch.from_numpy(ref["tokens"]).long()).logits.numpy()
  err = np.abs(logits - ref["logits"]).max() / np.abs(ref["logits"]).max()
  print(
    f"stock transformers on {out} (state_size {model.config.state_size}, pruned sizes "
    f"{ref['sizes'].tolist()}): max relative logit difference {err:.2e}"
  )


if __name__ == "__main__":
  {"write": write, "check": check}[sys.argv[1]](pathlib.Path(sys.argv[2]))
