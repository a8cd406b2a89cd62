"""The layer traversal of the pruning engine: which layers a model prunes, and of what kind."""

from flax import nnx

from last_nnx.ssm.base import PrunableSSM, find_prunable_layers, layer_kind


def prunable_layers(model: nnx.Module) -> dict[str, PrunableSSM]:
  """``{path: layer}`` of ``model``'s prunable layers; a bare layer is ``{'': layer}``.

  Raises:
    ValueError: the model has no `PrunableSSM` layer.
  """
  layers = find_prunable_layers(model)
  if not layers and isinstance(model, PrunableSSM):
    layers = {"": model}
  if not layers:
    raise ValueError(
      f"{type(model).__name__} has no prunable SSM layer (no submodule "
      "implements last_nnx.ssm.PrunableSSM): nothing to score or prune. "
      "Pass the model that contains the SSM layers."
    )
  return layers


def layer_kinds(model: nnx.Module) -> dict[str, str]:
  """``{layer_path: 'lti' or 'selective'}`` of the model's prunable layers."""
  return {path: layer_kind(layer) for path, layer in prunable_layers(model).items()}


def has_selective(model: nnx.Module) -> bool:
  """Whether any prunable layer of ``model`` is selective (Mamba-2)."""
  return "selective" in layer_kinds(model).values()
