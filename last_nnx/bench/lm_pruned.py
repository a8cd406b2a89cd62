r"""What pruning a Mamba-2 LM's states buys at decode: tokens/s and state bytes vs dense.

``python -m last_nnx.bench --out bench --sections lm_pruned`` (random weights), or with
``--lm_checkpoints DENSE,PRUNED,...``: saved LMs (`last_nnx.lm.hub` checkpoint directories,
e.g. written by ``python -m last_nnx.cli.prune``, or LM training runs), the first the reference
the others are compared with.

The model is mamba2-130m's shape (d_model 768, 24 layers, N 128, 24 heads of 64, one
group, vocab 50288, tied head), built with random weights: speed does not depend on
what the weights are. The variants are the dense model and models compacted to fewer
states per layer: uniform N (the ratio in every layer) and ragged N (a layer-adaptive
profile with the same total: the layers' N alternate around the mean), built directly
from a config with ``layer_state_sizes`` (what `last_nnx.lm.prune.prune_lm` produces).

Measured, each the best of ``repeats`` rounds (the variants alternating within a round;
on a shared machine other jobs only add time):

* ``decode``: ``steps`` tokens of greedy decoding from ``batch`` streams in one compiled
  ``lax.scan`` (`Mamba2LM.step`), tokens/s = ``batch * steps / time``;
* ``prefill``: the chunked forward of one ``(1, prefill_len)`` prompt to its decode
  state (`Mamba2LM.prefill`), tokens/s.

The limit the bytes predict: a decode step reads every weight once (``W`` bytes: the
tied embedding is read whole by the LM head) and reads and writes the state
(``2 S(B)``), so at a memory bandwidth ``BW`` (measured here: a reduction over a
256 MB array) ``tokens/s <= B BW / (W + 2 S(B))``. The state's bytes overtake the
weights' at ``B* = W / S(1)`` streams. On a CPU a step at batch 16-64 is also bounded
by the matmuls' FLOPs (``2 W / 4`` per token); the table gives both limits.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.lm import Mamba2LM, Mamba2LMConfig

RATIOS = (0.5, 0.7)


def ragged_sizes(n: int, layers: int, ratio: float) -> tuple[int, ...]:
  """A layer-adaptive profile keeping ``floor(layers n (1 - ratio))`` states in all:
  layers alternate ``m + d`` and ``m - d`` around the uniform ``m`` (``d = m / 2``)."""
  m = int(n * (1 - ratio))
  d = m // 2
  sizes = [min(n, m + d) if i % 2 == 0 else max(1, m - d) for i in range(layers)]
  return tuple(sizes)


def variants(config: Mamba2LMConfig, ratios=RATIOS) -> dict[str, Mamba2LMConfig]:
  """``{name: config}``: dense, and per ratio uniform and ragged N."""
  import dataclasses

  out = {"dense": config}
  n, layers = config.state_size, config.n_layers
  for r in ratios:
    m = max(1, int(n * (1 - r)))
    out[f"uniform {int(100 * r)}%"] = dataclasses.replace(config, state_size=m)
    sizes = ragged_sizes(n, layers, r)
    out[f"ragged {int(100 * r)}%"] = dataclasses.replace(
      config, state_size=max(sizes), layer_state_sizes=sizes
    )
  return out


def saved_models(directories) -> dict[str, Mamba2LM]:
  """``{name: model}`` of saved LMs (checkpoint directories or LM training runs), in order;
  a name is the directory's last component (made unique with its parent's where two share
  it)."""
  from last_nnx.sweeps import saved_lm

  out: dict[str, Mamba2LM] = {}
  for d in directories:
    path = os.path.normpath(d)
    name = os.path.basename(path)
    if name in out:
      name = os.path.join(os.path.basename(os.path.dirname(path)), name)
    out[name] = saved_lm.load(path)[0]
  return out


def weight_bytes(model: nnx.Module) -> int:
  return int(
    sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
  )


def _decoder(model, batch: int, steps: int):
  graphdef, params = nnx.split(model)

  @jax.jit
  def run(params, tokens):
    m = nnx.merge(graphdef, params)

    def body(carry, _):
      state, tok = carry
      state, logits = m.step(state, tok)
      return (state, jnp.argmax(logits, -1).astype(jnp.int32)), None

    (_state, tok), _ = jax.lax.scan(body, (m.init_state(batch), tokens), None, length=steps)
    return tok

  tokens = jnp.zeros((batch,), jnp.int32)
  return lambda: run(params, tokens).block_until_ready()


def _prefiller(model, length: int):
  graphdef, params = nnx.split(model)

  @jax.jit
  def run(params, tokens):
    state, logits = nnx.merge(graphdef, params).prefill(tokens)
    return logits, state

  tokens = jnp.asarray(
    np.random.default_rng(0).integers(0, model.config.vocab_size, (1, length)), jnp.int32
  )
  return lambda: jax.block_until_ready(run(params, tokens))


def _best(fns: dict, repeats: int) -> dict:
  for fn in fns.values():
    fn()  # compile and warm up
  best = {k: float("inf") for k in fns}
  for _ in range(repeats):
    for k, fn in fns.items():
      t = time.perf_counter()
      fn()
      best[k] = min(best[k], time.perf_counter() - t)
  return best


def bandwidth(mb: int = 256, repeats: int = 5) -> float:
  """Bytes/s of a reduction over an ``mb`` MB float32 array (one read)."""
  x = jnp.ones((mb * 2**18,), jnp.float32)
  fn = jax.jit(jnp.sum)
  return mb * 2**20 / _best({"x": lambda: fn(x).block_until_ready()}, repeats)["x"]


def matmul_flops(repeats: int = 3) -> float:
  """FLOP/s of a ``(64, 768) @ (768, 3352)`` float32 matmul (a decode in-projection)."""
  a = jnp.ones((64, 768), jnp.float32)
  b = jnp.ones((768, 3352), jnp.float32)
  fn = jax.jit(lambda a, b: a @ b)
  return 2 * 64 * 768 * 3352 / _best({"x": lambda: fn(a, b).block_until_ready()}, repeats)["x"]


def bench_lm_pruned(
  repeats: int = 3,
  *,
  batches=(1, 16, 64),
  steps: int = 8,
  prefill_len: int = 2048,
  config: Mamba2LMConfig | None = None,
  ratios=RATIOS,
  only=None,
  prefill_only=None,
  checkpoints=None,
) -> dict:
  """The section's result (module docstring): per variant, state bytes, decode and prefill.

  ``only``: the variant names to run (None: all); ``prefill_only``: those whose prefill
  is timed (None: all that run); ``checkpoints``: saved LMs' directories to time instead of
  random-weight variants (the first is the reference; names are the directories' names).
  """
  if checkpoints:
    models = saved_models(checkpoints)
    config = next(iter(models.values())).config
  else:
    config = config or Mamba2LMConfig.mamba2_130m()
    configs = {k: c for k, c in variants(config, ratios).items() if only is None or k in only}
    models = {k: Mamba2LM(c, rngs=nnx.Rngs(0)) for k, c in configs.items()}
  w = weight_bytes(next(iter(models.values())))
  bw = bandwidth()
  flops = matmul_flops()
  out = {
    "shape": {
      "d_model": config.d_model,
      "layers": config.n_layers,
      "N": config.state_size,
      "head_dim": config.head_dim,
      "vocab": config.vocab_size,
    },
    "weight_bytes": w,
    "bandwidth_bytes_per_s": bw,
    "matmul_flops_per_s": flops,
    "steps": steps,
    "prefill_len": prefill_len,
    "weights": "saved" if checkpoints else "random",
    "variants": {},
  }
  for name, m in models.items():
    out["variants"][name] = {
      "state_sizes": list(m.state_sizes()),
      "state_bytes_per_stream": m.state_bytes(1),
      "crossover_batch": w / m.state_bytes(1),
      "decode": {},
    }
  for b in batches:
    times = _best({k: _decoder(m, b, steps) for k, m in models.items()}, repeats)
    for name, t in times.items():
      s = models[name].state_bytes(b)
      out["variants"][name]["decode"][str(b)] = {
        "tokens_per_s": b * steps / t,
        "state_bytes": s,
        "bandwidth_limit_tokens_per_s": b * bw / (w + 2 * s),
        "flops_limit_tokens_per_s": flops / (2 * w / 4),
      }
  if prefill_len:
    times = _best(
      {
        k: _prefiller(m, prefill_len)
        for k, m in models.items()
        if prefill_only is None or k in prefill_only
      },
      repeats,
    )
    for name, t in times.items():
      out["variants"][name]["prefill_tokens_per_s"] = prefill_len / t
  return out


def markdown(r: dict) -> list[str]:
  s = r["shape"]
  weights = "saved models" if r.get("weights") == "saved" else "random weights"
  lines = [
    (
      f"### Pruned Mamba-2 LM decode ({weights}; shape d_model "
      f"{s['d_model']}, {s['layers']} layers, N {s['N']}, head_dim {s['head_dim']}, vocab "
      f"{s['vocab']})"
    ),
    "",
    (
      f"Weights {r['weight_bytes'] / 2**20:.0f} MiB; measured bandwidth "
      f"{r['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, matmul "
      f"{r['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s; decode {r['steps']} steps in one scan."
    ),
    "",
  ]
  batches = list(next(iter(r["variants"].values()))["decode"])
  reference = next(iter(r["variants"]))
  head = (
    "| variant | states per layer | state MiB/stream | state > weights at B | "
    + " | ".join(f"decode B={b} tok/s (vs {reference}; bw limit)" for b in batches)
    + " | prefill L="
    f"{r['prefill_len']} tok/s |"
  )
  lines += [head, "|" + "---|" * (5 + len(batches))]
  dense = r["variants"][reference]
  for name, v in r["variants"].items():
    cells = []
    for b in batches:
      d = v["decode"][b]
      speedup = d["tokens_per_s"] / dense["decode"][b]["tokens_per_s"]
      cells.append(
        f"{d['tokens_per_s']:.1f} ({speedup:.2f}x; {d['bandwidth_limit_tokens_per_s']:.0f})"
      )
    lines.append(
      f"| {name} | {' '.join(map(str, v['state_sizes']))} | "
      f"{v['state_bytes_per_stream'] / 2**20:.2f} | "
      f"{v['crossover_batch']:.0f} | "
      + " | ".join(cells)
      + f" | {v.get('prefill_tokens_per_s', float('nan')):.0f} |"
    )
  return lines + [""]
