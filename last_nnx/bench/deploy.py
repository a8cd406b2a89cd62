r"""Deployment benchmark: streaming latency and exported throughput, dense vs compacted.

``python -m last_nnx.bench --sections streaming`` (part of ``make bench``).

The model is a causal S5 `SequenceModel` whose layer is the one of the forward
latency section: H = 128 (ListOps, AAN, Path-X), P = 512 with conjugate symmetry
(256 stored states). Per token, a layer then spends most of its work in the
state update ``B u_t`` and readout ``C x_t`` (both O(P'H)) and little in the
O(H^2) GLU, so removing states should shorten the step nearly as P/P' says.
A second model with the ListOps config's own P = 16 (8 stored states per layer)
shows the other regime, where the GLU dominates and pruning saves little.

Every artifact is what `last_nnx.export` writes (`jax.export` of the model's
forward and step, weights embedded), deserialized and run in this process:

* ``step_call_us``: one exported step per Python call, one stream (batch 1),
  median over tokens: the latency a token-by-token caller sees, dispatch
  included;
* ``step_loop_us``: per-token time of ``steps`` tokens run inside one compiled
  loop (batch ``stream_batch``): the step's compute without dispatch;
* ``forward_seq_per_s``: exported full-sequence forward, batch ``batch``, L.

Each figure is the best of ``repeats`` rounds (within a round the variants
alternate, all in one process), and speedups are ratios of best times: on a
shared, loaded machine other jobs only add time, so the best round is the
least disturbed one.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from last_nnx import export, pruning
from last_nnx.model import SequenceModel

SHAPES = {
  # name: (layers, H, state_size, blocks, vocab, classes)
  "p512_h128": dict(layers=2, H=128, state_size=512, blocks=8, vocab=17, classes=10),
  "listops": dict(layers=8, H=128, state_size=16, blocks=8, vocab=17, classes=10),
}
RATIOS = {"p512_h128": (0.25, 0.5, 0.75), "listops": (0.5,)}


def build(shape: dict, seed: int = 0) -> SequenceModel:
  model = SequenceModel(
    n_classes=shape["classes"],
    d_model=shape["H"],
    n_layers=shape["layers"],
    ssm="s5",
    ssm_config=dict(state_size=shape["state_size"], blocks=shape["blocks"], bidirectional=False),
    vocab_size=shape["vocab"],
    rngs=nnx.Rngs(seed),
  )
  model.eval()
  return model


def variants(model: SequenceModel, ratios) -> dict[float, SequenceModel]:
  """The dense model and LAST-compacted copies at each ratio."""
  out = {0.0: model}
  for ratio in ratios:
    pruned = nnx.clone(model)
    pruning.prune(pruned, ratio, criterion="last", mode="compact")
    out[ratio] = pruned
  return out


def _exported(model, vocab: int, seq_len: int):
  """(forward, step) callables of the deserialized `jax.export` artifacts, and specs."""
  spec = dict(n_classes=model.head.out_features, vocab_size=vocab, in_dim=1, retrieval=False)
  fns = export.streaming_functions(model, spec, seq_len)
  out = []
  for name in ("forward", "step"):
    fn, args, _ = fns[name]
    data = export.export_stablehlo(fn, args, (jax.export.default_export_platform(),))
    out.append(jax.jit(jax.export.deserialize(bytearray(data)).call))
  return out[0], out[1], fns["step"][1]


def _zeros(specs, batch: int):
  return [jnp.zeros([batch] + s["shape"][1:], s["dtype"]) for s in specs]


def _loop(step, steps: int):
  """Runs ``steps`` tokens through ``step`` inside one compiled loop."""

  @jax.jit
  def run(tokens, *state):
    def body(carry, x_t):
      outs = step(x_t, *carry)
      return tuple(outs[1:]), outs[0]

    final, logits = jax.lax.scan(body, tuple(state), tokens)
    return logits[-1], final

  return run


def _timed(fn) -> float:
  t = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t


def bench_streaming(
  repeats: int = 5,
  *,
  batch: int = 8,
  seq_len: int = 2048,
  steps: int = 256,
  stream_batch: int = 16,
  calls: int = 200,
) -> dict:
  """Rows per shape and variant; see the module docstring."""
  rng = np.random.default_rng(0)
  rows = []
  for name, shape in SHAPES.items():
    models = variants(build(shape), RATIOS[name])
    x = jnp.asarray(rng.integers(1, shape["vocab"], (batch, seq_len)).astype(np.int32))
    lengths = jnp.full((batch,), seq_len, jnp.int32)
    tokens = jnp.asarray(rng.integers(1, shape["vocab"], (steps, stream_batch)).astype(np.int32))
    first = tokens[0]  # one token for each of the stream_batch streams
    one = first[:1]
    compiled = {}
    for ratio, model in models.items():
      forward, step, specs = _exported(model, shape["vocab"], seq_len)
      loop = _loop(step, steps)
      state1, state_n = _zeros(specs[1:], 1), _zeros(specs[1:], stream_batch)
      jax.block_until_ready(forward(x, lengths))  # compile everything once
      jax.block_until_ready(loop(tokens, *state_n))
      jax.block_until_ready(step(one, *state1))
      jax.block_until_ready(step(first, *state_n))
      states = sum(int(np.prod(s["shape"][1:-1])) for s in specs[1:] if s["name"].startswith("ssm"))
      compiled[ratio] = (forward, step, loop, state1, state_n, states)
    times = {ratio: dict(call=[], call_n=[], loop=[], forward=[]) for ratio in models}
    for _ in range(repeats):  # rounds; within a round the variants alternate
      per_call = {ratio: ([], []) for ratio in compiled}
      for _ in range(calls):
        for ratio, (_, step, _, state1, state_n, _) in compiled.items():
          per_call[ratio][0].append(_timed(lambda: step(one, *state1)))
          per_call[ratio][1].append(_timed(lambda: step(first, *state_n)))
      for ratio, (_, _, loop, _, state_n, _) in compiled.items():
        times[ratio]["call"].append(float(np.median(per_call[ratio][0])))
        times[ratio]["call_n"].append(float(np.median(per_call[ratio][1])))
        times[ratio]["loop"].append(_timed(lambda: loop(tokens, *state_n)) / steps)
      for ratio, (forward, *_) in compiled.items():
        times[ratio]["forward"].append(_timed(lambda: forward(x, lengths)))
    best = {ratio: {k: min(v) for k, v in t.items()} for ratio, t in times.items()}
    for ratio, t in best.items():
      speed = {k: best[0.0][k] / t[k] for k in t}
      row = dict(
        shape=name,
        layers=shape["layers"],
        d_model=shape["H"],
        ratio=ratio,
        states=compiled[ratio][5],
        limit=1 / (1 - ratio),
        step_call_us=1e6 * t["call"],
        step_call_streams_us=1e6 * t["call_n"],
        step_loop_us=1e6 * t["loop"],
        forward_seq_per_s=batch / t["forward"],
        speedup_call=speed["call"],
        speedup_call_streams=speed["call_n"],
        speedup_loop=speed["loop"],
        speedup_forward=speed["forward"],
      )
      rows.append(row)
      logging.info("streaming %s: %s", name, row)
  return dict(
    rows=rows,
    batch=batch,
    seq_len=seq_len,
    steps=steps,
    stream_batch=stream_batch,
    repeats=repeats,
    calls=calls,
  )


def markdown(result: dict) -> list[str]:
  """The "Streaming and export" section of bench/results.md."""
  n = result["stream_batch"]
  lines = [
    "## Streaming and export (causal S5, exported artifacts)",
    "",
    f"Per token: `step.jax` called once per token for 1 stream and for {n} streams "
    f"(median of {result['calls']} calls), and inside one compiled loop of "
    f"{result['steps']} tokens x {n} streams (time per token step); full sequence: "
    f"`forward.jax`, batch {result['batch']}, L = {result['seq_len']}. Pruned = LAST, "
    f"compacted. Times: best of {result['repeats']} rounds, the variants interleaved "
    "within each round, all in one process; speedups are ratios of those best times "
    "(load from other jobs only adds time, so the best round is the least disturbed; "
    "this machine was shared and loaded). `p512_h128`: 2 blocks of the "
    "forward section's layer (H=128, P=512: 256 stored states per block), where the "
    "states' O(P'H) work dominates a step, the regime in which pruning can pay per "
    "token; `listops`: the ListOps config's model (8 blocks, H=128, P=16: 8 stored "
    "states per block), where the O(H^2) GLU dominates.",
    "",
    f"| shape | pruned | states | 1 stream µs | speedup | {n} streams µs | speedup "
    "| in loop µs | speedup | forward seq/s | speedup | limit P/P' |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r['shape']} | {100 * r['ratio']:.0f}% | {r['states']} | "
      f"{r['step_call_us']:.0f} | {r['speedup_call']:.2f}x | "
      f"{r['step_call_streams_us']:.0f} | {r['speedup_call_streams']:.2f}x | "
      f"{r['step_loop_us']:.0f} | {r['speedup_loop']:.2f}x | "
      f"{r['forward_seq_per_s']:.1f} | {r['speedup_forward']:.2f}x | "
      f"{r['limit']:.2f}x |"
    )
  return lines
