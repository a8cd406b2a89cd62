r"""Mamba-2 LM speed at the mamba2-130m shape, beside an independent JAX Mamba-2.

``python -m last_nnx.bench --sections lm`` (random weights: speed needs no training).
The independent implementation is the ``mamba2-jax`` package (not a dependency: put it
on the path, e.g. ``pip install --target /tmp/m2j mamba2-jax`` and
``PYTHONPATH=$PWD:/tmp/m2j``); without it the section times ours alone.

Shape (state-spaces/mamba2-130m): d_model 768, 24 layers, N 128, head_dim 64 (24 heads),
one group, conv 4, chunks of 256, vocab 50288, tied embeddings. Both models get the
same weights (`mamba2_jax_from`), and the bench checks they agree (``max_rel_diff`` of the
logits on a short sequence).

* **prefill**: ``tokens (1, L)`` -> decode state + the next token's logits, L = 512 and
  2048 (ours: `Mamba2LM.prefill`, the chunked scan; theirs: the backbone with an empty
  cache, the same last-position head), tokens/s = L / time;
* **decode**: ``steps`` greedy tokens after a 16-token prompt, at batch 1 and 16, inside
  one compiled ``lax.scan`` for both (ours: `Mamba2LM.step`; theirs: the model called on
  one token with its cache, ``THEIR_STEPS`` tokens and one run: it pads each token to a
  whole chunk), tokens/s = batch x steps / (time - the prompt's prefill time);
* **state_bytes**: the decode state of one stream (conv windows + SSM states);
* **weight-read limit**: at batch 1 each token reads every weight once (float32, 0.52 GB
  here); ``bandwidth_gbs`` is this machine's measured rate of a jitted matrix-vector
  product over 0.5 GiB of float32 (`read_bandwidth_gbs`), and ``limit_tokens_per_s =
  bandwidth / weight bytes`` is the most batch-1 decode can do.

Our scan runs in chunks of 128 (`Mamba2LMConfig.scan_chunk`), the checkpoint's 256 only
written back: measured here (2026-12-03, 4 of the 24 layers, 2 cores at load ~16,
interleaved runs), prefill ran 58 / 84 / 75 tok/s at L = 512 and 67 / 77 / 61 at L = 2048
(scaled to 24 layers) with chunks of 256 / 128 / 64, and one layer's scan alone 151 ms at
256 vs 48 ms at 128. mamba2-jax keeps its configured 256.

Each figure is the best of ``repeats`` runs (other jobs only add time), after one
compiling call; the 1-minute load average is recorded before and after.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from last_nnx.lm import Mamba2LM, Mamba2LMConfig

PREFILL_LENGTHS = (512, 2048)
DECODE_BATCHES = (1, 16)
THEIR_STEPS = 3
# What users would pick instead, measured on this 2-core CPU (batch 1, L 512, 24 layers).
QUOTED = {
  "bonsai": {"prefill": 223.0, "decode": 2.2},
  "transformers_cpu": {"prefill": 272.0, "decode": 12.8},
}


def _best(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times)


def mamba2_jax_from(model: Mamba2LM):
  """The ``mamba2_jax.Mamba2ForCausalLM`` with ``model``'s weights (one group, tied)."""
  import mamba2_jax

  c = model.config
  cfg = mamba2_jax.Mamba2Config(
    vocab_size=c.vocab_size,
    hidden_size=c.d_model,
    state_size=c.state_size,
    head_dim=c.head_dim,
    chunk_size=c.chunk_size,
    expand=c.expand,
    conv_kernel=c.conv_width,
    num_hidden_layers=c.n_layers,
    layer_norm_epsilon=c.norm_eps,
    tie_word_embeddings=True,
  )
  theirs = nnx.eval_shape(lambda: mamba2_jax.Mamba2ForCausalLM(cfg, rngs=nnx.Rngs(0)))
  theirs.backbone.embedder.embedding.set_value(model.embedding[...])
  theirs.backbone.final_norm.weight.set_value(model.norm_f.weight[...])
  for block, other in zip(model.layers, theirs.backbone.layers):
    mixer, m = block.mixer, other.mixer
    other.norm.weight.set_value(block.norm.weight[...])
    m.in_proj.kernel.set_value(mixer.fused_in_projection())
    kernel, bias = mixer.fused_conv()
    m.conv1d.conv.kernel.set_value(kernel[:, None, :])
    m.conv1d.conv.bias.set_value(bias)
    for name in ("dt_bias", "A_log", "D"):
      getattr(m, name).set_value(getattr(mixer, name)[...])
    m.norm.weight.set_value(mixer.norm_scale[...])
    m.out_proj.kernel.set_value(mixer.out[...])
  return theirs, cfg


def _ours(model):
  graphdef, params = nnx.split(model)

  @jax.jit
  def prefill(params, tokens):
    return nnx.merge(graphdef, params).prefill(tokens)

  @jax.jit
  def decode(params, prompt, steps_like):
    m = nnx.merge(graphdef, params)
    state, logits = m.prefill(prompt)

    def body(carry, _):
      state, logits = carry
      token = jnp.argmax(logits, -1).astype(jnp.int32)
      state, logits = m.step(state, token)
      return (state, logits), token

    return jax.lax.scan(body, (state, logits), steps_like)[1]

  @jax.jit
  def logits(params, tokens):
    return nnx.merge(graphdef, params)(tokens)

  return params, prefill, decode, logits


def _theirs(model, cfg):
  import mamba2_jax

  graphdef, params = nnx.split(model)

  def last_logits(m, tokens, cache):
    out = m.backbone(input_ids=tokens, cache=cache)
    head = m.backbone.embedder.embedding[...]
    return out["cache"], out["last_hidden_state"][:, -1] @ head.T

  @jax.jit
  def prefill(params, tokens):
    m = nnx.merge(graphdef, params)
    return last_logits(m, tokens, mamba2_jax.create_empty_cache(cfg, tokens.shape[0]))

  @jax.jit
  def decode(params, prompt, steps_like):
    m = nnx.merge(graphdef, params)
    cache, logits = last_logits(m, prompt, mamba2_jax.create_empty_cache(cfg, prompt.shape[0]))

    def body(carry, _):
      cache, logits = carry
      token = jnp.argmax(logits, -1).astype(jnp.int32)
      cache, logits = last_logits(m, token[:, None], cache)
      return (cache, logits), token

    return jax.lax.scan(body, (cache, logits), steps_like)[1]

  @jax.jit
  def logits(params, tokens):
    return nnx.merge(graphdef, params)(tokens)["logits"]

  return params, prefill, decode, logits


def read_bandwidth_gbs(repeats: int = 3, gib: float = 0.5) -> float:
  """GB/s of a jitted float32 matrix-vector product over a ``gib`` GiB matrix.

  That is what batch-1 decoding does with every weight (one multiply-add per weight
  read), multi-threaded as XLA runs it: the fastest pass over the weights here.
  """
  x = jnp.ones((int(gib * 2**30) // 4096, 1024), jnp.float32)
  v = jnp.ones((1024,), jnp.float32)
  matvec = jax.jit(lambda x, v: x @ v)
  return x.nbytes / _best(lambda: matvec(x, v), repeats) / 1e9


def _load() -> float:
  return round(os.getloadavg()[0], 2)


def bench_lm(
  repeats: int = 2,
  *,
  config: Mamba2LMConfig | None = None,
  steps: int = 32,
  prefill_lengths=PREFILL_LENGTHS,
  decode_batches=DECODE_BATCHES,
) -> dict:
  """The figures of the module docstring, JSON-able."""
  config = config or Mamba2LMConfig.mamba2_130m()
  load_before = _load()
  model = Mamba2LM(config, rngs=nnx.Rngs(0))
  params = jax.tree.leaves(nnx.state(model, nnx.Param))
  weight_bytes = sum(int(np.prod(p.shape)) * 4 for p in params)
  impls = {"ours": _ours(model)}
  try:
    theirs, cfg = mamba2_jax_from(model)
    impls["mamba2_jax"] = _theirs(theirs, cfg)
  except ImportError as e:
    logging.warning("lm bench: mamba2-jax not importable (%s): timing ours alone", e)
  rng = np.random.default_rng(0)
  check = jnp.asarray(rng.integers(0, config.vocab_size, (1, 300)), jnp.int32)
  ref = np.asarray(impls["ours"][3](impls["ours"][0], check))
  result = {
    "shape": {
      "d_model": config.d_model,
      "layers": config.n_layers,
      "state_size": config.state_size,
      "head_dim": config.head_dim,
      "vocab": config.vocab_size,
    },
    "weight_bytes": weight_bytes,
    "state_bytes": model.state_bytes(1),
    "steps": steps,
    "repeats": repeats,
    "impls": {},
  }
  for name, (params, prefill, decode, logits) in impls.items():
    # mamba2-jax decodes a token by the chunked scan padded to a whole chunk (256x the
    # work of a step): a few steps and one repeat measure it well enough.
    n_steps, reps = (steps, repeats) if name == "ours" else (THEIR_STEPS, 1)
    row = {"decode_steps": n_steps}
    if name != "ours":
      other = np.asarray(logits(params, check))
      row["max_rel_diff"] = float(np.abs(other - ref).max() / np.abs(ref).max())
    for length in prefill_lengths:
      tokens = jnp.asarray(rng.integers(0, config.vocab_size, (1, length)), jnp.int32)
      row[f"prefill_{length}"] = length / _best(lambda: prefill(params, tokens), reps)
      logging.info("lm bench: %s prefill L=%d %.1f tok/s", name, length, row[f"prefill_{length}"])
    for batch in decode_batches:
      prompt = jnp.asarray(rng.integers(0, config.vocab_size, (batch, 16)), jnp.int32)
      like = jnp.zeros((n_steps,))
      prefill_only = _best(lambda: prefill(params, prompt), reps)
      total = _best(lambda: decode(params, prompt, like), reps)
      row[f"decode_b{batch}"] = batch * n_steps / max(total - prefill_only, 1e-9)
      logging.info("lm bench: %s decode B=%d %.1f tok/s", name, batch, row[f"decode_b{batch}"])
      if name == "ours" and batch == 1:  # the limit, measured at the same moment
        bandwidth = read_bandwidth_gbs()
        result.update(bandwidth_gbs=bandwidth, limit_tokens_per_s=bandwidth * 1e9 / weight_bytes)
    result["impls"][name] = row
  result.update(load_before=load_before, load_after=_load(), quoted=QUOTED)
  return result


def markdown(result: dict) -> list[str]:
  s = result["shape"]
  lines = [
    "## Mamba-2 LM at the mamba2-130m shape (`--sections lm`)",
    "",
    f"d_model {s['d_model']}, {s['layers']} layers, N {s['state_size']}, head_dim "
    f"{s['head_dim']}, vocab {s['vocab']}, random weights; best of {result['repeats']}; "
    f"load average {result['load_before']} before, {result['load_after']} after.",
    "",
    "| implementation | prefill L=512 (tok/s) | prefill L=2048 | decode B=1 (tok/s) "
    "| decode B=16 | logits vs ours |",
    "|---|---|---|---|---|---|",
  ]
  for name, row in result["impls"].items():
    diff = f"{row['max_rel_diff']:.1e}" if "max_rel_diff" in row else "-"
    lines.append(
      f"| {name} | {row.get('prefill_512', 0):.0f} | {row.get('prefill_2048', 0):.0f} "
      f"| {row.get('decode_b1', 0):.1f} | {row.get('decode_b16', 0):.1f} | {diff} |"
    )
  measured = result.get("transformers_measured")  # scripts/bench_transformers_cpu.py
  if measured:
    lines.append(
      f"| transformers {measured['version']} CPU torch (measured right after, "
      f"load {measured['load']}) | {measured.get('prefill_512', 0):.0f} "
      f"| {measured.get('prefill_2048', 0):.0f} | {measured.get('decode_b1', 0):.2f} "
      f"| - | - |"
    )
  for name, q in result["quoted"].items():
    lines.append(
      f"| {name} (quoted, same CPU) | {q['prefill']:.0f} | - | {q['decode']:.1f} | - | - |"
    )
  ours = result["impls"]["ours"]
  lines += [
    "",
    f"Weights {result['weight_bytes'] / 1e9:.2f} GB float32; decode state "
    f"{result['state_bytes'] / 1e6:.1f} MB per stream.",
  ]
  if "limit_tokens_per_s" in result:
    read_gbs = ours.get("decode_b1", 0) * result["weight_bytes"] / 1e9
    lines[-1] += (
      f" A matrix-vector product over 0.5 GiB of float32, timed right after our "
      f"batch-1 decode, read {result['bandwidth_gbs']:.1f} GB/s, so batch-1 decode "
      f"can reach about {result['limit_tokens_per_s']:.1f} tok/s: ours ran at "
      f"{ours.get('decode_b1', 0) / result['limit_tokens_per_s']:.0%} of that "
      f"(its weights read at {read_gbs:.1f} GB/s; on a loaded machine the two "
      "moments differ)."
    )
  for note in result.get("notes", []):
    lines += ["", note]
  return lines + [""]
