"""transformers' Mamba2ForCausalLM on CPU torch at the mamba2-130m shape (random weights).

Run on purpose beside ``python -m last_nnx.bench --sections lm`` (same machine, same
load), in the throwaway venv of scripts/make_mamba2_golden.py:

    /work/venv-torch/bin/python scripts/bench_transformers_cpu.py [--lengths 512,2048]

Prints prefill tokens/s (``logits_to_keep=1``: the state and the next token's logits, as
our prefill) and greedy decode tokens/s at batch 1 and 16 through ``generate`` (time of
``1 + n`` new tokens minus the time of 1, over n), best of ``--repeats``, and the load.
"""

import argparse
import os
import time

import torch
import transformers
from transformers import Mamba2Config, Mamba2ForCausalLM


def best(fn, repeats):
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--lengths", default="512,2048")
  parser.add_argument("--batches", default="1,16")
  parser.add_argument("--steps", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  load = os.getloadavg()[0]
  config = Mamba2Config(
    vocab_size=50288,
    hidden_size=768,
    num_hidden_layers=24,
    state_size=128,
    head_dim=64,
    num_heads=24,
    n_groups=1,
    expand=2,
    chunk_size=256,
    tie_word_embeddings=True,
  )
  model = Mamba2ForCausalLM(config).eval()
  out = {}
  with torch.no_grad():
    for length in map(int, args.lengths.split(",")):
      tokens = torch.randint(0, 50288, (1, length))
      t = best(lambda: model(tokens, logits_to_keep=1), args.repeats)
      out[f"prefill_{length}"] = length / t
      print(f"prefill L={length}: {length / t:.1f} tok/s", flush=True)
    for batch in map(int, args.batches.split(",")):
      prompt = torch.randint(0, 50288, (batch, 16))
      gen = lambda n: model.generate(prompt, max_new_tokens=n, min_new_tokens=n, do_sample=False)
      one = best(lambda: gen(1), args.repeats)
      many = best(lambda: gen(1 + args.steps), args.repeats)
      out[f"decode_b{batch}"] = batch * args.steps / (many - one)
      print(f"decode B={batch}: {out[f'decode_b{batch}']:.1f} tok/s", flush=True)
  print(
    f"transformers {transformers.__version__}, torch {torch.__version__} "
    f"({torch.get_num_threads()} threads); load average {load:.2f} before, "
    f"{os.getloadavg()[0]:.2f} after: {out}"
  )


if __name__ == "__main__":
  main()
