r"""Mamba-2 vs its state size N: what pruning the states buys.

``python -m last_nnx.bench --sections mamba2`` (needs no TensorFlow).

One fixed causal model (``SHAPE``: 2 blocks, d_model 128, 16 heads of 16
channels, one group, conv width 4, chunks of 64) is built at N = 128 and
compacted to N = 64, 32, 16 with the layer's own ``prune_states`` (the first N
states of the group kept): the arrays a pruned model really has. For each N:

* ``train_tokens_per_s``: the training loop's own (donating) train step, Adam,
  batch ``batch`` x L = ``seq_len``;
* ``stream_us``: per-token time of the model's ``step`` run ``steps`` tokens
  inside one compiled ``lax.scan``, for 1 stream (latency) and for
  ``stream_batch`` streams (throughput);
* the FLOP count that predicts both (below) and XLA's own count of the
  compiled forward (a check on the formula).

FLOPs per token and block (a multiply-add = 2; ``e = d_inner``, ``h`` heads,
``g`` groups, ``W`` conv width, ``T`` chunk, ``d`` = d_model), the model's
other work (encoder, head) left out:

    in-projection  2 d (2 e + 2 g N + h)      conv   2 W (e + 2 g N)
    SSD (chunked)  2 T g N + 2 T e + T h + 4 e N   (C.B scores, decayed scores x x,
                                                    chunk states, state -> output)
    norm, gate     6 e        out-projection 2 e d        GLU (half_glu1) 2 d^2
    one step       the SSD term becomes 5 e N (decay, outer product, readout)

A training step is taken as 3 x the forward. The limit a run at N can reach
is ``flops(128) / flops(N)``; what is left over (the e- and d-sized work) is
why it stays well below 128 / N at this shape.

Each time is the best of ``repeats`` rounds, the variants alternating within a
round: on a shared machine other jobs only add time.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from last_nnx.bench.common import one_train_step
from last_nnx.model import SequenceModel

SHAPE = dict(
  layers=2, d_model=128, head_dim=16, n_groups=1, conv_width=4, chunk_size=64, vocab=17, classes=10
)
SIZES = (128, 64, 32, 16)


def flops_per_token(
  n: int,
  *,
  d_model: int,
  head_dim: int,
  n_groups: int,
  conv_width: int,
  chunk_size: int,
  layers: int,
  expand: int = 2,
  seq_len: int | None = None,
):
  """``(forward, step)`` FLOPs per token of the model's blocks (module docstring)."""
  d, g, w = d_model, n_groups, conv_width
  e = expand * d
  h = e // head_dim
  t = min(chunk_size, seq_len or chunk_size)
  shared = 2 * d * (2 * e + 2 * g * n + h) + 2 * w * (e + 2 * g * n) + 6 * e + 2 * e * d + 2 * d * d
  forward = shared + 2 * t * g * n + 2 * t * e + t * h + 4 * e * n
  step = shared + 5 * e * n
  return layers * forward, layers * step


def build(n: int = SIZES[0], seed: int = 0) -> SequenceModel:
  s = SHAPE
  cfg = dict(
    state_size=n,
    head_dim=s["head_dim"],
    n_groups=s["n_groups"],
    conv_width=s["conv_width"],
    chunk_size=s["chunk_size"],
  )
  return SequenceModel(
    n_classes=s["classes"],
    d_model=s["d_model"],
    n_layers=s["layers"],
    ssm="mamba2",
    ssm_config=cfg,
    vocab_size=s["vocab"],
    rngs=nnx.Rngs(seed),
  )


def compacted(n: int, full: int = SIZES[0]) -> SequenceModel:
  """The model built at N = ``full`` with every layer compacted to its first ``n`` states
  per group (``prune_states``). Built afresh each time (same seed, same weights), not
  cloned: the train step donates its buffers, which a clone would share."""
  out = build(full)
  for layer in out.prunable_layers().values():
    g, full = layer.state_shape
    keep = np.zeros((g, full), bool)
    keep[:, :n] = True
    layer.prune_states(keep)
  return out


@nnx.jit
def _stream(model, tokens, state):
  def body(carry, x_t):
    carry, logits = model.step(carry, x_t)
    return carry, logits

  final, logits = jax.lax.scan(body, state, tokens)
  return logits[-1], final


def _xla_forward_flops(model, x, lengths) -> float | None:
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, a, b: nnx.merge(graphdef, s)(a, b))
  try:
    cost = fn.lower(state, x, lengths).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"])
  except Exception as e:  # cost analysis is best effort (absent on some backends)
    logging.warning("no XLA cost analysis: %s", e)
    return None


def _timed(fn, rounds: list):
  t = time.perf_counter()
  jax.block_until_ready(fn())
  rounds.append(time.perf_counter() - t)


def bench_mamba2(
  repeats: int = 3,
  *,
  batch: int = 8,
  seq_len: int = 512,
  steps: int = 128,
  stream_batch: int = 16,
  sizes=SIZES,
) -> dict:
  """Rows per N; see the module docstring."""
  rng = np.random.default_rng(0)
  vocab = SHAPE["vocab"]
  x = jnp.asarray(rng.integers(1, vocab, (batch, seq_len)).astype(np.int32))
  lengths = jnp.full((batch,), seq_len, jnp.int32)
  y = jnp.asarray(np.arange(batch) % SHAPE["classes"])
  tokens = jnp.asarray(rng.integers(1, vocab, (steps, stream_batch)).astype(np.int32))
  variants, times = {}, {}
  for n in sizes:
    train_model = compacted(n, max(sizes))
    optimizer = nnx.Optimizer(train_model, optax.adam(1e-4), wrt=nnx.Param)
    eval_model = compacted(n, max(sizes))
    eval_model.eval()
    t0 = time.perf_counter()
    jax.block_until_ready(one_train_step(train_model, optimizer, x, lengths, y))
    compile_s = time.perf_counter() - t0
    for width in (1, stream_batch):
      jax.block_until_ready(_stream(eval_model, tokens[:, :width], eval_model.init_state(width)))
    variants[n] = (
      train_model,
      optimizer,
      eval_model,
      compile_s,
      _xla_forward_flops(eval_model, x, lengths),
    )
    times[n] = dict(train=[], stream1=[], stream_n=[])
  for _ in range(repeats):  # rounds; the variants alternate within a round
    for n, (train_model, optimizer, eval_model, _, _) in variants.items():
      _timed(lambda: one_train_step(train_model, optimizer, x, lengths, y), times[n]["train"])
      for key, width in (("stream1", 1), ("stream_n", stream_batch)):
        _timed(
          lambda: _stream(eval_model, tokens[:, :width], eval_model.init_state(width)),
          times[n][key],
        )
  rows = []
  n0 = max(sizes)
  shape = {
    k: SHAPE[k] for k in ("d_model", "head_dim", "n_groups", "conv_width", "chunk_size", "layers")
  }
  flops = {n: flops_per_token(n, seq_len=seq_len, **shape) for n in sizes}
  best = {n: {k: min(v) for k, v in t.items()} for n, t in times.items()}
  for n in sizes:
    b, layer = best[n], variants[n][2].prunable_layers()
    xla = variants[n][4]
    row = dict(
      N=n,
      state_shape=list(next(iter(layer.values())).state_shape),
      train_step_s=b["train"],
      train_tokens_per_s=batch * seq_len / b["train"],
      first_train_step_s=variants[n][3],
      stream1_us=1e6 * b["stream1"] / steps,
      stream_n_us=1e6 * b["stream_n"] / steps,
      forward_flops_per_token=flops[n][0],
      step_flops_per_token=flops[n][1],
      xla_forward_flops_per_token=None if xla is None else xla / (batch * seq_len),
      speedup_train=best[n0]["train"] / b["train"],
      speedup_stream1=best[n0]["stream1"] / b["stream1"],
      speedup_stream_n=best[n0]["stream_n"] / b["stream_n"],
      limit_train=flops[n0][0] / flops[n][0],
      limit_step=flops[n0][1] / flops[n][1],
    )
    rows.append(row)
    logging.info("mamba2 N=%d: %s", n, row)
  return dict(
    rows=rows,
    shape=SHAPE,
    batch=batch,
    seq_len=seq_len,
    steps=steps,
    stream_batch=stream_batch,
    repeats=repeats,
    backend=jax.default_backend(),
  )


def markdown(result: dict) -> list[str]:
  """The "Mamba-2 vs N" section of bench/results.md."""
  s, n = result["shape"], result["stream_batch"]
  lines = [
    f"## Mamba-2 vs state size N ({result['backend']})",
    "",
    f"One causal model ({s['layers']} blocks, d_model {s['d_model']}, "
    f"{2 * s['d_model'] // s['head_dim']} heads x {s['head_dim']}, G = {s['n_groups']}, "
    f"conv {s['conv_width']}, chunk {s['chunk_size']}) built at N = 128 and compacted "
    "by `prune_states` to each N. Train: the loop's train step (Adam), batch "
    f"{result['batch']} x L = {result['seq_len']}. Stream: `model.step` in one "
    f"compiled scan of {result['steps']} tokens, time per token, 1 and {n} streams. "
    "Limits: FLOP ratios of the formula in `last_nnx/bench/mamba2.py` (XLA's count of "
    "the compiled forward beside it). Best of "
    f"{result['repeats']} interleaved rounds.",
    "",
    "| N | train tok/s | speedup | limit | 1 stream µs/tok | speedup "
    f"| {n} streams µs/tok | speedup | limit | fwd FLOP/tok (formula / XLA) |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    xla = r["xla_forward_flops_per_token"]
    lines.append(
      f"| {r['N']} | {r['train_tokens_per_s']:.0f} | {r['speedup_train']:.2f}x | "
      f"{r['limit_train']:.2f}x | {r['stream1_us']:.1f} | {r['speedup_stream1']:.2f}x | "
      f"{r['stream_n_us']:.1f} | {r['speedup_stream_n']:.2f}x | {r['limit_step']:.2f}x | "
      f"{r['forward_flops_per_token'] / 1e3:.0f}k / "
      + ("-" if xla is None else f"{xla / 1e3:.0f}k")
      + " |"
    )
  return lines
