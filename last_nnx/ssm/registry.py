"""Registry of SSM layer types selectable from a config (`model.ssm`)."""

from collections.abc import Callable

from flax import nnx

from last_nnx.ssm.base import layer_kind

_REGISTRY: dict[str, Callable[..., nnx.Module]] = {}


def register_ssm(name: str):
  """Class decorator: makes ``model.ssm = name`` build this layer type.

  The layer is constructed as ``cls(d_model, **model.ssm_config, rngs=rngs)``.
  """

  def wrap(cls):
    if name in _REGISTRY and _REGISTRY[name] is not cls:
      raise ValueError(f"SSM type {name!r} is already registered to {_REGISTRY[name]}")
    _REGISTRY[name] = cls
    return cls

  return wrap


def registered_ssms() -> tuple[str, ...]:
  return tuple(sorted(_REGISTRY))


def ssm_kind(name: str) -> str:
  """``'selective'`` or ``'lti'``: the kind of the registered type ``name`` (`ssm.base`)."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown model.ssm {name!r}; registered types: {registered_ssms()}")
  return layer_kind(_REGISTRY[name])


def make_ssm(name: str, d_model: int, options: dict, *, rngs: nnx.Rngs) -> nnx.Module:
  """Builds a registered SSM layer; unknown names/options fail with a clear message."""
  if name not in _REGISTRY:
    raise ValueError(f"unknown model.ssm {name!r}; registered types: {registered_ssms()}")
  try:
    return _REGISTRY[name](d_model, **dict(options), rngs=rngs)
  except TypeError as e:
    raise ValueError(f"bad model.ssm_config for {name!r}: {e}") from e
