r"""Our S5 train step beside the paper's own (msgwak/LAST, linen, built on lindermanlab/S5).

  bench/fetch_reference.sh REPO [--deps]   # exports the reference into .ref/LAST (not ours)
  python bench/reference_step.py --out DIR [--tasks listops,pathx] [--batch N]
      [--repeats R] [--quick] [--remat]
  python bench/reference_step.py --cost --out DIR [--tasks ...] [--methods associative]

For each task, at the shapes of ``last_nnx.bench.shapes.TASK_SHAPES`` (ListOps: L=2048,
8 layers, H=128, P=16 in J=8 blocks; Path-X: L=16384, 6 layers, H=128, P=256 in
J=16), both models are built with the flags of the reference's run scripts
(bin/run_experiments/run_lra_{listops,pathx}.sh and run_train.py's defaults):
bidirectional, conjugate symmetry, ZOH, prenorm batch norm, mean pooling, no
dropout, the task's activation, C initialization, dt_min, batch-norm momentum and
optimizer grouping (``opt_config``, ``ssm_lr``, ``lr_factor``, ``weight_decay``).
The reference side is built and stepped with its own functions
(``ssm_init.make_DPLR_HiPPO``, ``ssm.init_S5SSM``, ``seq_model.BatchClassificationModel``,
``train_helpers.create_train_state`` and ``train_helpers.train_step``, pruning scores
on as in its scripts); ours with ``last_nnx.train.optim.make_optimizer`` and
``last_nnx.train.steps.train_step`` (which donates model, optimizer and carry).
Both get the same batch (same tokens or pixels, same labels): token ids for ours,
their one-hot float encoding (width 20, the reference's ListOps ``IN_DIM``) with
float lengths, unit integration steps and zero pruning thresholds for the
reference, as its ``prep_batch`` makes them. Only the compiled step is timed (not
the reference's host-side learning-rate update nor batch preparation):

* ``step_s``: median wall time of one step called and waited for, after warm-up;
* ``pipelined_step_s``: ``repeats`` steps dispatched back to back, waited for once,
  divided by ``repeats`` (dispatch overlaps compute, as in a training loop);
* ``first_call_s``: the first call (trace + compile + run);
* ``memory``: XLA's ``memory_analysis()`` of the compiled step (argument, output,
  temporary and aliased bytes; ``total_bytes`` = argument + output + temporary -
  alias), of the reference's ``train_step.lower(...).compile()`` and of our
  ``train_step.lower(...).compile()`` (flax's ``nnx.jit`` stages; where a flax
  lacks them, a functional ``jax.jit`` of ``train_step_fn`` over ``nnx.split``
  state, donated as ``train_step`` donates; ``memory_of`` says which).

``--cost`` times nothing: it compiles both train steps and both forwards (the
reference's ``eval_step``, our ``eval_step``) and reports XLA's cost analysis of each,
flops, bytes accessed and fusions (`last_nnx.bench.cost`, also the ``cost`` section of
``python -m last_nnx.bench``), ours per scan method, with ours / reference ratios, into
``DIR/reference_cost.json``; batch 8 at ListOps and 2 at Path-X unless ``--batch``.

Ours runs without rematerialization and without gradient accumulation (the
Path-X config's ``remat=True``, ``grad_accum=8`` would change the step the
reference is compared with); ``--remat`` adds a third entry, ours with remat.
The optimizers match in grouping and rates; ours feeds them from optax schedules,
the reference from ``inject_hyperparams`` (its loop sets the rate on the host).
Our SSM picks its scan by backend (sequential on CPU, associative on accelerators),
the reference always uses ``jax.lax.associative_scan``.

Runtime shims (installed by `install_shims`, nothing in .ref is edited):

1. ``jax.numpy.DeviceArray = jax.Array`` when absent (removed in JAX 0.4.14):
   ``s5/ssm.py`` names it in the ``S5SSM`` field annotations, evaluated at import.
2. a stand-in ``tqdm`` module (``tqdm(it) -> it``) when tqdm is not installed:
   ``s5/train_helpers.py`` imports it at module level (only its epoch loop uses it).
3. the model handed to ``create_train_state`` returns ``flax.core.freeze``-d
   variables from ``init``: the reference calls ``variables["params"].unfreeze()``,
   and flax >= 0.7.1 returns plain dicts. The train state's ``batch_stats`` is then
   turned back into a plain dict, the type the step returns, so the timed step
   does not retrace on its second call.
4. ``jax.tree_map = jax.tree.map`` when absent (removed in JAX 0.6.0); not called by
   the exported files at the pinned revision, kept for older/newer snapshots.
5. ``.ref/site`` (filled by ``fetch_reference.sh --deps``) is appended to
   ``sys.path``: our step imports ``clu.metrics`` (which needs ``wrapt``), absent
   from bare accelerator images. Installed packages take precedence.
6. Path-X only (``opt_config='BandCdecay'``): the reference labels ``B``
   ``'ssm_decay'`` but names its AdamW-at-``ssm_lr``-with-weight-decay group
   ``'none'``, which current optax refuses ("Some parameters have no corresponding
   transformation"; its own loop would also fail looking up ``'ssm_decay'``). While
   its train state is created, ``train_helpers.optax.multi_transform`` is wrapped so
   that group also serves under ``'ssm_decay'``: B gets AdamW at ``ssm_lr`` with
   weight decay, as the reference's comment and our ``BandCdecay`` describe.

The reference's ``create_train_state`` initializes with a dummy batch of
``min(batch, 2)`` sequences (parameter shapes do not depend on it; it runs eagerly
and a full Path-X batch would only slow it down). A side that fails (e.g. out of
memory at a large batch) is recorded with its error and the other still runs.

The import path holds no tensorflow, ml_collections or torch; ``clu`` (metrics of
our step) is the one extra package (checked at the end: ``heavy_modules_imported``).
"""

import argparse
import functools
import json
import os
import platform
import sys
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_DIR = os.path.join(ROOT, ".ref", "LAST")
SITE_DIR = os.path.join(ROOT, ".ref", "site")

sys.path.insert(0, ROOT)
if os.path.isdir(SITE_DIR):
  sys.path.append(SITE_DIR)  # shim 5: fallback clu/wrapt, after installed packages

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from last_nnx.bench import cost  # noqa: E402
from last_nnx.bench.cost import TASK_FLAGS  # noqa: E402
from last_nnx.bench.shapes import TASK_SHAPES  # noqa: E402
from last_nnx.train.steps import TrainCarry, bound_train_step, train_step, train_step_fn  # noqa: E402

REFERENCE_FLAGS = TASK_FLAGS  # the reference run scripts' flags, per task
QUICK = dict(L=256, layers=2)
HEAVY_MODULES = ("tensorflow", "tensorflow_datasets", "ml_collections", "torch", "clu")


def install_shims() -> list[str]:
  """Installs the runtime shims listed in the module docstring; returns those applied."""
  applied = []
  if not hasattr(jnp, "DeviceArray"):
    jnp.DeviceArray = jax.Array
    applied.append("jax.numpy.DeviceArray = jax.Array")
  if not hasattr(jax, "tree_map"):
    jax.tree_map = jax.tree.map
    applied.append("jax.tree_map = jax.tree.map")
  try:
    import tqdm  # noqa: F401
  except ImportError:
    stub = types.ModuleType("tqdm")
    stub.tqdm = lambda iterable=None, *args, **kwargs: iterable
    sys.modules["tqdm"] = stub
    applied.append("tqdm stand-in")
  return applied


class _FrozenInit:
  """Shim 3: a linen module whose ``init`` returns a FrozenDict, as flax < 0.7.1 did."""

  def __init__(self, module):
    self.module = module
    self.apply = module.apply

  def init(self, *args, **kwargs):
    return flax.core.freeze(self.module.init(*args, **kwargs))


def _multi_transform_alias(multi_transform):
  """Shim 6: ``multi_transform`` with the ``'none'`` group aliased as ``'ssm_decay'``."""

  @functools.wraps(multi_transform)
  def wrapped(transforms, labels, *args, **kwargs):
    if "ssm_decay" not in transforms and "none" in transforms:
      transforms = dict(transforms, ssm_decay=transforms["none"])
    return multi_transform(transforms, labels, *args, **kwargs)

  return wrapped


def _shape(task: str, quick: bool) -> dict:
  shape = dict(TASK_SHAPES[task])
  if quick:
    shape.update(L=QUICK["L"], layers=min(shape["layers"], QUICK["layers"]))
  return shape


def _inputs(shape: dict, flags: dict, batch: int, seed: int = 0):
  """Ours ``(x, lengths, y)`` and the reference's ``(inputs, labels, steps, ths)``, same data."""
  rng = np.random.default_rng(seed)
  L = shape["L"]
  y = (np.arange(batch) % shape["classes"]).astype(np.int32)
  lengths = np.full(batch, L, np.int32)
  if shape["vocab"]:
    tokens = rng.integers(1, shape["vocab"], (batch, L)).astype(np.int32)
    ours = (jnp.asarray(tokens), jnp.asarray(lengths), jnp.asarray(y))
    x_ref = jax.nn.one_hot(jnp.asarray(tokens), flags["ref_in_dim"], dtype=jnp.float32)
  else:
    pixels = rng.normal(size=(batch, L, 1)).astype(np.float32)
    ours = (jnp.asarray(pixels), jnp.asarray(lengths), jnp.asarray(y))
    x_ref = jnp.asarray(pixels)
  ref_x = (x_ref, jnp.asarray(lengths, jnp.float32)) if flags["padded"] else x_ref
  ref = (
    ref_x,
    jnp.asarray(y, jnp.float32),
    jnp.ones((batch, L), jnp.float32),
    jnp.zeros((batch,), jnp.float32),
  )
  return ours, ref


def _memory(compiled) -> dict | None:
  try:
    stats = compiled.memory_analysis()
  except Exception:  # some backends do not implement it
    return None
  if stats is None:
    return None
  out = {
    k: int(getattr(stats, k + "_in_bytes"))
    for k in ("argument_size", "output_size", "temp_size", "alias_size", "generated_code_size")
  }
  out["total_bytes"] = (
    out["argument_size"] + out["output_size"] + out["temp_size"] - out["alias_size"]
  )
  return out


def _timings(step, repeats: int) -> dict:
  """``step()`` dispatches one step and returns what to wait on."""
  t = time.perf_counter()
  jax.block_until_ready(step())
  first = time.perf_counter() - t
  jax.block_until_ready(step())  # a second warm-up call
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(step())
    times.append(time.perf_counter() - t)
  t = time.perf_counter()
  outs = [step() for _ in range(repeats)]
  jax.block_until_ready(outs[-1])
  pipelined = (time.perf_counter() - t) / repeats
  return dict(
    step_s=float(np.median(times)),
    pipelined_step_s=pipelined,
    first_call_s=first,
    step_s_all=[float(x) for x in times],
  )


def run_ours(shape: dict, flags: dict, inputs, repeats: int, remat: bool = False) -> dict:
  """Times ``last_nnx.train.steps.train_step`` and measures its compiled memory."""
  t0 = time.perf_counter()
  x, lengths, y = inputs
  model, optimizer = cost.build_ours(shape, flags, "auto", remat)  # auto: as training picks
  carry = TrainCarry.start(model)
  holder = {"carry": carry}
  # As the loop calls it: model and optimizer bound, so the graphs are walked once
  # (where a flax lacks nnx.cached_partial, nnx.jit walks them on every call).
  bound = (
    bound_train_step(model, optimizer)
    if hasattr(nnx, "cached_partial")
    else functools.partial(train_step, model, optimizer)
  )
  step_of = (
    "bound_train_step"
    if hasattr(nnx, "cached_partial")
    else "train_step (nnx.jit, graphs walked per call: this flax lacks cached_partial)"
  )

  def step():
    holder["carry"] = bound(holder["carry"], x, lengths, y)
    return holder["carry"]

  build_s = time.perf_counter() - t0
  out = _timings(step, repeats)
  out["build_s"], out["step_of"] = build_s, step_of
  try:  # the timed step's own executable (flax's nnx.jit stages; usually a cache hit)
    compiled = train_step.lower(model, optimizer, holder["carry"], x, lengths, y).compile()
    out["memory"], out["memory_of"] = _memory(compiled), "train_step"
  except Exception:  # older flax: the same step as a functional jax.jit, state donated
    graphdef, state = nnx.split((model, optimizer, holder["carry"]))

    def functional(state, x, lengths, y):
      m, o, c = nnx.merge(graphdef, state)
      c = train_step_fn(m, o, c, x, lengths, y)
      return nnx.state((m, o)), c

    compiled = jax.jit(functional, donate_argnums=0).lower(state, x, lengths, y).compile()
    out["memory"], out["memory_of"] = _memory(compiled), "functional train_step_fn"
  out["params"] = int(
    sum(
      v.size * (2 if jnp.iscomplexobj(v) else 1)
      for v in jax.tree.leaves(nnx.state(model, nnx.Param))
    )
  )
  return out


def _reference_model(shape: dict, flags: dict):
  """The reference's ``BatchClassificationModel`` class, set up as its ``train.py`` does."""
  from jax.scipy.linalg import block_diag
  from s5 import seq_model, ssm, ssm_init

  P, J = shape["P"], shape["J"]
  block = P // J
  Lambda, _, _, V, _ = ssm_init.make_DPLR_HiPPO(block)
  half = block // 2  # conjugate symmetry keeps one of each pair
  Lambda, V = Lambda[:half], V[:, :half]
  Lambda = jnp.tile(Lambda, J)
  Vinv = block_diag(*([V.conj().T] * J))
  V = block_diag(*([V] * J))
  ssm_fn = ssm.init_S5SSM(
    H=shape["H"],
    P=P // 2,
    Lambda_re_init=Lambda.real,
    Lambda_im_init=Lambda.imag,
    V=V,
    Vinv=Vinv,
    C_init=flags["c_init"],
    discretization="zoh",
    dt_min=flags["dt_min"],
    dt_max=0.1,
    conj_sym=True,
    clip_eigs=False,
    bidirectional=True,
    pruning=True,
  )
  return functools.partial(
    seq_model.BatchClassificationModel,
    ssm=ssm_fn,
    d_output=shape["classes"],
    d_model=shape["H"],
    n_layers=shape["layers"],
    padded=flags["padded"],
    activation=flags["activation"],
    dropout=0.0,
    mode="pool",
    prenorm=True,
    batchnorm=True,
    bn_momentum=flags["bn_momentum"],
  )


def _reference_state(shape: dict, flags: dict, batch: int):
  """``(train state, model class)`` of the reference, built with its own functions."""
  from s5 import train_helpers

  model_cls = _reference_model(shape, flags)
  optax_module = train_helpers.optax
  if flags["opt_config"] == "BandCdecay":
    train_helpers.optax = types.SimpleNamespace(
      **{
        **vars(optax_module),
        "multi_transform": _multi_transform_alias(optax_module.multi_transform),
      }
    )
  try:
    state = train_helpers.create_train_state(
      lambda **kwargs: _FrozenInit(model_cls(**kwargs)),
      jax.random.PRNGKey(0),
      flags["padded"],
      False,
      in_dim=flags["ref_in_dim"],
      bsz=min(batch, 2),
      seq_len=shape["L"],
      weight_decay=flags["weight_decay"],
      batchnorm=True,
      opt_config=flags["opt_config"],
      ssm_lr=flags["ssm_lr"],
      lr=flags["lr_factor"] * flags["ssm_lr"],
      dt_global=False,
    )
  finally:
    train_helpers.optax = optax_module
  return state.replace(batch_stats=flax.core.unfreeze(state.batch_stats)), model_cls


def run_reference(shape: dict, flags: dict, inputs, batch: int, repeats: int) -> dict:
  """Times the reference's ``train_helpers.train_step`` and measures its compiled memory."""
  from s5 import train_helpers

  t0 = time.perf_counter()
  state, model_cls = _reference_state(shape, flags, batch)
  model = model_cls(training=True)
  x, labels, steps, ths = inputs
  rng = jax.random.PRNGKey(1)
  args = (rng, x, labels, steps, ths, model, True)
  params = int(
    sum(
      0 if path[-1].key == "LASTscore" else v.size
      for path, v in jax.tree_util.tree_leaves_with_path(state.params)
    )
  )
  holder = {"state": state}

  def step():
    holder["state"], loss = train_helpers.train_step(holder["state"], *args)
    return holder["state"], loss

  build_s = time.perf_counter() - t0
  out = _timings(step, repeats)
  out["build_s"] = build_s
  out["memory"] = _memory(train_helpers.train_step.lower(holder["state"], *args).compile())
  out["params"] = params
  return out


def reference_cost(shape: dict, flags: dict, batch: int) -> dict:
  """``{"train_step", "forward"}`` cost figures (`last_nnx.bench.cost.compiled_cost`) of the
  reference's compiled ``train_helpers.train_step`` and ``eval_step`` (compiled, not run).

  Also called by the ``cost`` section of ``python -m last_nnx.bench``; installs the shims.
  """
  install_shims()
  if REF_DIR not in sys.path:
    sys.path.insert(0, REF_DIR)
  from s5 import train_helpers

  state, model_cls = _reference_state(shape, flags, batch)
  _, (x, labels, steps, ths) = _inputs(shape, flags, batch)
  train = train_helpers.train_step.lower(
    state, jax.random.PRNGKey(1), x, labels, steps, ths, model_cls(training=True), True
  ).compile()
  forward = train_helpers.eval_step.lower(
    x, labels, steps, ths, state, model_cls(training=False), True
  ).compile()
  return dict(train_step=cost.compiled_cost(train), forward=cost.compiled_cost(forward))


def run_cost(tasks: list[str], batch: int | None, quick: bool, methods=cost.SCAN_METHODS) -> dict:
  """``--cost``: ours (both scan methods) and the reference's figures, and their ratios."""
  shape_of = {t: _shape(t, quick) for t in tasks}
  result = cost.bench_cost(
    tasks,
    batches={t: batch for t in tasks} if batch else None,
    length=QUICK["L"] if quick else None,
    layers=QUICK["layers"] if quick else None,
    reference=reference_cost,
    methods=methods,
  )
  for task, row in result["tasks"].items():
    assert row["seq_len"] == shape_of[task]["L"]
    for method, ratio in row.get("ratio", {}).items():
      print(
        f"{task} (L={row['seq_len']}, {row['layers']} layers, batch {row['batch']}), ours "
        f"{method} / reference: "
        + ", ".join(
          f"{p} flops {r['flops']:.3f}x bytes {r['bytes_accessed']:.3f}x fusions "
          f"{r['fusions']:.2f}x"
          for p, r in ratio.items()
        ),
        flush=True,
      )
  return result


def _summary(run: dict) -> str:
  if "error" in run:
    return "failed: " + run["error"][:200]
  mem = run.get("memory")
  return (
    f"step {run['step_s'] * 1e3:.1f} ms, pipelined {run['pipelined_step_s'] * 1e3:.1f} ms, "
    f"first call {run['first_call_s']:.1f} s, compiled memory "
    + ("n/a" if not mem else f"{mem['total_bytes'] / 2**20:.1f} MiB")
  )


def _reference_commit() -> str | None:
  path = os.path.join(REF_DIR, "SOURCE")
  if not os.path.exists(path):
    return None
  return open(path).read().split()[1]


def _ratio(a, b):
  return None if not a or not b else a / b


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", required=True, help="folder for reference_step.json")
  parser.add_argument("--tasks", default="listops,pathx")
  parser.add_argument(
    "--batch",
    type=int,
    default=None,
    help="batch size (default: each task's reference batch, 50 and 32)",
  )
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument(
    "--quick",
    action="store_true",
    help=f"L={QUICK['L']}, at most {QUICK['layers']} layers: a seconds-long check",
  )
  parser.add_argument("--remat", action="store_true", help="also time ours with remat")
  parser.add_argument(
    "--cost",
    action="store_true",
    help="instead of timing: XLA's cost analysis (flops, bytes accessed, "
    "fusions) of both compiled steps and forwards, ours with each scan method, "
    "and the ratios, into OUT/reference_cost.json (batch: 8 at ListOps, 2 at "
    "Path-X unless --batch)",
  )
  parser.add_argument(
    "--methods", default=",".join(cost.SCAN_METHODS), help="--cost: our scan methods to measure"
  )
  args = parser.parse_args(argv)
  tasks = [t for t in args.tasks.split(",") if t]
  unknown = [t for t in tasks if t not in REFERENCE_FLAGS]
  if unknown:
    parser.error(f"unknown task(s) {unknown}; choose from {sorted(REFERENCE_FLAGS)}")
  if not os.path.isdir(os.path.join(REF_DIR, "s5")):
    sys.exit(
      f"no reference code in {REF_DIR}; run bench/fetch_reference.sh REPO first "
      "(REPO: msgwak/LAST, a directory or a git URL)"
    )
  shims = install_shims()
  sys.path.insert(0, REF_DIR)

  if args.cost:
    result = run_cost(tasks, args.batch, args.quick, args.methods.split(","))
    result.update(
      device=getattr(jax.devices()[0], "device_kind", "?"),
      jax=jax.__version__,
      flax=flax.__version__,
      reference_commit=_reference_commit(),
      quick=args.quick,
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "reference_cost.json")
    with open(path, "w") as f:
      json.dump(result, f, indent=1)
    print("\n".join(cost.markdown(result)) + f"\nwrote {path}")
    return result

  device = jax.devices()[0]
  result = dict(
    device=getattr(device, "device_kind", str(device)),
    platform=device.platform,
    n_devices=jax.device_count(),
    host=platform.node(),
    jax=jax.__version__,
    flax=flax.__version__,
    reference="msgwak/LAST",
    reference_commit=_reference_commit(),
    shims=shims + ["FrozenDict init (always)"],
    quick=args.quick,
    repeats=args.repeats,
    tasks={},
  )
  for task in tasks:
    shape, flags = _shape(task, args.quick), REFERENCE_FLAGS[task]
    batch = args.batch or flags["batch"]
    ours_in, ref_in = _inputs(shape, flags, batch)
    row = dict(
      batch=batch,
      seq_len=shape["L"],
      layers=shape["layers"],
      d_model=shape["H"],
      state_size=shape["P"],
      blocks=shape["J"],
      flags={k: v for k, v in flags.items() if k != "batch"},
    )
    t0 = time.perf_counter()
    runs = [("ours", lambda: run_ours(shape, flags, ours_in, args.repeats))]
    if args.remat:
      runs.append(("ours_remat", lambda: run_ours(shape, flags, ours_in, args.repeats, remat=True)))
    runs.append(("reference", lambda: run_reference(shape, flags, ref_in, batch, args.repeats)))
    for name, fn in runs:
      try:
        row[name] = fn()
      except Exception as e:  # e.g. out of memory at a large batch: keep the other figures
        row[name] = dict(error=f"{type(e).__name__}: {str(e)[:500]}")
      print(f"{task} {name}: {_summary(row[name])}", flush=True)
    row["wall_s"] = time.perf_counter() - t0
    ours, ref = row["ours"], row["reference"]
    row["speedup"] = _ratio(ref.get("step_s"), ours.get("step_s"))  # >1: ours faster
    row["speedup_pipelined"] = _ratio(ref.get("pipelined_step_s"), ours.get("pipelined_step_s"))
    row["memory_ratio"] = _ratio(
      (ours.get("memory") or {}).get("total_bytes"), (ref.get("memory") or {}).get("total_bytes")
    )  # <1: ours smaller
    result["tasks"][task] = row
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"
    print(
      f"{task} (L={shape['L']}, {shape['layers']} layers, batch {batch}) on "
      f"{result['device']}: "
      f"reference/ours step time {fmt(row['speedup'])}x (pipelined "
      f"{fmt(row['speedup_pipelined'])}x), ours/reference compiled memory "
      f"{fmt(row['memory_ratio'])}",
      flush=True,
    )
  result["heavy_modules_imported"] = sorted(
    {m.split(".")[0] for m in sys.modules} & set(HEAVY_MODULES)
  )
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "reference_step.json")
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {path}; modules of note imported: {result['heavy_modules_imported']}")
  return result


if __name__ == "__main__":
  main()
