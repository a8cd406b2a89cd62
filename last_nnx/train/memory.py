"""Does the train step fit? Asked of XLA before the first step runs.

The compiled train step's memory analysis gives the peak bytes one device
reserves for it (arguments + outputs - donated aliases + temporaries; nothing
is executed). `check_fits` compares that with the budget: ``train.memory_budget_gb``
when set, else the device's own limit (``memory_stats()['bytes_limit']`` on
GPU and TPU). A CPU reports no limit; there the budget defaults to the host's
available RAM, and the step is compiled for the check only when its activations
alone (batch x length x d_model x layers x 4 bytes, a floor of what the backward
pass keeps) reach a twentieth of it, so small runs pay no extra compile.

When the step does not fit, `DoesNotFit` says so in one line: the step's size,
the budget, the largest batch that fits (from a second compile at half the
micro-batch: ``bytes = fixed + per_example * batch``), and the switches that
help (``model.remat``, ``optim.grad_accum``). A RESOURCE_EXHAUSTED raised while
the step runs (no estimate, or one XLA got wrong) ends in the same line,
without the estimate (`out_of_memory_message`).
"""

from __future__ import annotations

import re

import jax
import numpy as np

GIB = 2**30
_ACTIVATION_SHARE = 20  # compile for the check once activations reach budget / this


class DoesNotFit(ValueError):
  """The train step needs more memory than the budget (message: one line)."""


def step_bytes(step, model, optimizer, carry, batch, *extra, **static) -> int:
  """Peak bytes per device of ``step(model, optimizer, carry, *batch, *extra, **static)``
  compiled (an `nnx.jit` function), from XLA's memory analysis; nothing runs.
  ``batch``: arrays or ``jax.ShapeDtypeStruct`` (with a sharding on a mesh)."""
  compiled = step.lower(model, optimizer, carry, *batch, *extra, **static).compile()
  m = compiled.memory_analysis()
  return int(
    m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  )


def host_available_bytes() -> int | None:
  """``MemAvailable`` of /proc/meminfo (Linux), else None."""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def budget(budget_gb: float) -> tuple[int | None, str]:
  """``(bytes, where the number comes from)``: the configured budget, the device's
  limit, or (a CPU) the host's available RAM; ``(None, ...)`` when none is known."""
  if budget_gb > 0:
    return int(budget_gb * GIB), f"train.memory_budget_gb={budget_gb:g}"
  device = jax.local_devices()[0]
  limit = (device.memory_stats() or {}).get("bytes_limit") if device.platform != "cpu" else None
  if limit:
    return int(limit), f"{device.device_kind} memory"
  available = host_available_bytes()
  return available, "the host's available RAM"


def activation_floor(config, micro_batch: int, seq_len: int) -> int:
  """Bytes the backward pass keeps at least: every layer's float32 output."""
  return (
    4 * micro_batch * seq_len * config.model.get("d_model", 1) * config.model.get("n_layers", 1)
  )


def abstract_batch(batch, size: int, mesh) -> tuple:
  """``jax.ShapeDtypeStruct`` of each array of ``batch`` with ``size`` rows (global),
  sharded along ``data`` on a mesh."""
  sharding = None
  if mesh is not None:
    from jax.sharding import NamedSharding, PartitionSpec

    sharding = NamedSharding(mesh, PartitionSpec("data"))
  return tuple(
    jax.ShapeDtypeStruct((size,) + np.shape(a)[1:], np.asarray(a).dtype, sharding=sharding)
    for a in batch
  )


def largest_fitting(fixed: float, per_example: float, limit: int, multiple: int) -> int:
  """Largest multiple of ``multiple`` whose ``fixed + per_example * batch`` fits ``limit``
  (0: not even one)."""
  if per_example <= 0:
    return 0
  rows = int((limit - fixed) // per_example)
  return max(0, rows - rows % multiple)


def check_fits(config, measure, micro_batch: int, seq_len: int, mesh_size: int = 1) -> int | None:
  """Raises `DoesNotFit` when the compiled step at ``micro_batch`` (global rows) exceeds
  the budget; returns its bytes (None when not measured).

  Args:
    config: the run's config (``train.memory_budget_gb``, batch sizes, model, optim).
    measure: ``rows -> bytes`` of the compiled step at that global micro-batch.
    micro_batch: the step's global rows (``train.batch_size // optim.grad_accum``).
    seq_len: the task's sequence length (for the activation floor).
    mesh_size: devices the batch is split over (a batch must divide evenly).
  """
  budget_gb = config.train.get("memory_budget_gb", 0.0)
  if budget_gb < 0:
    return None
  limit, source = budget(budget_gb)
  if limit is None:
    return None
  on_cpu = jax.local_devices()[0].platform == "cpu"
  if (
    on_cpu
    and budget_gb == 0
    and activation_floor(config, micro_batch, seq_len) * (_ACTIVATION_SHARE) < limit
  ):
    return None
  need = measure(micro_batch)
  if need <= limit:
    return need
  half = max(mesh_size, micro_batch // 2 - (micro_batch // 2) % mesh_size)
  fits = 0
  if half < micro_batch:
    per_example = (need - measure(half)) / (micro_batch - half)
    fits = largest_fitting(need - per_example * micro_batch, per_example, limit, mesh_size)
  raise DoesNotFit(too_big_message(config, need, limit, source, fits))


def too_big_message(
  config, need: int | None, limit: int | None, source: str, fits: int | None
) -> str:
  """The one line: the step's size against the budget, the largest batch that fits, and
  the switches that help."""
  t, accum = config.train, config.optim.grad_accum
  size = (
    f"needs {_size(need)} per device, over the {_size(limit)} of {source}"
    if need is not None and limit is not None
    else "ran out of device memory"
  )
  head = (
    f"the train step at train.batch_size={t.batch_size}"
    + (
      f" (micro-batches of {t.batch_size // accum}, optim.grad_accum={accum})" if accum > 1 else ""
    )
    + f" {size}"
  )
  helps = []
  if fits:
    helps.append(
      f"train.batch_size={fits * accum} fits"
      if fits * accum < t.batch_size
      else f"micro-batches of {fits} fit"
    )
    if fits < t.batch_size // accum:
      k = next(
        (
          k
          for k in range(accum + 1, t.batch_size + 1)
          if t.batch_size % k == 0 and t.batch_size // k <= fits
        ),
        None,
      )
      if k is not None:
        helps.append(
          f"optim.grad_accum={k} keeps the batch of {t.batch_size} in "
          f"micro-batches of {t.batch_size // k}"
        )
  elif fits == 0:
    helps.append(
      "not even the smallest batch fits: shrink the model (model.d_model, "
      "model.n_layers, model.ssm_config.state_size)"
    )
  else:
    helps.append(
      "lower train.batch_size, or raise optim.grad_accum (same batch, smaller micro-batches)"
    )
  if not config.model.get("remat", True):
    helps.append(
      "model.remat=True recomputes activations in the backward pass instead of storing them"
    )
  if source.startswith(("train.memory_budget_gb", "the host")):
    helps.append("train.memory_budget_gb sets the budget (-1: no check)")
  return f"{head}: {'; '.join(helps)}"


def _size(n: int) -> str:
  """``'3.2 GiB'``, ``'812.5 MiB'`` or ``'96.0 KiB'``."""
  for unit, scale in (("GiB", GIB), ("MiB", 2**20)):
    if n >= scale:
      return f"{n / scale:.1f} {unit}"
  return f"{n / 1024:.1f} KiB"


def out_of_memory(error: BaseException) -> bool:
  """Whether ``error`` is XLA running out of memory (RESOURCE_EXHAUSTED)."""
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text and ("memory" in text.lower() or "allocat" in text)


def out_of_memory_message(error: BaseException, config) -> str:
  """`too_big_message` for a RESOURCE_EXHAUSTED at run time (the size XLA asked for,
  when it says it)."""
  m = re.search(r"allocating (\d+) bytes", str(error))
  asked = f"asked for {_size(int(m.group(1)))} more and" if m else ""
  line = too_big_message(config, None, None, "", None)
  return line.replace("ran out of device memory", f"{asked} ran out of device memory".strip())


def check_run_fits(config, model, optimizer, task, mesh, reg, objective=None) -> int | None:
  """`check_fits` for the loop's train step (`steps.train_step`, with ``reg`` and the
  task's ``objective``) on ``task``'s batches."""
  from last_nnx.train import steps

  micro = config.train.batch_size // config.optim.grad_accum
  carry = steps.TrainCarry.start(model)
  template: list[tuple] = []

  def measure(rows: int) -> int:
    if not template:  # one batch read for its shapes, only when the check compiles
      template.append(next(iter(task.train_batches(0))))
    batch = abstract_batch(template[0], rows, mesh)
    static = dict(reg=reg) if objective is None else dict(reg=reg, objective=objective)
    return step_bytes(steps.train_step, model, optimizer, carry, batch, np.float32(0), **static)

  return check_fits(config, measure, micro, task.seq_len, mesh.size if mesh is not None else 1)
