"""Applying keep sets to a live model (and its optimizer): NNX transforms in place.

``mask``: `layer.mask_states` zeroes the pruned slots' state mask; shapes stay,
the forward multiplies by the mask, so pruned states stay inert through further
training. ``compact``: `layer.prune_states` shrinks every array with a state
axis and returns, per parameter, the gather it applied; the same gather is
applied to every optimizer leaf that mirrors that parameter (Adam moments,
gradient accumulators of ``optax.MultiSteps``, ...), found by its path suffix and
pre-pruning shape, so training continues without a restart. The next
``nnx.jit`` call retraces for the new shapes.
"""

import numpy as np
from flax import nnx

from last_nnx.ssm.base import find_prunable_layers

MODES = ("mask", "compact")


def _path_key(path) -> tuple[str, ...]:
  return tuple(str(p) for p in path)


def compact_optimizer_state(optimizer: nnx.Optimizer, layer_path: str,
                            gathers: dict, shapes_before: dict[str, tuple]) -> int:
  """Applies a layer's per-parameter gathers to the matching optimizer leaves.

  Args:
    optimizer: the ``nnx.Optimizer`` (any optax transformation whose state
      mirrors the parameter tree).
    layer_path: dotted path of the pruned layer (``'blocks.0.ssm'``).
    gathers: ``{param_name: fn}`` from ``layer.prune_states``.
    shapes_before: ``{param_name: shape}`` before pruning.

  Returns:
    The number of optimizer leaves rewritten.
  """
  prefix = tuple(layer_path.split("."))
  suffixes = {prefix + (name,): name for name in gathers}
  rewritten = 0
  for path, node in nnx.iter_graph(optimizer):
    if not isinstance(node, nnx.Variable):
      continue
    key = _path_key(path)
    for suffix, name in suffixes.items():
      if key[-len(suffix):] != suffix:
        continue
      value = node.get_value()
      if getattr(value, "shape", None) == tuple(shapes_before[name]):
        node.set_value(gathers[name](value))
        rewritten += 1
  return rewritten


def apply_keep(model: nnx.Module, keep: dict[str, np.ndarray], *, mode: str = "compact",
               optimizer: nnx.Optimizer | None = None) -> None:
  """Prunes every layer in ``keep`` (``{layer_path: (S,) bool}``) in place."""
  if mode not in MODES:
    raise ValueError(f"unknown pruning mode {mode!r}; expected one of {MODES}")
  layers = find_prunable_layers(model)
  for path, mask in keep.items():
    layer = layers[path]
    if mode == "mask":
      layer.mask_states(mask)
      continue
    names = list(type(layer).STATE_AXES) if hasattr(type(layer), "STATE_AXES") else []
    shapes = {name: tuple(getattr(layer, name).shape) for name in names}
    gathers = layer.prune_states(mask)
    if optimizer is not None and gathers:
      compact_optimizer_state(optimizer, path, gathers, shapes)
