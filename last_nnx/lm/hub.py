"""Pretrained Mamba-2 LMs from and to local directories (no hub access at run time).

    from last_nnx.lm import hub
    model = hub.load_pretrained("ckpt/mamba2-130m")     # config.json + model.safetensors
    hub.save_pretrained(model, "out/pruned", format="transformers", layout="padded")

A directory holds ``config.json`` and ``model.safetensors`` (or a sharded
``model.safetensors.index.json``), read with the ``safetensors`` package's numpy API;
``pytorch_model.bin`` (what state-spaces/mamba2-130m ships) is read with torch when torch
is installed (``weights_only=True``), else refused with the command that converts it.
Both formats of `last_nnx.lm.convert` are recognized from the config.

Loading marks every state whose C path is exactly zero as dead (`convert.dead_states`)
and, with ``compact=True``, removes it: a zero-padded layer-adaptive checkpoint comes
back with its per-layer state counts, as a native one does from its config.

Saving (`save_pretrained`): each layer is written as its compacted self (a masked model
too: its live states, the width the largest live count of a group). When every layer has
the same width N, a standard config with that N is written (uniform pruning).
Otherwise ``layout='padded'`` writes every layer at the largest N with zero B and C
paths on the extra slots, which stock loaders run with the same outputs, and
``layout='native'`` writes each layer at its own N with the sizes in the config's
``last_nnx`` field (last-nnx reads it back; stock loaders cannot).
Every bad input raises a one-line `CheckpointError` before anything is written.
"""

import dataclasses
import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.lm import convert
from last_nnx.lm.config import Mamba2LMConfig
from last_nnx.lm.convert import CheckpointError
from last_nnx.lm.model import Mamba2LM
from last_nnx.ssm.base import compaction_index, gather_states

LAYOUTS = ("padded", "native")
DOWNLOAD_HINT = (
  "download one with e.g. `huggingface-cli download state-spaces/mamba2-130m --local-dir DIR`"
)


def _convert_command(path: pathlib.Path) -> str:
  return (
    f'python -c "import torch; from safetensors.torch import save_file; '
    f"sd = torch.load('{path}', map_location='cpu', weights_only=True); "
    f"save_file({{k: v.float().clone() for k, v in sd.items()}}, "
    f"'{path.parent / 'model.safetensors'}', metadata={{'format': 'pt'}})\""
  )


def read_config(directory) -> tuple[Mamba2LMConfig, str]:
  """``(config, format)`` of the checkpoint in ``directory`` (`convert.config_from_dict`)."""
  path = pathlib.Path(directory) / "config.json"
  if not path.is_file():
    raise CheckpointError(
      f"{directory} has no config.json: pass the directory a Mamba-2 "
      f"checkpoint was downloaded to ({DOWNLOAD_HINT})"
    )
  try:
    raw = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path} is not valid JSON ({e}): download it again") from None
  try:
    return convert.config_from_dict(raw)
  except (KeyError, TypeError, ValueError) as e:
    if isinstance(e, CheckpointError):
      raise
    raise CheckpointError(
      f"{path} lacks or mistypes a field ({e!r}): it is not a Mamba-2 "
      "config this loader understands"
    ) from None


def _read_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
  from safetensors import safe_open

  try:
    with safe_open(str(path), framework="np") as f:
      return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}
  except Exception as e:  # the package raises its own SafetensorError (or OSError) kinds
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise CheckpointError(
      f"{path} is truncated or corrupt ({reason}): download or write it again"
    ) from None


def read_tensors(directory) -> dict[str, np.ndarray]:
  """Every tensor of the checkpoint in ``directory``, as float32 numpy arrays."""
  root = pathlib.Path(directory)
  single, index, binary = (
    root / "model.safetensors",
    root / "model.safetensors.index.json",
    root / "pytorch_model.bin",
  )
  if single.is_file():
    return _read_safetensors(single)
  if index.is_file():
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    tensors = {}
    for shard in shards:
      if not (root / shard).is_file():
        raise CheckpointError(f"{root} lacks the shard {shard} its index lists: download it")
      tensors.update(_read_safetensors(root / shard))
    return tensors
  if binary.is_file():
    try:
      import torch
    except ImportError:
      raise CheckpointError(
        f"{binary} is a PyTorch pickle and torch is not installed: "
        f"convert it once where torch is, with {_convert_command(binary)}"
      ) from None
    state = torch.load(str(binary), map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in state.items()}
  raise CheckpointError(
    f"{root} has no weights (model.safetensors or pytorch_model.bin): {DOWNLOAD_HINT}"
  )


def _check_shapes(tensors: dict, config: Mamba2LMConfig, fmt: str, directory) -> None:
  for key, shape in convert.expected_shapes(config, fmt).items():
    if key not in tensors:
      raise CheckpointError(
        f"{directory} lacks tensor {key} that its {fmt} config.json "
        "implies: the weights and the config do not belong together"
      )
    if tuple(tensors[key].shape) != shape:
      raise CheckpointError(
        f"tensor {key} in {directory} has shape {tuple(tensors[key].shape)}"
        f", expected {shape} from config.json: the weights and the config "
        "do not belong together"
      )


def _set(var, array) -> None:
  var.set_value(jnp.asarray(array, jnp.float32))


def load_pretrained(directory, *, compact: bool = True) -> Mamba2LM:
  """The `Mamba2LM` of the checkpoint in ``directory`` (module docstring).

  Args:
    directory: holds config.json and the weights.
    compact: remove the states whose C path is exactly zero (pruned or padding
      slots written by `save_pretrained`); False keeps them, masked.
  """
  config, fmt = read_config(directory)
  tensors = read_tensors(directory)
  _check_shapes(tensors, config, fmt, directory)
  model = nnx.eval_shape(lambda: Mamba2LM(config, rngs=nnx.Rngs(0)))
  _set(model.embedding, tensors[convert.EMBEDDING_KEY[fmt]])
  _set(model.norm_f.weight, tensors["backbone.norm_f.weight"])
  if model.lm_head is not None:
    _set(model.lm_head, tensors["lm_head.weight"])
  for i, block in enumerate(model.layers):
    prefix = f"backbone.layers.{i}."
    _set(block.norm.weight, tensors[prefix + "norm.weight"])
    params = convert.mixer_params(tensors, prefix + "mixer.", config, config.layer_state_size(i))
    for name, value in params.items():
      _set(getattr(block.mixer, name), value)
    dead = convert.dead_states(params)
    _set(block.mixer.state_mask, ~dead)
    if compact and dead.any() and not dead.all():
      block.mixer.prune_states(~dead)
  sizes = model.state_sizes()
  model.config = dataclasses.replace(
    config, state_size=max(sizes), layer_state_sizes=sizes if len(set(sizes)) > 1 else None
  )
  return model


def _mixer_arrays(mixer) -> tuple[dict, np.ndarray]:
  """``(parameters, mask)`` of a mixer with its live states gathered to the front.

  A masked (not compacted) model saves as its compacted self: each group's live
  states first, the width the largest live count of a group (ragged groups padded
  and masked, as `DiagonalSSM.prune_states` compacts).
  """
  names = (
    "in_z",
    "in_x",
    "in_B",
    "in_C",
    "in_dt",
    "conv_x",
    "conv_x_bias",
    "conv_B",
    "conv_B_bias",
    "conv_C",
    "conv_C_bias",
    "dt_bias",
    "A_log",
    "D",
    "norm_scale",
    "out",
  )
  index, mask = compaction_index(np.asarray(mixer.state_mask[...]) > 0)
  params = {}
  for name in names:
    value = getattr(mixer, name)[...]
    if name in mixer.STATE_AXES:
      value = gather_states(value, index, mixer.STATE_AXES[name])
    params[name] = np.asarray(jax.device_get(value), np.float32)
  return params, mask


def save_pretrained(model: Mamba2LM, directory, *, format: str, layout: str = "padded") -> str:
  """Writes ``model`` as ``config.json`` + ``model.safetensors`` in ``format``.

  Args:
    model: a (possibly pruned) `Mamba2LM`.
    directory: created if missing; existing config/weights there are replaced.
    format: ``'mamba_ssm'`` or ``'transformers'`` (`convert.FORMATS`).
    layout: for layers of different sizes, ``'padded'`` (stock loaders, exact) or
      ``'native'`` (per-layer sizes; last-nnx only). Ignored when all are equal.

  Returns:
    the directory, as a string.
  """
  if format not in convert.FORMATS:
    raise CheckpointError(f"save_pretrained: format={format!r}; pass one of {convert.FORMATS}")
  if layout not in LAYOUTS:
    raise CheckpointError(f"save_pretrained: layout={layout!r}; pass one of {LAYOUTS}")
  mixers = [_mixer_arrays(block.mixer) for block in model.layers]
  sizes = tuple(int(mask.shape[1]) for _, mask in mixers)
  n_max = max(sizes)
  native = layout == "native" and len(set(sizes)) > 1
  raw = convert.config_to_dict(model.config, format, n_max, sizes if native else None)
  tensors = {
    convert.EMBEDDING_KEY[format]: np.asarray(model.embedding[...]),
    "backbone.norm_f.weight": np.asarray(model.norm_f.weight[...]),
  }
  for i, (block, (params, mask)) in enumerate(zip(model.layers, mixers)):
    prefix = f"backbone.layers.{i}."
    tensors[prefix + "norm.weight"] = np.asarray(block.norm.weight[...])
    tensors.update(
      convert.mixer_tensors(params, mask, prefix + "mixer.", sizes[i] if native else n_max)
    )
  if model.lm_head is not None:
    tensors["lm_head.weight"] = np.asarray(model.lm_head[...])
  elif format == "mamba_ssm":  # its state dict lists the tied head too
    tensors["lm_head.weight"] = tensors[convert.EMBEDDING_KEY[format]]
  from safetensors.numpy import save_file

  root = pathlib.Path(directory)
  root.mkdir(parents=True, exist_ok=True)
  tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}
  save_file(tensors, str(root / "model.safetensors.tmp"), metadata={"format": "pt"})
  (root / "config.json.tmp").write_text(json.dumps(raw, indent=2) + "\n")
  os.replace(root / "model.safetensors.tmp", root / "model.safetensors")
  os.replace(root / "config.json.tmp", root / "config.json")
  return str(root)
