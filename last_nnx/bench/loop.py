"""Loop overhead and step memory: what the training loop costs beyond its compiled step.

Three ways to feed the same compiled step (`last_nnx.train.steps.train_step_fn`):

* ``bare``: the donating step, model and optimizer bound
  (`steps.bound_train_step`), dispatched back to back on one device-resident
  batch, one sync at the end: the most the hardware gives for this step;
* ``old habits``: what the loop did before: each batch put on the device
  synchronously, no donation, and every parameter checked for NaN on the host
  after every step (a blocking device-to-host read per step);
* ``new habits``: what the loop does now: batches prefetched two ahead,
  donation, a bound step, finiteness latched on the device and read every
  ``log_every`` steps.

And the loop itself (`loop_overhead`): `train_and_evaluate` per-step time read
between its own sync points (so compilation, evaluation and checkpoints fall
outside the window), against ``bare`` at the same shape, interleaved.

`step_memory` reads XLA's compiled memory of the step (no execution) with and
without donation and rematerialization, and extrapolates the largest batch that
fits the device (memory is affine in the batch); `--verify` runs that batch.
"""

import contextlib
import functools
import importlib.util
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from last_nnx.bench.common import TASK_SHAPES, build_model, make_batch
from last_nnx.train import distributed, steps

_undonated_step = nnx.jit(steps.train_step_fn, static_argnames=("reg",))


@jax.jit
def _all_finite(params) -> jax.Array:
  return jnp.all(
    jnp.stack(
      [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(params)
        if jnp.issubdtype(x.dtype, jnp.inexact)
      ]
    )
  )


def _host_batches(batch, n: int):
  """``n`` host copies of ``batch`` (a loop reads new host arrays every step)."""
  host = tuple(np.asarray(a) for a in batch)
  return (tuple(a.copy() for a in host) for _ in range(n))


def _compiled_step(model_fn, batch, bound: bool = True):
  """A fresh model's donating step after one compiling call: ``(model, step, carry,
  device_batch)``, the step bound (`steps.bound_train_step`) or through `nnx.jit`
  with the model and optimizer as arguments."""
  model, optimizer = model_fn()
  step = (
    steps.bound_train_step(model, optimizer)
    if bound
    else functools.partial(steps.train_step, model, optimizer)
  )
  device_batch = tuple(jax.device_put(np.asarray(a)) for a in batch)
  carry = jax.block_until_ready(step(steps.TrainCarry.start(model), *device_batch))
  return model, step, carry, device_batch


def bare_step_s(model_fn, batch, n_steps: int) -> float:
  """Seconds per step of the donating step dispatched back to back on one
  device-resident batch, after one compiling step (one sync at the end)."""
  _, step, carry, device_batch = _compiled_step(model_fn, batch)
  t = time.perf_counter()
  for _ in range(n_steps):
    carry = step(carry, *device_batch)
  jax.block_until_ready(carry)
  return (time.perf_counter() - t) / n_steps


def dispatch_s(model_fn, batch, n_calls: int = 20) -> dict:
  """Host seconds to dispatch one step (the call returns before the step runs),
  for `train_step` called with the model and optimizer (`nnx.jit` walks their
  graphs every call) and for the bound step (walked once). Medians over
  ``n_calls``, each dispatched onto an idle device; on an accelerator a step
  shorter than its dispatch leaves the device waiting on the host."""
  out = {}
  for name in ("nnx_jit", "bound"):
    _, step, carry, device_batch = _compiled_step(model_fn, batch, bound=name == "bound")
    times = []
    for _ in range(n_calls):
      t = time.perf_counter()
      carry = step(carry, *device_batch)
      times.append(time.perf_counter() - t)
      jax.block_until_ready(carry)
    out[f"{name}_dispatch_s"] = float(np.median(times))
  return out


def feeding_habits(model_fn, batch, n_steps: int, log_every: int = 50) -> dict:
  """Seconds per step of the same step fed three ways (see the module docstring).

  Args:
    model_fn: ``() -> (model, optimizer)``, fresh each call.
    batch: ``(inputs, lengths, labels)`` host arrays.
    n_steps: timed steps per variant (after one compiling step).
  """
  out = {"bare_step_s": bare_step_s(model_fn, batch, n_steps)}
  device_batch = tuple(jax.device_put(np.asarray(a)) for a in batch)
  model, optimizer = model_fn()
  carry = steps.TrainCarry.start(model)
  jax.block_until_ready(_undonated_step(model, optimizer, carry, *device_batch))
  _all_finite(nnx.state(model, nnx.Param)).block_until_ready()
  t = time.perf_counter()
  for host in _host_batches(batch, n_steps):
    placed = tuple(jax.block_until_ready(jax.device_put(a)) for a in host)
    carry = _undonated_step(model, optimizer, carry, *placed)
    if not bool(_all_finite(nnx.state(model, nnx.Param))):
      raise FloatingPointError("diverged")
  jax.block_until_ready(carry)
  out["old_habits_step_s"] = (time.perf_counter() - t) / n_steps

  model, step, carry, _ = _compiled_step(model_fn, batch)
  steps.check_health(model, carry)
  t = time.perf_counter()
  for k, placed in enumerate(distributed.prefetch_to_device(_host_batches(batch, n_steps), None)):
    carry = step(carry, *placed)
    if (k + 1) % log_every == 0:
      steps.check_health(model, carry)
  steps.check_health(model, carry)
  out["new_habits_step_s"] = (time.perf_counter() - t) / n_steps
  out["old_vs_bare"] = out["bare_step_s"] / out["old_habits_step_s"]
  out["new_vs_bare"] = out["bare_step_s"] / out["new_habits_step_s"]
  return out


@contextlib.contextmanager
def _timed_sync_points(loop_module, times: list):
  """Records ``time.perf_counter()`` as each of the loop's sync points returns
  (`loop._checked_scalars`: every ``log_every_steps`` and at the epoch end)."""
  checked = loop_module._checked_scalars  # pylint: disable=protected-access

  def timed(*args, **kwargs):
    out = checked(*args, **kwargs)
    times.append(time.perf_counter())
    return out

  loop_module._checked_scalars = timed  # pylint: disable=protected-access
  try:
    yield
  finally:
    loop_module._checked_scalars = checked  # pylint: disable=protected-access


def loop_overhead(config, windows: int = 2, rounds: int = 3) -> dict:
  """`train_and_evaluate` steps/s against the bare step, same config and shape.

  The loop runs as configured (its ``log_every_steps``, prefetching, writers,
  progress reports); its per-step time is read between its own sync points,
  from the first one (after compilation) to ``windows`` logging intervals later,
  so start-up, evaluation and checkpoints are outside the window. Each round
  times one loop run, then the bare step for as many steps (interleaved, so a
  slow spell of the machine hits both); the figures are medians over rounds.
  Needs the data pipeline and CLU's writers (TensorFlow); ``config`` is a
  training config whose train split holds ``(windows + 1) * log_every_steps``
  batches.
  """
  from last_nnx import data  # pylint: disable=import-outside-toplevel
  from last_nnx.train import loop, run_state  # pylint: disable=import-outside-toplevel

  config = config.copy_and_resolve_references()
  config.pruning.schedule = "none"
  config.train.epochs = 1
  config.train.checkpoint_every_steps = 0
  every = config.train.log_every_steps
  config.train.max_steps_per_epoch = (windows + 1) * every
  n_steps = windows * every
  task = data.build_task(
    config.data,
    batch_size=config.train.batch_size,
    eval_batch_size=config.train.eval_batch_size,
    seed=config.seed,
  )
  if task.steps_per_epoch < config.train.max_steps_per_epoch:
    raise ValueError(
      f"the train split gives {task.steps_per_epoch} batches; the loop "
      f"overhead needs {config.train.max_steps_per_epoch}"
    )
  plan = loop.epoch_plan(config)
  batch = next(task.train_batches(0))
  model_fn = lambda: run_state.build(config, task, plan)[:2]
  loop_s, bare_s = [], []
  with tempfile.TemporaryDirectory() as root:
    for k in range(rounds):
      times = []
      with _timed_sync_points(loop, times):
        loop.train_and_evaluate(config, os.path.join(root, f"run{k}"))
      loop_s.append((times[windows] - times[0]) / n_steps)
      bare_s.append(bare_step_s(model_fn, batch, n_steps))
  loop_step, bare_step = float(np.median(loop_s)), float(np.median(bare_s))
  return dict(
    batch=config.train.batch_size,
    seq_len=task.seq_len,
    d_model=config.model.d_model,
    n_layers=config.model.n_layers,
    log_every_steps=every,
    window_steps=n_steps,
    rounds=rounds,
    loop_step_s=loop_step,
    bare_step_s=bare_step,
    loop_steps_per_s=1 / loop_step,
    bare_steps_per_s=1 / bare_step,
    loop_vs_bare=bare_step / loop_step,
    loop_step_s_rounds=loop_s,
    bare_step_s_rounds=bare_s,
  )


def compiled_step_bytes(model, optimizer, batch, *, donate: bool) -> int:
  """Peak device bytes XLA reserves for one train step (arguments + outputs -
  aliased + temporaries), from the compiled program; nothing is executed."""
  graphdef, state = nnx.split((model, optimizer))
  carry = steps.TrainCarry.start(model)

  def step(state, carry, inputs, lengths, labels):
    model, optimizer = nnx.merge(graphdef, state)
    carry = steps.train_step_fn(model, optimizer, carry, inputs, lengths, labels)
    return nnx.state((model, optimizer)), carry

  abstract = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)
  compiled = (
    jax.jit(step, donate_argnums=(0, 1) if donate else ())
    .lower(abstract(state), abstract(carry), *abstract(tuple(batch)))
    .compile()
  )
  m = compiled.memory_analysis()
  return int(
    m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  )


def largest_batch(make, batch_fn, *, donate: bool, limit_bytes: int, probes=(4, 8)) -> dict:
  """Largest batch whose compiled step fits ``limit_bytes``.

  Args:
    make: ``() -> (model, optimizer)``.
    batch_fn: ``batch_size -> (inputs, lengths, labels)`` (shapes are what count).
    probes: two batch sizes whose compiled memory fixes the affine fit
      ``bytes = fixed + per_example * batch``; the prediction is then compiled
      and stepped down by 5% until it fits.
  """
  model, optimizer = make()
  sizes = [compiled_step_bytes(model, optimizer, batch_fn(b), donate=donate) for b in probes]
  per_example = (sizes[1] - sizes[0]) / (probes[1] - probes[0])
  fixed = sizes[0] - per_example * probes[0]
  guess = max(1, int((limit_bytes - fixed) // max(per_example, 1)))
  while True:
    need = compiled_step_bytes(model, optimizer, batch_fn(guess), donate=donate)
    if need <= limit_bytes or guess == 1:
      break
    guess = max(1, int(guess * 0.95))
  logging.info(
    "largest batch (donate=%s): %d (%.1f GiB of %.1f)",
    donate,
    guess,
    need / 2**30,
    limit_bytes / 2**30,
  )
  return dict(
    donate=donate,
    largest_batch=guess,
    bytes_at_largest=need,
    per_example_bytes=per_example,
    fixed_bytes=fixed,
    probes=dict(zip(probes, sizes)),
  )


def device_memory_limit() -> int | None:
  """Bytes the default device lets XLA allocate (None where the backend does not say)."""
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def adam_optimizer(model) -> nnx.Optimizer:
  return nnx.Optimizer(model, optax.adamw(1e-3, weight_decay=0.05), wrt=nnx.Param)


def bench_loop_section(batch: int, repeats: int) -> dict:
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
    config.data.synthetic.update(
      dict(seq_len=512, max_length=512, n_train=n_train, n_val=16, n_test=16)
    )
    out["loop"] = loop_overhead(config, windows=windows, rounds=repeats)
    logging.info("loop: %.1f%% of the bare step's speed", 100 * out["loop"]["loop_vs_bare"])
  else:
    logging.warning(
      "TensorFlow is not installed: the real loop (data pipeline, CLU "
      "writers) is not benchmarked here; feeding habits only"
    )
  shape = TASK_SHAPES["listops"]
  make = lambda: (lambda m: (m, adam_optimizer(m)))(build_model(shape, "s5"))
  habits = feeding_habits(make, make_batch(shape, batch), n_steps=10 * repeats)
  out["habits_listops"] = dict(habits, batch=batch, seq_len=shape["L"])
  out["dispatch_listops"] = dispatch_s(make, make_batch(shape, batch))
  return out


def loop_markdown(r: dict) -> list[str]:
  lines = ["## Training loop overhead", ""]
  if "loop" in r:
    o = r["loop"]
    lines += [
      f"`train_and_evaluate` vs the bare donated step, same shape (S5, H={o['d_model']}, "
      f"{o['n_layers']} layers, L={o['seq_len']}, batch {o['batch']}): loop "
      f"{o['loop_steps_per_s']:.2f} steps/s, bare {o['bare_steps_per_s']:.2f} steps/s: "
      f"**{100 * o['loop_vs_bare']:.1f}%** of the bare step's speed. The loop's "
      f"time per step is read between its own sync points ({o['window_steps']} steps, "
      f"logging every {o['log_every_steps']}, so compilation, evaluation and "
      f"checkpoints are outside the window), each round followed by the bare step for "
      f"as many steps; medians over {o['rounds']} rounds.",
      "",
    ]
  h = r["habits_listops"]
  lines += [
    f"Feeding the ListOps-shape S5 step (L={h['seq_len']}, batch {h['batch']}):",
    "",
    "| feeding | s/step | share of bare speed |",
    "|---|---|---|",
    f"| bare (resident batch, back to back) | {h['bare_step_s']:.4f} | 100% |",
    f"| old habits (sync put, no donation, host NaN check per step) | "
    f"{h['old_habits_step_s']:.4f} | {100 * h['old_vs_bare']:.1f}% |",
    f"| new habits (prefetch 2, donation, bound step, device-side NaN latch) | "
    f"{h['new_habits_step_s']:.4f} | {100 * h['new_vs_bare']:.1f}% |",
    "",
  ]
  if "dispatch_listops" in r:
    d = r["dispatch_listops"]
    lines += [
      f"Host time to dispatch that step (the call returns before the step runs): "
      f"{1e3 * d['nnx_jit_dispatch_s']:.1f} ms through `nnx.jit` with the model and "
      f"optimizer as arguments (their graphs walked on every call), "
      f"{1e3 * d['bound_dispatch_s']:.1f} ms for the bound step the loop uses "
      "(`steps.bound_train_step`).",
      "",
    ]
  return lines
