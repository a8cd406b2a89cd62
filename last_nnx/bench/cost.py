"""Section ``cost``: XLA's cost model of the compiled S5 train step and forward.

For each task shape (ListOps, Path-X) and scan method (``associative``, what
``auto`` picks on accelerators; ``sequential``, its CPU pick), the train step
(`last_nnx.train.steps.train_step`: loss, gradient, optimizer update, metrics,
finiteness latch) and the forward (`last_nnx.train.steps.eval_step`, eval mode)
are lowered and compiled, not run, and reported as:

* ``flops`` and ``bytes_accessed``: ``compiled.cost_analysis()`` (XLA's
  per-instruction estimate summed over the program; on an accelerator an SSM
  step is bound by memory traffic, so bytes are the figure to watch);
* ``fusions``: fusion instructions in the compiled HLO text (kernels, roughly).

Two habits of XLA's count to keep in mind: a complex multiply-add counts as 2 flops,
like a real one (it is 8 real flops), so a complex matmul rewritten as real ones
"costs" more flops for the same work; and a while loop's body is counted once (the
sequential scan's per-step flops are left out), so compare the associative figures
with the paper's step, which scans associatively too. Bytes are each top-level
instruction's operands plus its output: a fusion that reads a slice of a buffer is
charged the whole buffer.

The models use the flags of the paper's run scripts (`TASK_FLAGS`), as
``bench/reference_step.py`` does, which reports the paper's own step (msgwak/LAST)
beside ours with the same figures (``--cost``); this section adds those figures
and the ratios when the reference code is in ``.ref/LAST`` (``reference`` says
why not otherwise). Figures are the CPU backend's unless the section runs on an
accelerator (``backend``).
"""

import importlib.util
import os
import re
import types

from absl import logging

# Flags of the reference's run scripts (bin/run_experiments/run_lra_{listops,pathx}.sh,
# run_train.py defaults where unset). ``batch``: the scripts' batch size; ``padded``,
# ``ref_in_dim``: how the reference encodes the inputs (bench/reference_step.py).
TASK_FLAGS = {
  "listops": dict(
    c_init="lecun_normal",
    activation="half_glu2",
    bn_momentum=0.95,
    dt_min=1e-3,
    opt_config="BfastandCdecay",
    ssm_lr=1e-3,
    lr_factor=3.0,
    weight_decay=0.04,
    batch=50,
    padded=True,
    ref_in_dim=20,
  ),
  "pathx": dict(
    c_init="complex_normal",
    activation="half_glu1",
    bn_momentum=0.9,
    dt_min=1e-4,
    opt_config="BandCdecay",
    ssm_lr=6e-4,
    lr_factor=3.0,
    weight_decay=0.06,
    batch=32,
    padded=False,
    ref_in_dim=1,
  ),
}
# Batch of the cost figures: 8 at ListOps (the batch they were first compared at); 2 at
# Path-X, where a sequence is 8x longer (the figures scale about linearly in the batch).
COST_BATCH = {"listops": 8, "pathx": 2}
SCAN_METHODS = ("associative", "sequential")
PROGRAMS = ("train_step", "forward")
_FUSION = re.compile(r" fusion\(")
REFERENCE_SCRIPT = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
  "bench",
  "reference_step.py",
)


def compiled_cost(compiled) -> dict:
  """``{"flops", "bytes_accessed", "fusions"}`` of a ``jax.stages.Compiled``."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per device program
    analysis = analysis[0]
  return dict(
    flops=float(analysis.get("flops", 0.0)),
    bytes_accessed=float(analysis.get("bytes accessed", 0.0)),
    fusions=len(_FUSION.findall(compiled.as_text())),
  )


def optim_config(flags: dict) -> types.SimpleNamespace:
  """The optimizer section `make_optimizer` reads, from a task's `TASK_FLAGS`."""
  return types.SimpleNamespace(
    ssm_lr=flags["ssm_lr"],
    lr_factor=flags["lr_factor"],
    weight_decay=flags["weight_decay"],
    opt_config=flags["opt_config"],
    dt_global=False,
    warmup_epochs=1.0,
    lr_min=0.0,
    schedule="cosine",
    grad_clip=0.0,
    grad_accum=1,
  )


def build_ours(shape: dict, flags: dict, scan_method: str = "auto", remat: bool = False):
  """Our bidirectional S5 `SequenceModel` and its optimizer at a task's shape and flags."""
  from flax import nnx

  from last_nnx.model import SequenceModel
  from last_nnx.train.optim import make_optimizer

  ssm_config = dict(
    state_size=shape["P"],
    blocks=shape["J"],
    bidirectional=True,
    conj_sym=True,
    c_init=flags["c_init"],
    dt_min=flags["dt_min"],
    scan_method=scan_method,
  )
  model = SequenceModel(
    n_classes=shape["classes"],
    d_model=shape["H"],
    n_layers=shape["layers"],
    ssm="s5",
    ssm_config=ssm_config,
    vocab_size=shape["vocab"],
    activation=flags["activation"],
    bn_momentum=flags["bn_momentum"],
    remat=remat,
    rngs=nnx.Rngs(0),
  )
  optimizer, _ = make_optimizer(
    model, optim_config(flags), total_steps=10_000, steps_per_epoch=1_000
  )
  return model, optimizer


def _our_inputs(shape: dict, batch: int):
  """Abstract ``(x, lengths, labels)``: compiling needs shapes, not values."""
  import jax
  import jax.numpy as jnp

  L = shape["L"]
  x = (
    jax.ShapeDtypeStruct((batch, L), jnp.int32)
    if shape["vocab"]
    else jax.ShapeDtypeStruct((batch, L, 1), jnp.float32)
  )
  return x, jax.ShapeDtypeStruct((batch,), jnp.int32), jax.ShapeDtypeStruct((batch,), jnp.int32)


def ours_cost(shape: dict, flags: dict, batch: int, scan_method: str) -> dict:
  """``{"train_step": cost, "forward": cost}`` of our compiled programs (`compiled_cost`)."""
  import jax
  import jax.numpy as jnp

  from last_nnx.train import steps

  model, optimizer = build_ours(shape, flags, scan_method)
  x, lengths, y = _our_inputs(shape, batch)
  carry = steps.TrainCarry.start(model)
  out = {
    "train_step": compiled_cost(
      steps.train_step.lower(model, optimizer, carry, x, lengths, y).compile()
    )
  }
  model.eval()
  mask = jax.ShapeDtypeStruct((batch,), jnp.bool_)
  out["forward"] = compiled_cost(steps.eval_step.lower(model, x, lengths, y, mask).compile())
  return out


def task_shape(task: str, length: int | None = None, layers: int | None = None) -> dict:
  """A task's `TASK_SHAPES` entry, optionally shortened (tests, quick checks)."""
  from last_nnx.bench.shapes import TASK_SHAPES

  shape = dict(TASK_SHAPES[task])
  if length:
    shape["L"] = length
  if layers:
    shape["layers"] = min(shape["layers"], layers)
  return shape


def _reference_module():
  """``bench/reference_step.py`` as a module, or a string saying why it is unavailable."""
  root = os.path.dirname(os.path.dirname(REFERENCE_SCRIPT))
  if not os.path.exists(REFERENCE_SCRIPT):
    return f"no {REFERENCE_SCRIPT}"
  if not os.path.isdir(os.path.join(root, ".ref", "LAST", "s5")):
    return "absent: no reference code in .ref/LAST (run bench/fetch_reference.sh REPO)"
  spec = importlib.util.spec_from_file_location("reference_step", REFERENCE_SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def ratios(ours: dict, reference: dict) -> dict:
  """``ours / reference`` per program and figure (< 1: ours smaller)."""
  return {
    program: {
      k: ours[program][k] / reference[program][k]
      for k in ("flops", "bytes_accessed", "fusions")
      if reference[program][k]
    }
    for program in PROGRAMS
    if program in ours and program in reference
  }


def bench_cost(
  tasks=("listops", "pathx"),
  methods=SCAN_METHODS,
  batches=None,
  length: int | None = None,
  layers: int | None = None,
  reference: bool = True,
) -> dict:
  """The section's result: per task, our costs per scan method and the reference's.

  Args:
    tasks: task names; those without `TASK_FLAGS` (the paper's run scripts cover
      ListOps and Path-X) are listed in ``skipped_tasks``.
    methods: scan methods of ours.
    batches: ``{task: batch}`` (default `COST_BATCH`).
    length, layers: shorten the shapes (tests); None: the task's own.
    reference: also measure the paper's step when ``.ref/LAST`` holds it (True), or
      ``reference(shape, flags, batch) -> {"train_step", "forward"}`` to call.
  """
  import jax

  batches = dict(COST_BATCH, **(batches or {}))
  if callable(reference):
    measure_reference = reference
  else:
    module = _reference_module() if reference else "not requested"
    measure_reference = module if isinstance(module, str) else module.reference_cost
  result = dict(
    backend=jax.default_backend(),
    programs=list(PROGRAMS),
    tasks={},
    reference=measure_reference if isinstance(measure_reference, str) else "msgwak/LAST",
    skipped_tasks=[t for t in tasks if t not in TASK_FLAGS],
  )
  for task in (t for t in tasks if t in TASK_FLAGS):
    shape, flags = task_shape(task, length, layers), TASK_FLAGS[task]
    batch = batches[task]
    row = dict(
      batch=batch,
      seq_len=shape["L"],
      layers=shape["layers"],
      d_model=shape["H"],
      state_size=shape["P"],
      blocks=shape["J"],
      ours={},
    )
    for method in methods:
      row["ours"][method] = ours_cost(shape, flags, batch, method)
      logging.info("cost %s ours/%s: %s", task, method, row["ours"][method])
    if not isinstance(measure_reference, str):
      try:
        row["reference"] = measure_reference(shape, flags, batch)
      except Exception as e:  # keep our figures if the reference fails to build
        row["reference"] = dict(error=f"{type(e).__name__}: {str(e)[:300]}")
      if "error" not in row["reference"]:
        row["ratio"] = {m: ratios(row["ours"][m], row["reference"]) for m in row["ours"]}
    result["tasks"][task] = row
  return result


def _fmt(cost: dict) -> str:
  return f"{cost['flops'] / 1e9:.2f} G | {cost['bytes_accessed'] / 1e9:.2f} G | {cost['fusions']}"


def markdown(result: dict) -> list[str]:
  lines = [
    "",
    "## Cost model of the compiled step (XLA cost analysis)",
    "",
    f"Backend {result['backend']}; reference: {result['reference']}. Compiled, not run; "
    "ratio = ours / reference bytes (the associative path is the GPU's; XLA counts the "
    "sequential scan's loop body once).",
    "",
    "| task (batch) | program | step | flops | bytes accessed | fusions | bytes ratio |",
    "|---|---|---|---|---|---|---|",
  ]
  for task, row in result["tasks"].items():
    ref = row.get("reference")
    for program in result["programs"]:
      for method, cost in row["ours"].items():
        ratio = row.get("ratio", {}).get(method, {}).get(program, {}).get("bytes_accessed")
        lines.append(
          f"| {task} (L={row['seq_len']}, batch {row['batch']}) | {program} | ours, "
          f"{method} | {_fmt(cost[program])} | "
          f"{'' if ratio is None else f'{ratio:.2f}x'} |"
        )
      if ref and "error" not in ref:
        lines.append(
          f"| {task} (L={row['seq_len']}, batch {row['batch']}) | {program} | paper's "
          f"(associative) | {_fmt(ref[program])} | 1.00x |"
        )
  if any("error" in (r.get("reference") or {}) for r in result["tasks"].values()):
    lines.append("")
    lines += [
      f"Reference failed at {t}: {r['reference']['error']}"
      for t, r in result["tasks"].items()
      if "error" in (r.get("reference") or {})
    ]
  return lines + [""]
