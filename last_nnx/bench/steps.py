"""Sections ``train``, ``pruning``, ``forward`` and ``memory``: the step and the layer.

* ``train_step``: sequences/s of one training step (S5 and S4D) at each task's
  model shape and sequence length, small batch;
* ``pruning_event``: wall time of a pruning event (scores, allocation,
  compaction, optimizer surgery, recompilation of the next step) against one
  epoch of the ListOps configuration (estimated as steps/epoch x step time);
* ``forward_latency``: one S5 layer, dense vs masked vs compacted at 25/50/75%
  pruning (masking saves nothing; compaction approaches P/P');
* ``memory``: XLA's compiled memory (arguments + temporaries) and step time of
  a Path-X-shaped S5 model vs sequence length 1k-16k.
"""

import time

import jax
import numpy as np
import optax
from absl import logging
from flax import nnx

from last_nnx import pruning
from last_nnx.bench.common import TASK_SHAPES, build_model, make_batch, median_time, one_train_step
from last_nnx.ssm import S5


def bench_train_steps(tasks, batch: int, repeats: int) -> list[dict]:
  rows = []
  for task in tasks:
    shape = TASK_SHAPES[task]
    for ssm in ("s5", "s4d"):
      model = build_model(shape, ssm)
      optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
      x, lengths, y = make_batch(shape, batch)
      t0 = time.perf_counter()
      jax.block_until_ready(one_train_step(model, optimizer, x, lengths, y))
      compile_s = time.perf_counter() - t0
      step = median_time(
        lambda: jax.block_until_ready(one_train_step(model, optimizer, x, lengths, y)), repeats
      )
      rows.append(
        dict(
          task=task,
          ssm=ssm,
          batch=batch,
          seq_len=shape["L"],
          step_s=step,
          sequences_per_s=batch / step,
          first_step_s=compile_s,
        )
      )
      logging.info("train step %s/%s: %.3f s (%.2f seq/s)", task, ssm, step, batch / step)
  return rows


def bench_pruning_event(repeats: int) -> dict:
  """ListOps config: pruning event cost vs one (estimated) epoch of 96000/50 steps."""
  shape = TASK_SHAPES["listops"]
  batch, steps_per_epoch = 50, 96000 // 50
  model = build_model(shape, "s5")
  optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
  x, lengths, y = make_batch(shape, batch)
  step = median_time(
    lambda: jax.block_until_ready(one_train_step(model, optimizer, x, lengths, y)), repeats
  )
  t0 = time.perf_counter()
  report = pruning.prune(model, 0.3, criterion="last", mode="compact", optimizer=optimizer)
  t1 = time.perf_counter()
  jax.block_until_ready(one_train_step(model, optimizer, x, lengths, y))  # retrace + compile
  t2 = time.perf_counter()
  event = (t1 - t0) + max(0.0, (t2 - t1) - step)
  epoch = steps_per_epoch * step
  return dict(
    prune_s=t1 - t0,
    recompile_s=max(0.0, (t2 - t1) - step),
    event_s=event,
    step_s=step,
    steps_per_epoch=steps_per_epoch,
    epoch_s_estimated=epoch,
    event_fraction_of_epoch=event / epoch,
    states_after=report.states_after,
  )


def bench_forward(
  repeats: int, batch: int = 8, length: int = 2048, d_model: int = 128, state_size: int = 512
) -> list[dict]:
  """One S5 layer (P stored states = state_size/2): dense vs masked vs compacted."""
  u = jax.random.normal(jax.random.key(0), (batch, length, d_model))
  dense = S5(d_model, state_size, blocks=8, bidirectional=True, rngs=nnx.Rngs(0))
  fwd = nnx.jit(lambda layer, u: layer(u))
  base = median_time(lambda: fwd(dense, u).block_until_ready(), repeats)
  rows = [
    dict(variant="dense", ratio=0.0, states=dense.state_shape[0], forward_s=base, speedup=1.0)
  ]
  for ratio in (0.25, 0.5, 0.75):
    n = dense.state_shape[0]
    keep = np.zeros(n, bool)
    keep[: int(n * (1 - ratio))] = True
    for variant in ("masked", "compacted"):
      layer = nnx.clone(dense)
      if variant == "masked":
        layer.mask_states(keep)
      else:
        layer.prune_states(keep)
      t = median_time(lambda: fwd(layer, u).block_until_ready(), repeats)
      rows.append(
        dict(
          variant=variant,
          ratio=ratio,
          states=int(keep.sum()),
          forward_s=t,
          speedup=base / t,
          limit=1 / (1 - ratio),
        )
      )
  return rows


def bench_memory(lengths, repeats: int, batch: int = 2) -> list[dict]:
  """Compiled memory and time of a Path-X S5 loss-and-gradient step vs sequence length.

  Memory is XLA's own account of the compiled program: arguments + outputs +
  temporaries (activations kept for the backward pass live in temporaries).
  """
  shape = TASK_SHAPES["pathx"]
  # Without remat: nnx.remat inside a pure jax.value_and_grad trips NNX's trace check.
  # The Path-X config rematerializes blocks, which only lowers these figures.
  model = build_model(shape, "s5")
  model.eval()  # frozen batch statistics: a pure function of the parameters
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, x, lens, y):
    m = nnx.merge(graphdef, params, rest)
    return optax.softmax_cross_entropy_with_integer_labels(m(x, lens), y).mean()

  grad_step = jax.jit(jax.value_and_grad(loss))
  rows = []
  for length in lengths:
    x, lens, y = make_batch(shape, batch, length)
    compiled = grad_step.lower(params, x, lens, y).compile()
    stats = compiled.memory_analysis()
    mem = (
      None
      if stats is None
      else int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)
    )
    step = median_time(lambda: jax.block_until_ready(compiled(params, x, lens, y)), repeats)
    rows.append(
      dict(
        seq_len=length,
        batch=batch,
        step_s=step,
        compiled_bytes=mem,
        bytes_per_token=None if mem is None else mem / (batch * length),
      )
    )
    logging.info("L=%d: step %.3f s, compiled memory %s bytes", length, step, mem)
  return rows


def train_step_markdown(rows: list[dict]) -> list[str]:
  lines = [
    f"## Train step (batch {rows[0]['batch']:d})",
    "",
    "| task | L | S5 seq/s | S4D seq/s |",
    "|---|---|---|---|",
  ]
  by = {(r["task"], r["ssm"]): r for r in rows}
  for task in dict.fromkeys(r["task"] for r in rows):
    lines.append(
      f"| {task} | {by[(task, 's5')]['seq_len']} | "
      f"{by[(task, 's5')]['sequences_per_s']:.2f} | "
      f"{by[(task, 's4d')]['sequences_per_s']:.2f} |"
    )
  return lines + [""]


def pruning_event_markdown(p: dict) -> list[str]:
  return [
    "## Pruning event (ListOps S5, 30% LAST, compact)",
    "",
    f"prune {p['prune_s']:.3f} s + recompile {p['recompile_s']:.3f} s = "
    f"{p['event_s']:.3f} s; one epoch ≈ {p['steps_per_epoch']} x {p['step_s']:.3f} s "
    f"= {p['epoch_s_estimated']:.0f} s; event = "
    f"{100 * p['event_fraction_of_epoch']:.3f}% of an epoch",
    "",
  ]


def forward_markdown(rows: list[dict]) -> list[str]:
  lines = [
    "## S5 layer forward: dense vs masked vs compacted",
    "",
    "| variant | pruned | states | forward ms | speedup | limit P/P' |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['variant']} | {100 * r['ratio']:.0f}% | {r['states']} | "
      f"{1e3 * r['forward_s']:.1f} | {r['speedup']:.2f}x | "
      f"{r.get('limit', 1.0):.2f}x |"
    )
  return lines + [""]


def memory_markdown(rows: list[dict]) -> list[str]:
  lines = [
    "## Path-X S5 loss+gradient vs sequence length (batch 2)",
    "",
    "| L | step s | compiled memory MiB | KiB per token |",
    "|---|---|---|---|",
  ]
  for r in rows:
    if r["compiled_bytes"] is None:
      mem = per = "-"
    else:
      mem, per = f"{r['compiled_bytes'] / 2**20:.0f}", f"{r['bytes_per_token'] / 1024:.1f}"
    lines.append(f"| {r['seq_len']} | {r['step_s']:.3f} | {mem} | {per} |")
  return lines + [""]
