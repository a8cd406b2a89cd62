r"""Export a trained (pruned) model for use outside this library.

  python -m last_nnx.export --workdir runs/listops --which best --out exported/

(the program is `last_nnx.cli.export`; `export_workdir` / `export_model` here) writes into
``--out``:

* ``forward.jax``: the full-sequence forward ``(inputs, lengths) -> logits``
  as a serialized `jax.export` artifact (StableHLO, symbolic batch size ``b``,
  fixed sequence length L, weights embedded as constants). Reload it with
  ``jax.export.deserialize(bytearray(data)).call(inputs, lengths)``: needs jax
  only, not this library. Lowered for CPU and CUDA by default (``--platforms``).
* ``step.jax``: one streaming step ``(x_t, *state) -> (logits, *new_state)``
  (causal models only; see `SequenceModel.step`).
* ``saved_model/``: a TensorFlow SavedModel of the same two functions (via
  ``jax2tf``, native serialization), signatures ``forward`` and ``step``, for
  TF Serving, TF's C++/Java runtimes and other TF tooling. TensorFlow is imported
  only here.
* ``model.json``: shapes and dtypes of every argument and output, classes,
  states per layer, the pruning history and where the model came from.

A model pruned by masking is compacted first (``--compact``, the default), so
the artifacts hold only the live states: a model pruned 50% exports at about
half its SSM size, and its streaming state is half as large.

Step state at the boundary: the complex64 SSM states travel as float32
``(..., 2)`` (real, imaginary) arrays, so that runtimes without complex tensors
can hold them; a stream starts from all-zero state arrays.
"""

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from last_nnx.ssm import find_prunable_layers
from last_nnx.ssm.base import live_states
from last_nnx.train.checkpoint import WHICH, CheckpointMeta, load_model  # noqa: F401 (WHICH: cli)

FORMATS = ("stablehlo", "savedmodel")


def compact_masked(model: nnx.Module) -> nnx.Module:
  """Copy of ``model`` in eval mode with masked (pruned) state slots removed."""
  model = nnx.clone(model)
  for layer in find_prunable_layers(model).values():
    keep = np.asarray(layer.state_mask[...]) > 0
    if not keep.all():
      layer.prune_states(keep.reshape(-1))
  model.eval()
  return model


def _spec(name: str, shape, dtype) -> dict:
  return dict(name=name, shape=["b"] + [int(d) for d in shape[1:]], dtype=np.dtype(dtype).name)


def forward_specs(model_spec: dict, seq_len: int) -> list[dict]:
  """Argument specs of the full-sequence forward (batch first, named ``'b'``)."""
  if model_spec.get("retrieval"):
    return [_spec("inputs", (1, 2, seq_len), np.int32), _spec("lengths", (1, 2), np.int32)]
  if model_spec.get("vocab_size") is not None:
    inputs = _spec("inputs", (1, seq_len), np.int32)
  else:
    inputs = _spec("inputs", (1, seq_len, model_spec.get("in_dim", 1)), np.float32)
  return [inputs, _spec("lengths", (1,), np.int32)]


def _leaf_name(path) -> str:
  """``layers/2`` -> ``ssm_2``, ``layers/2/conv`` -> ``ssm_2_conv``, ``count``, ``pool``."""
  keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
  if keys[0] == "layers":
    return "_".join(["ssm"] + keys[1:])
  return "_".join(keys)


def flat_state(state: dict) -> tuple[list[str], list[jax.Array], Callable]:
  """A model's streaming state as named leaves: ``(names, leaves, unflatten)``.

  The layers' states come first (in layer order; a selective layer's dict
  state as one leaf per entry, e.g. ``ssm_0_conv``, ``ssm_0_ssm``), then
  ``count`` and ``pool``; ``unflatten(leaves)`` rebuilds the state.
  """
  with_paths, treedef = jax.tree_util.tree_flatten_with_path(state)
  names = [_leaf_name(path) for path, _ in with_paths]
  order = sorted(range(len(names)), key=lambda i: (not names[i].startswith("ssm_"), i))

  def unflatten(leaves):
    flat = [None] * len(order)
    for position, i in enumerate(order):
      flat[i] = leaves[position]
    return jax.tree_util.tree_unflatten(treedef, flat)

  return [names[i] for i in order], [with_paths[i][1] for i in order], unflatten


def _to_boundary(a: jax.Array) -> jax.Array:
  return jnp.stack([a.real, a.imag], axis=-1) if jnp.iscomplexobj(a) else a


def streaming_functions(model: nnx.Module, model_spec: dict, seq_len: int):
  """Pure functions of the (eval-mode) model and their argument/output specs.

  Returns:
    ``dict(forward=(fn, arg_specs, out_specs), step=(fn, arg_specs, out_specs)
    or None when the model cannot stream, step_refused=reason or None)``.
  """
  graphdef, variables = nnx.split(model)

  def forward(inputs, lengths):
    return nnx.merge(graphdef, variables)(inputs, lengths)

  out = dict(
    forward=(
      forward,
      forward_specs(model_spec, seq_len),
      [_spec("logits", (1, model_spec["n_classes"]), np.float32)],
    ),
    step=None,
    step_refused=None,
  )
  try:
    template = model.init_state(1)
  except ValueError as e:
    out["step_refused"] = str(e)
    return out
  names, template_leaves, unflatten = flat_state(template)
  complex_leaf = [jnp.iscomplexobj(a) for a in template_leaves]
  state_specs = [
    _spec(n, _to_boundary(a).shape, _to_boundary(a).dtype) for n, a in zip(names, template_leaves)
  ]
  x_spec = dict(forward_specs(model_spec, 1)[0], name="x_t")
  x_spec["shape"] = x_spec["shape"][:1] + x_spec["shape"][2:]  # drop the time axis

  def step(x_t, *leaves):
    leaves = [
      jax.lax.complex(a[..., 0], a[..., 1]) if c else a for a, c in zip(leaves, complex_leaf)
    ]
    new, logits = nnx.merge(graphdef, variables).step(unflatten(leaves), x_t)
    return (logits,) + tuple(_to_boundary(a) for a in flat_state(new)[1])

  out["step"] = (
    step,
    [x_spec] + state_specs,
    [_spec("logits", (1, model_spec["n_classes"]), np.float32)] + state_specs,
  )
  return out


def _abstract(specs: list[dict]):
  (b,) = jax.export.symbolic_shape("b")
  return [jax.ShapeDtypeStruct((b,) + tuple(s["shape"][1:]), s["dtype"]) for s in specs]


def export_stablehlo(fn: Callable, arg_specs: list[dict], platforms) -> bytes:
  """Serialized `jax.export` artifact of ``fn`` with a symbolic batch size."""
  exported = jax.export.export(jax.jit(fn), platforms=tuple(platforms))(*_abstract(arg_specs))
  return bytes(exported.serialize())


def _named_outputs(fn: Callable, names: list[str]) -> Callable:
  """``fn`` returning a dict ``{name: output}`` (what a SavedModel signature needs)."""

  def named(*args):
    outs = fn(*args)
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    return dict(zip(names, outs))

  return named


def save_tf(directory: str, functions: dict[str, tuple]) -> None:
  """TensorFlow SavedModel with one signature per ``name: (fn, arg_specs, out_specs)``.

  Uses ``jax2tf.convert`` (native serialization: the same StableHLO as
  `export_stablehlo`, wrapped in an ``XlaCallModule`` op); the batch size is
  polymorphic. Signatures return dicts keyed by the output names.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from jax.experimental import jax2tf  # pylint: disable=import-outside-toplevel

  module = tf.Module()
  signatures = {}
  for name, (fn, arg_specs, out_specs) in functions.items():
    poly = [
      "(" + ", ".join(str(d) for d in s["shape"]) + ("," if len(s["shape"]) == 1 else "") + ")"
      for s in arg_specs
    ]
    converted = jax2tf.convert(fn, polymorphic_shapes=poly, with_gradient=False)
    out_names = [s["name"] for s in out_specs]

    signature = [
      tf.TensorSpec([None] + s["shape"][1:], s["dtype"], name=s["name"]) for s in arg_specs
    ]
    tf_fn = tf.function(
      _named_outputs(converted, out_names), autograph=False, input_signature=signature
    )
    setattr(module, name, tf_fn)
    signatures[name] = tf_fn
  tf.saved_model.save(module, directory, signatures=signatures)


def _layers_summary(model: nnx.Module) -> dict[str, dict]:
  return {
    path: dict(
      type=type(layer).__name__, state_shape=list(layer.state_shape), live_states=live_states(layer)
    )
    for path, layer in find_prunable_layers(model).items()
  }


def export_model(
  model: nnx.Module,
  meta: CheckpointMeta | dict,
  out_dir: str,
  *,
  seq_len: int,
  formats=FORMATS,
  platforms=("cpu", "cuda"),
  compact: bool = True,
  source: dict | None = None,
) -> dict:
  """Writes the artifacts of ``model`` into ``out_dir``; returns the manifest.

  Args:
    model: a `SequenceModel` (any mode; exported in eval mode).
    meta: the checkpoint's `CheckpointMeta` (or its dict): ``model_spec``, and
      ``events`` for the history.
    out_dir: output directory (created).
    seq_len: L of the full-sequence forward.
    formats: subset of ``('stablehlo', 'savedmodel')``.
    platforms: `jax.export` lowering platforms.
    compact: remove masked slots first.
    source: provenance recorded in the manifest.
  """
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise ValueError(f"unknown export format(s) {unknown}; expected a subset of {FORMATS}")
  model = compact_masked(model) if compact else nnx.clone(model)
  model.eval()
  meta = CheckpointMeta.from_dict(meta)
  spec = dataclasses.asdict(meta.model_spec)
  fns = streaming_functions(model, spec, seq_len)
  os.makedirs(out_dir, exist_ok=True)
  manifest: dict[str, Any] = dict(
    format_version=1,
    n_classes=spec["n_classes"],
    seq_len=seq_len,
    input=dict(
      kind="retrieval_tokens"
      if spec.get("retrieval")
      else ("tokens" if spec.get("vocab_size") is not None else "features"),
      vocab_size=spec.get("vocab_size"),
      in_dim=spec.get("in_dim"),
    ),
    pooling=model.pooling,
    layers=_layers_summary(model),
    states_total=sum(v["live_states"] for v in _layers_summary(model).values()),
    pruning_history=meta.events,
    state_encoding="complex64 SSM states as float32 (..., 2) = (real, imag), float32 states "
    "as they are; start from zeros",
    streaming=fns["step"] is not None,
    step_refused=fns["step_refused"],
    jax_version=jax.__version__,
    platforms=list(platforms),
    source=source or {},
    files={},
  )
  functions = {name: fns[name] for name in ("forward", "step") if fns[name] is not None}
  for name, (_, args, outs) in functions.items():
    manifest[name] = dict(args=args, outputs=outs)
  if "stablehlo" in formats:
    for name, (fn, args, _) in functions.items():
      data = export_stablehlo(fn, args, platforms)
      with open(os.path.join(out_dir, f"{name}.jax"), "wb") as f:
        f.write(data)
      manifest["files"][f"{name}.jax"] = len(data)
      logging.info("wrote %s.jax (%d bytes)", name, len(data))
  if "savedmodel" in formats:
    directory = os.path.join(out_dir, "saved_model")
    save_tf(directory, functions)
    manifest["files"]["saved_model"] = _dir_size(directory)
    logging.info("wrote saved_model/ (%d bytes)", manifest["files"]["saved_model"])
  with open(os.path.join(out_dir, "model.json"), "w") as f:
    json.dump(manifest, f, indent=2, default=str)
  return manifest


def _dir_size(directory: str) -> int:
  return sum(
    os.path.getsize(os.path.join(root, name))
    for root, _, names in os.walk(directory)
    for name in names
  )


def export_workdir(workdir: str, out_dir: str, *, which: str = "best", **kwargs) -> dict:
  """`export_model` of the ``best`` or ``latest`` checkpoint of a training workdir."""
  from last_nnx.data import effective_seq_len  # pylint: disable=import-outside-toplevel

  model, config, meta = load_model(workdir, which=which)
  seq_len = kwargs.pop("seq_len", None) or effective_seq_len(config.data)
  source = dict(
    workdir=os.path.abspath(workdir),
    which=which,
    task=config.get("task"),
    ssm=config.model.get("ssm"),
  )
  return export_model(model, meta, out_dir, seq_len=seq_len, source=source, **kwargs)


if __name__ == "__main__":  # `python -m last_nnx.export`: the program is last_nnx.cli.export
  import runpy

  runpy.run_module("last_nnx.cli.export", run_name="__main__", alter_sys=True)
