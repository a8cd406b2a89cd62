"""Applying keep sets to a live model (and its optimizer): NNX transforms in place.

``mask``: `layer.mask_states` zeroes the pruned slots of the layer's
`StateMask`. Shapes stay; the forward multiplies by the mask, so pruned states
stay inert through further training (their parameters may still drift under
momentum, but cannot reach the output). Nothing in the optimizer changes.

``compact``: `layer.prune_states` shrinks every array with a state axis (with
``var.set_value``: index assignment never resizes) and returns, per
parameter, the gather it applied. The same gather is applied to every
optimizer-state leaf that mirrors that parameter: Adam's ``mu``/``nu``, SGD
traces, ``optax.MultiSteps`` gradient accumulators, the inner states of
``multi_transform`` and ``inject_hyperparams``. A leaf mirrors a parameter when
its key path *ends with* the parameter's path in the model (optax states are
trees keyed like the parameter tree, so ``opt_state[...]['mu']['blocks'][0]['ssm']['B']``
mirrors ``blocks.0.ssm.B``) and its shape equals the parameter's shape before
pruning. The kept states' moments are thus carried over, not reset, and
training goes on; the next ``nnx.jit`` call retraces for the new shapes.
Placeholders (``optax.MaskedNode`` of ``multi_transform``) and scalars are left
alone. A leaf whose path matches but whose shape does not (a factored second
moment, for instance) cannot be sliced and is reported with a warning.
"""

from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from flax import nnx

from last_nnx.pruning.layers import prunable_layers

MODES = ("mask", "compact")


def _split(path: str) -> tuple[str, ...]:
  return tuple(p for p in path.split(".") if p)


def _key(path) -> tuple[str, ...]:
  return tuple(str(p) for p in path)


def _variable_shapes(layer: nnx.Module) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Shapes of the layer's array variables, by path relative to the layer."""
  shapes = {}
  for path, node in nnx.iter_graph(layer):
    if isinstance(node, nnx.Variable):
      value = node.get_value()
      if hasattr(value, "shape"):
        shapes[_key(path)] = tuple(value.shape)
  return shapes


def _optimizer_state(optimizer):
  """The optimizer's optax state (never the model a ``ModelAndOptimizer`` holds)."""
  return optimizer.opt_state if hasattr(optimizer, "opt_state") else optimizer


def compact_optimizer_state(
  optimizer,
  layer_path: str,
  gathers: dict[str, Callable[[jax.Array], jax.Array]],
  shapes_before: dict[str, tuple[int, ...]],
) -> int:
  """Applies a layer's per-parameter gathers to the optimizer leaves mirroring them.

  Args:
    optimizer: an ``nnx.Optimizer`` (or any graph node holding optax state as
      NNX variables); its ``opt_state`` is searched.
    layer_path: dotted path of the pruned layer (``'blocks.0.ssm'``).
    gathers: ``{param_name: fn}`` from ``layer.prune_states`` (``param_name``
      may be dotted for a nested parameter).
    shapes_before: ``{param_name: shape}`` before pruning.

  Returns:
    The number of optimizer leaves rewritten.
  """
  prefix = _split(layer_path)
  suffixes = {prefix + _split(name): name for name in gathers}
  rewritten = 0
  for path, node in nnx.iter_graph(_optimizer_state(optimizer)):
    if not isinstance(node, nnx.Variable):
      continue
    value = node.get_value()
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) == 0:  # MaskedNode placeholder, count, hyperparameter
      continue
    key = _key(path)
    for suffix, name in suffixes.items():
      if len(key) < len(suffix) or key[-len(suffix) :] != suffix:
        continue
      if tuple(shape) == tuple(shapes_before[name]):
        node.set_value(gathers[name](value))
        rewritten += 1
      else:
        logging.warning(
          "optimizer leaf %s has shape %s, not the shape %s of parameter %s: "
          "it cannot be sliced and is left as is (the next update may fail; "
          "rebuild the optimizer or prune with mode='mask')",
          "/".join(key),
          tuple(shape),
          tuple(shapes_before[name]),
          ".".join(suffix),
        )
  return rewritten


def apply_keep(
  model: nnx.Module, keep: dict[str, np.ndarray], *, mode: str = "compact", optimizer=None
) -> dict[str, int]:
  """Prunes every layer in ``keep`` in place.

  Args:
    model: the model holding the layers.
    keep: ``{layer_path: (S,) bool}`` over the layer's current flat slots.
    mode: ``'compact'`` or ``'mask'``.
    optimizer: with ``compact``, its state is sliced like the parameters.

  Returns:
    ``{layer_path: optimizer leaves rewritten}`` (zeros without an optimizer
    or in ``mask`` mode).
  """
  if mode not in MODES:
    raise ValueError(f"unknown pruning mode {mode!r}; expected one of {MODES}")
  layers = prunable_layers(model)
  unknown = sorted(set(keep) - set(layers))
  if unknown:
    raise ValueError(f"no prunable layer at {unknown}; the model has {sorted(layers)}")
  rewritten = {}
  for path, mask in keep.items():
    layer = layers[path]
    rewritten[path] = 0
    if mode == "mask":
      layer.mask_states(np.asarray(mask, bool))
      continue
    shapes = _variable_shapes(layer)
    gathers = layer.prune_states(np.asarray(mask, bool))
    if optimizer is not None and gathers:
      before = {name: shapes[_split(name)] for name in gathers}
      rewritten[path] = compact_optimizer_state(optimizer, path, gathers, before)
  return rewritten
