"""Writes tests/fixtures/mamba2_golden/: golden logits from transformers' own Mamba-2.

Run on purpose, in a throwaway venv with torch and transformers (CI needs neither):

    python3.11 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch==2.13.0 transformers safetensors numpy
    /work/venv-torch/bin/python scripts/make_mamba2_golden.py [--out tests/fixtures/mamba2_golden]

Two tiny random ``Mamba2ForCausalLM`` models (vocab 48, hidden 16, 2 layers, N 8,
2 heads of 16, chunks of 16), every parameter perturbed so that no norm scale is 1:

* ``g1_tied``: one group, tied embeddings, no dt clamp;
* ``g2_untied``: two groups, an untied head, ``time_step_limit = (0.01, 0.06)`` (binding).

Each is written twice: by transformers' own ``save_pretrained`` (transformers' key
layout and config) and renamed to mamba_ssm's layout and config
(``backbone.embedding.weight``, ``d_model``/``n_layer``/``ssm_cfg``; the tied head
listed as ``lm_head.weight`` as mamba_ssm's state dict does). ``golden.npz`` holds, per
model, the tokens ``(2, 40)`` (40 > the chunk of 16), the logits of the CPU
``torch_forward`` path, and an 8-token greedy continuation of the first 12 tokens,
computed with full forwards (no cache): transformers' cached one-token decode does not
apply ``time_step_limit``, its chunked path does.
"""

import argparse
import json
import pathlib
import shutil

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from safetensors.torch import load_file
from transformers import Mamba2Config, Mamba2ForCausalLM

SHAPE = dict(
  vocab_size=48,
  hidden_size=16,
  num_hidden_layers=2,
  state_size=8,
  head_dim=16,
  num_heads=2,
  expand=2,
  conv_kernel=4,
  chunk_size=16,
  layer_norm_epsilon=1e-5,
)
MODELS = {
  "g1_tied": dict(n_groups=1, tie_word_embeddings=True),
  "g2_untied": dict(n_groups=2, tie_word_embeddings=False, time_step_limit=(0.01, 0.06)),
}
SEQ, PROMPT, NEW = 40, 12, 8


def build(seed: int, **options) -> Mamba2ForCausalLM:
  torch.manual_seed(seed)
  model = Mamba2ForCausalLM(Mamba2Config(**SHAPE, **options)).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("A_log"):
        p.copy_(torch.log(torch.rand_like(p) * 7 + 1))  # A in [-8, -1]
      elif name.endswith("dt_bias"):
        p.copy_(torch.rand_like(p) * 3 - 4)  # softplus -> [0.018, 0.31]
      elif p.ndim == 1:
        p.add_(0.3 * torch.randn_like(p))  # norm scales, D, conv bias
      else:
        p.copy_(torch.randn_like(p) * (0.5 / p.shape[-1] ** 0.5 if p.ndim == 2 else 0.4))
  return model


def mamba_ssm_config(config: Mamba2Config) -> dict:
  ssm = {
    "layer": "Mamba2",
    "d_state": config.state_size,
    "d_conv": config.conv_kernel,
    "expand": config.expand,
    "headdim": config.head_dim,
    "ngroups": config.n_groups,
    "chunk_size": config.chunk_size,
  }
  if tuple(config.time_step_limit) != (0.0, float("inf")):
    ssm["dt_limit"] = list(config.time_step_limit)
  return {
    "d_model": config.hidden_size,
    "d_intermediate": 0,
    "n_layer": config.num_hidden_layers,
    "vocab_size": config.vocab_size,
    "ssm_cfg": ssm,
    "attn_layer_idx": [],
    "attn_cfg": {},
    "rms_norm": True,
    "residual_in_fp32": True,
    "fused_add_norm": True,
    "pad_vocab_size_multiple": 16,
    "tie_embeddings": config.tie_word_embeddings,
  }


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", default="tests/fixtures/mamba2_golden")
  out = pathlib.Path(parser.parse_args().out)
  shutil.rmtree(out, ignore_errors=True)
  golden = {}
  for seed, (name, options) in enumerate(MODELS.items()):
    model = build(seed, **options)
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, SHAPE["vocab_size"], (2, SEQ), generator=generator)
    with torch.no_grad():
      logits = model(tokens).logits.float().numpy()
      seq = tokens[:, :PROMPT]
      for _ in range(NEW):
        nxt = model(seq).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    golden[f"{name}/tokens"] = tokens.numpy().astype(np.int32)
    golden[f"{name}/logits"] = logits.astype(np.float32)
    golden[f"{name}/greedy"] = seq[:, PROMPT:].numpy().astype(np.int32)
    hf_dir = out / f"{name}_transformers"
    model.save_pretrained(hf_dir)
    for extra in ("generation_config.json",):
      (hf_dir / extra).unlink(missing_ok=True)
    tensors = {k: v.float().numpy() for k, v in load_file(hf_dir / "model.safetensors").items()}
    ssm_dir = out / f"{name}_mamba_ssm"
    ssm_dir.mkdir(parents=True)
    ssm_tensors = {
      k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in tensors.items()
    }
    if model.config.tie_word_embeddings:
      ssm_tensors["lm_head.weight"] = ssm_tensors["backbone.embedding.weight"].copy()
    save_file(ssm_tensors, ssm_dir / "model.safetensors", metadata={"format": "pt"})
    (ssm_dir / "config.json").write_text(json.dumps(mamba_ssm_config(model.config), indent=2))
    print(name, sorted(tensors)[:3], "...", logits.shape)
  np.savez_compressed(
    out / "golden.npz", **golden, versions=np.array([torch.__version__, transformers.__version__])
  )
  total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
  print(
    f"wrote {out} ({total / 1024:.0f} KB), torch {torch.__version__}, "
    f"transformers {transformers.__version__}"
  )


if __name__ == "__main__":
  main()
