r"""Benchmarks: ``make bench`` / ``python -m last_nnx.bench --out bench``.

Writes ``bench/results.json`` and ``bench/results.md``:

* ``train_step``: sequences/s of one training step (S5 and S4D) at each task's
  model shape and sequence length, small batch;
* ``pruning_event``: wall time of a pruning event (scores, allocation,
  compaction, optimizer surgery, recompilation of the next step) against one
  epoch of the ListOps configuration (estimated as steps/epoch x step time);
* ``forward_latency``: one S5 layer, dense vs masked vs compacted at 25/50/75%
  pruning (masking saves nothing; compaction approaches P/P');
* ``memory``: XLA's compiled memory (arguments + temporaries) and step time of
  a Path-X-shaped S5 model vs sequence length 1k-16k;
* ``streaming``: per-token latency of the exported streaming step and exported
  full-sequence throughput, dense vs compacted (`last_nnx.bench_deploy`);
* ``loop``: the training loop's steps/s against the bare compiled step at the
  same shape, and the step fed with the loop's old and new habits
  (`last_nnx.bench_loop`);
* ``capacity``: the largest Path-X-shape batch whose train step fits the
  device, with and without donation and rematerialization.

``--sections streaming`` (any subset) reruns only those sections and keeps the
others' figures from the existing ``results.json``.

Every ratio is measured within one run on this machine (CPU).
"""

import importlib.util
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx

from last_nnx import bench_deploy, pruning
from last_nnx import bench_loop as bench_loop_lib
from last_nnx.model import SequenceModel
from last_nnx.ssm import S5
from last_nnx.train.steps import TrainCarry, train_step

TASK_SHAPES = {  # from experiments/configs (S5 settings); vocab None = continuous input
    "listops": dict(L=2048, vocab=17, classes=10, layers=8, H=128, P=16, J=8, s4d_H=128),
    "text": dict(L=4096, vocab=257, classes=2, layers=6, H=256, P=192, J=12, s4d_H=256),
    "retrieval": dict(L=4000, vocab=257, classes=2, layers=6, H=128, P=256, J=16, s4d_H=256,
                      retrieval=True),
    "image": dict(L=1024, vocab=None, classes=10, layers=6, H=512, P=384, J=3, s4d_H=512),
    "pathfinder": dict(L=1024, vocab=None, classes=2, layers=6, H=192, P=256, J=8, s4d_H=256),
    "pathx": dict(L=16384, vocab=None, classes=2, layers=6, H=128, P=256, J=16, s4d_H=256),
    "speech": dict(L=16000, vocab=None, classes=10, layers=6, H=96, P=128, J=16, s4d_H=96),
}


def _model(shape, ssm: str, seed: int = 0, remat: bool = False) -> SequenceModel:
  if ssm == "s5":
    d_model, ssm_config = shape["H"], dict(state_size=shape["P"], blocks=shape["J"],
                                           bidirectional=True)
  else:
    d_model, ssm_config = shape["s4d_H"], dict(state_size=64, bidirectional=True)
  return SequenceModel(n_classes=shape["classes"], d_model=d_model, n_layers=shape["layers"],
                       ssm=ssm, ssm_config=ssm_config, vocab_size=shape["vocab"],
                       retrieval=shape.get("retrieval", False), remat=remat,
                       rngs=nnx.Rngs(seed))


def _train_step(model, optimizer, x, lengths, y):
  """One (donating) step of the training loop's own `train_step`."""
  return train_step(model, optimizer, TrainCarry.start(model), x, lengths, y)


def _batch(shape, batch: int, length: int | None = None):
  length = length or shape["L"]
  rng = np.random.default_rng(0)
  if shape.get("retrieval"):
    x = rng.integers(1, shape["vocab"], (batch, 2, length)).astype(np.int32)
    lengths = np.full((batch, 2), length, np.int32)
  elif shape["vocab"]:
    x = rng.integers(1, shape["vocab"], (batch, length)).astype(np.int32)
    lengths = np.full(batch, length, np.int32)
  else:
    x = rng.normal(size=(batch, length, 1)).astype(np.float32)
    lengths = np.full(batch, length, np.int32)
  return jnp.asarray(x), jnp.asarray(lengths), jnp.asarray(np.arange(batch) % shape["classes"])


def _time(fn, repeats: int) -> float:
  """Median wall time of ``fn()`` (which must block) after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def bench_train_steps(tasks, batch: int, repeats: int) -> list[dict]:
  rows = []
  for task in tasks:
    shape = TASK_SHAPES[task]
    for ssm in ("s5", "s4d"):
      model = _model(shape, ssm)
      optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
      x, lengths, y = _batch(shape, batch)
      t0 = time.perf_counter()
      jax.block_until_ready(_train_step(model, optimizer, x, lengths, y))
      compile_s = time.perf_counter() - t0
      step = _time(lambda: jax.block_until_ready(_train_step(model, optimizer, x, lengths, y)),
                   repeats)
      rows.append(dict(task=task, ssm=ssm, batch=batch, seq_len=shape["L"], step_s=step,
                       sequences_per_s=batch / step, first_step_s=compile_s))
      logging.info("train step %s/%s: %.3f s (%.2f seq/s)", task, ssm, step, batch / step)
  return rows


def bench_pruning_event(repeats: int) -> dict:
  """ListOps config: pruning event cost vs one (estimated) epoch of 96000/50 steps."""
  shape = TASK_SHAPES["listops"]
  batch, steps_per_epoch = 50, 96000 // 50
  model = _model(shape, "s5")
  optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
  x, lengths, y = _batch(shape, batch)
  step = _time(lambda: jax.block_until_ready(_train_step(model, optimizer, x, lengths, y)), repeats)
  t0 = time.perf_counter()
  report = pruning.prune(model, 0.3, criterion="last", mode="compact", optimizer=optimizer)
  t1 = time.perf_counter()
  jax.block_until_ready(_train_step(model, optimizer, x, lengths, y))  # retrace + compile
  t2 = time.perf_counter()
  event = (t1 - t0) + max(0.0, (t2 - t1) - step)
  epoch = steps_per_epoch * step
  return dict(prune_s=t1 - t0, recompile_s=max(0.0, (t2 - t1) - step), event_s=event,
              step_s=step, steps_per_epoch=steps_per_epoch, epoch_s_estimated=epoch,
              event_fraction_of_epoch=event / epoch, states_after=report.states_after)


def bench_forward(repeats: int, batch: int = 8, length: int = 2048, d_model: int = 128,
                  state_size: int = 512) -> list[dict]:
  """One S5 layer (P stored states = state_size/2): dense vs masked vs compacted."""
  u = jax.random.normal(jax.random.key(0), (batch, length, d_model))
  dense = S5(d_model, state_size, blocks=8, bidirectional=True, rngs=nnx.Rngs(0))
  fwd = nnx.jit(lambda layer, u: layer(u))
  base = _time(lambda: fwd(dense, u).block_until_ready(), repeats)
  rows = [dict(variant="dense", ratio=0.0, states=dense.state_shape[0], forward_s=base,
               speedup=1.0)]
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
      t = _time(lambda: fwd(layer, u).block_until_ready(), repeats)
      rows.append(dict(variant=variant, ratio=ratio, states=int(keep.sum()), forward_s=t,
                       speedup=base / t, limit=1 / (1 - ratio)))
  return rows


def bench_memory(lengths, repeats: int, batch: int = 2) -> list[dict]:
  """Compiled memory and time of a Path-X S5 loss-and-gradient step vs sequence length.

  Memory is XLA's own account of the compiled program: arguments + outputs +
  temporaries (activations kept for the backward pass live in temporaries).
  """
  shape = TASK_SHAPES["pathx"]
  # Without remat: nnx.remat inside a pure jax.value_and_grad trips NNX's trace check.
  # The Path-X config rematerializes blocks, which only lowers these figures.
  model = _model(shape, "s5")
  model.eval()  # frozen batch statistics: a pure function of the parameters
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params, x, lens, y):
    m = nnx.merge(graphdef, params, rest)
    return optax.softmax_cross_entropy_with_integer_labels(m(x, lens), y).mean()
  grad_step = jax.jit(jax.value_and_grad(loss))
  rows = []
  for length in lengths:
    x, lens, y = _batch(shape, batch, length)
    compiled = grad_step.lower(params, x, lens, y).compile()
    stats = compiled.memory_analysis()
    mem = None if stats is None else int(stats.temp_size_in_bytes + stats.argument_size_in_bytes
                                         + stats.output_size_in_bytes)
    step = _time(lambda: jax.block_until_ready(compiled(params, x, lens, y)), repeats)
    rows.append(dict(seq_len=length, batch=batch, step_s=step, compiled_bytes=mem,
                     bytes_per_token=None if mem is None else mem / (batch * length)))
    logging.info("L=%d: step %.3f s, compiled memory %s bytes", length, step, mem)
  return rows


def _markdown(results: dict) -> str:
  lines = [f"# last-nnx benchmarks ({results['machine']})", ""]
  if "train_step" in results:
    lines += ["## Train step (batch %d)" % results["train_step"][0]["batch"], "",
              "| task | L | S5 seq/s | S4D seq/s |", "|---|---|---|---|"]
    by = {(r["task"], r["ssm"]): r for r in results["train_step"]}
    for task in dict.fromkeys(r["task"] for r in results["train_step"]):
      lines.append(f"| {task} | {by[(task, 's5')]['seq_len']} | "
                   f"{by[(task, 's5')]['sequences_per_s']:.2f} | "
                   f"{by[(task, 's4d')]['sequences_per_s']:.2f} |")
    lines.append("")
  if "pruning_event" in results:
    p = results["pruning_event"]
    lines += ["## Pruning event (ListOps S5, 30% LAST, compact)", "",
              f"prune {p['prune_s']:.3f} s + recompile {p['recompile_s']:.3f} s = "
              f"{p['event_s']:.3f} s; one epoch ≈ {p['steps_per_epoch']} x {p['step_s']:.3f} s "
              f"= {p['epoch_s_estimated']:.0f} s; event = "
              f"{100 * p['event_fraction_of_epoch']:.3f}% of an epoch", ""]
  if "forward_latency" in results:
    lines += ["## S5 layer forward: dense vs masked vs compacted", "",
              "| variant | pruned | states | forward ms | speedup | limit P/P' |",
              "|---|---|---|---|---|---|"]
    for r in results["forward_latency"]:
      lines.append(f"| {r['variant']} | {100 * r['ratio']:.0f}% | {r['states']} | "
                   f"{1e3 * r['forward_s']:.1f} | {r['speedup']:.2f}x | "
                   f"{r.get('limit', 1.0):.2f}x |")
    lines.append("")
  if "memory" in results:
    lines += ["## Path-X S5 loss+gradient vs sequence length (batch 2)", "",
              "| L | step s | compiled memory MiB | KiB per token |", "|---|---|---|---|"]
    for r in results["memory"]:
      if r["compiled_bytes"] is None:
        mem = per = "-"
      else:
        mem, per = f"{r['compiled_bytes'] / 2**20:.0f}", f"{r['bytes_per_token'] / 1024:.1f}"
      lines.append(f"| {r['seq_len']} | {r['step_s']:.3f} | {mem} | {per} |")
    lines.append("")
  if "loop" in results:
    lines += _loop_markdown(results["loop"])
  if "capacity" in results:
    lines += _capacity_markdown(results["capacity"])
  if "streaming" in results:
    lines += bench_deploy.markdown(results["streaming"])
  return "\n".join(lines).rstrip() + "\n"


def bench_loop(batch: int, repeats: int) -> dict:
  """Loop overhead (CPU: the real loop; anywhere: the feeding habits at ListOps shape)."""
  out = {}
  if importlib.util.find_spec("tensorflow") is not None:  # the loop's data and writers
    from experiments.configs import listops
    config = listops.get_config("s5,smoke")
    config.data.cache_dir = os.path.join(tempfile.gettempdir(), "last_nnx_bench_cache")
    config.model.d_model, config.model.n_layers = 64, 4
    config.model.ssm_config.state_size = 32
    config.train.batch_size = config.train.eval_batch_size = 16
    config.train.log_every_steps = 50  # the default (smoke logs every 4 steps)
    config.train.eval_test = False
    windows = 2  # timed steps: windows * log_every_steps, after the first sync point
    n_train = (windows + 1) * config.train.log_every_steps * config.train.batch_size
    config.data.synthetic.update(dict(seq_len=512, max_length=512, n_train=n_train, n_val=16,
                                      n_test=16))
    out["loop"] = bench_loop_lib.loop_overhead(config, windows=windows, rounds=repeats)
    logging.info("loop: %.1f%% of the bare step's speed", 100 * out["loop"]["loop_vs_bare"])
  else:
    logging.warning("TensorFlow is not installed: the real loop (data pipeline, CLU "
                    "writers) is not benchmarked here; feeding habits only")
  shape = TASK_SHAPES["listops"]
  make = lambda: (lambda m: (m, bench_loop_lib.adam_optimizer(m)))(_model(shape, "s5"))
  habits = bench_loop_lib.feeding_habits(make, _batch(shape, batch), n_steps=10 * repeats)
  out["habits_listops"] = dict(habits, batch=batch, seq_len=shape["L"])
  out["dispatch_listops"] = bench_loop_lib.dispatch_s(make, _batch(shape, batch))
  return out


def _loop_markdown(r: dict) -> list[str]:
  lines = ["## Training loop overhead", ""]
  if "loop" in r:
    o = r["loop"]
    lines += [f"`train_and_evaluate` vs the bare donated step, same shape (S5, H={o['d_model']}, "
              f"{o['n_layers']} layers, L={o['seq_len']}, batch {o['batch']}): loop "
              f"{o['loop_steps_per_s']:.2f} steps/s, bare {o['bare_steps_per_s']:.2f} steps/s: "
              f"**{100 * o['loop_vs_bare']:.1f}%** of the bare step's speed. The loop's "
              f"time per step is read between its own sync points ({o['window_steps']} steps, "
              f"logging every {o['log_every_steps']}, so compilation, evaluation and "
              f"checkpoints are outside the window), each round followed by the bare step for "
              f"as many steps; medians over {o['rounds']} rounds.", ""]
  h = r["habits_listops"]
  lines += [f"Feeding the ListOps-shape S5 step (L={h['seq_len']}, batch {h['batch']}):", "",
            "| feeding | s/step | share of bare speed |", "|---|---|---|",
            f"| bare (resident batch, back to back) | {h['bare_step_s']:.4f} | 100% |",
            f"| old habits (sync put, no donation, host NaN check per step) | "
            f"{h['old_habits_step_s']:.4f} | {100 * h['old_vs_bare']:.1f}% |",
            f"| new habits (prefetch 2, donation, bound step, device-side NaN latch) | "
            f"{h['new_habits_step_s']:.4f} | {100 * h['new_vs_bare']:.1f}% |", ""]
  if "dispatch_listops" in r:
    d = r["dispatch_listops"]
    lines += [f"Host time to dispatch that step (the call returns before the step runs): "
              f"{1e3 * d['nnx_jit_dispatch_s']:.1f} ms through `nnx.jit` with the model and "
              f"optimizer as arguments (their graphs walked on every call), "
              f"{1e3 * d['bound_dispatch_s']:.1f} ms for the bound step the loop uses "
              "(`steps.bound_train_step`).", ""]
  return lines


def bench_capacity(capacity_gib: float, batch_probes=(4, 8)) -> dict:
  """Largest Path-X-shape S5 batch whose train step fits, with/without donation and remat."""
  shape = TASK_SHAPES["pathx"]
  limit = bench_loop_lib.device_memory_limit()
  source = "device bytes_limit"
  if limit is None:
    limit, source = int(capacity_gib * 2**30), f"nominal {capacity_gib:g} GiB"
  rows = []
  for remat in (False, True):
    make = lambda: (lambda m: (m, bench_loop_lib.adam_optimizer(m)))(
        _model(shape, "s5", remat=remat))
    for donate in (False, True):
      row = bench_loop_lib.largest_batch(make, lambda b: _batch(shape, b), donate=donate,
                                         limit_bytes=limit, probes=batch_probes)
      rows.append(dict(row, remat=remat))
  return dict(limit_bytes=limit, limit_source=source, seq_len=shape["L"], rows=rows)


def _capacity_markdown(r: dict) -> list[str]:
  lines = [f"## Largest Path-X batch (S5, L={r['seq_len']}; {r['limit_source']}: "
           f"{r['limit_bytes'] / 2**30:.1f} GiB; from XLA's compiled memory)", "",
           "| remat | donation | largest batch | GiB at it | MiB per example |",
           "|---|---|---|---|---|"]
  for row in r["rows"]:
    lines.append(f"| {'yes' if row['remat'] else 'no'} | {'yes' if row['donate'] else 'no'} | "
                 f"{row['largest_batch']} | {row['bytes_at_largest'] / 2**30:.1f} | "
                 f"{row['per_example_bytes'] / 2**20:.0f} |")
  return lines + [""]


SECTIONS = ("forward", "pruning", "memory", "train", "streaming", "loop", "capacity")


def _define_flags() -> None:
  flags.DEFINE_string("out", "bench", "Output directory.")
  flags.DEFINE_list("tasks", list(TASK_SHAPES), "Tasks for the train-step benchmark.")
  flags.DEFINE_integer("batch", 2, "Batch size of the train-step benchmark.")
  flags.DEFINE_integer("repeats", 3, "Timed repetitions (median).")
  flags.DEFINE_list("lengths", ["1024", "2048", "4096", "8192", "16384"], "Memory benchmark L.")
  flags.DEFINE_list("sections", list(SECTIONS), "Sections to run; the others keep their "
                    "figures from an existing results.json.")
  flags.DEFINE_float("capacity_gib", 16.0, "Memory assumed by the capacity section where the "
                     "device does not report its limit (CPU).")


def _validate_flags() -> None:
  """Unknown tasks or bad lengths fail in one line, before minutes of benchmarks."""
  from last_nnx import config_errors
  FLAGS = flags.FLAGS
  config_errors.check_choices("tasks", FLAGS.tasks, list(TASK_SHAPES))
  config_errors.parse_numbers("lengths", FLAGS.lengths, int, low=1)
  config_errors.parse_numbers("batch", [FLAGS.batch], int, low=1)
  config_errors.parse_numbers("repeats", [FLAGS.repeats], int, low=1)


def main(argv):
  del argv
  FLAGS = flags.FLAGS
  os.makedirs(FLAGS.out, exist_ok=True)
  t0 = time.time()
  sections = set(FLAGS.sections)
  if sections - set(SECTIONS):
    raise app.UsageError(f"unknown --sections {sorted(sections - set(SECTIONS))}; "
                         f"expected a subset of {SECTIONS}")
  results = {}
  if sections != set(SECTIONS) and os.path.exists(os.path.join(FLAGS.out, "results.json")):
    with open(os.path.join(FLAGS.out, "results.json")) as f:
      results = json.load(f)  # a partial run replaces its own sections only
  results["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} "
                        f"({jax.default_backend()})")
  if "forward" in sections:
    results["forward_latency"] = bench_forward(FLAGS.repeats)
  if "pruning" in sections:
    results["pruning_event"] = bench_pruning_event(FLAGS.repeats)
  if "memory" in sections:
    results["memory"] = bench_memory([int(l) for l in FLAGS.lengths], FLAGS.repeats)
  if "train" in sections:
    results["train_step"] = bench_train_steps(FLAGS.tasks, FLAGS.batch, FLAGS.repeats)
  if "streaming" in sections:
    results["streaming"] = bench_deploy.bench_streaming(max(FLAGS.repeats, 5))
  if "loop" in sections:
    results["loop"] = bench_loop(FLAGS.batch, FLAGS.repeats)
  if "capacity" in sections:
    results["capacity"] = bench_capacity(FLAGS.capacity_gib)
  results["wall_time_s" if sections == set(SECTIONS) else "last_partial_run_s"] = time.time() - t0
  with open(os.path.join(FLAGS.out, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  text = _markdown(results)
  with open(os.path.join(FLAGS.out, "results.md"), "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  from last_nnx import config_errors
  app.run(main, flags_parser=config_errors.flags_parser(validate=_validate_flags))
