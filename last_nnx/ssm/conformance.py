"""Protocol checks for SSM layer types: what a new type is missing, said plainly.

``check_protocol(layer, d_model)`` returns a list of problems (empty when the
layer satisfies `last_nnx.ssm.PrunableSSM` well enough for pruning, training,
checkpoints and streaming to work on it). tests/test_conformance.py runs it on
every registered type, then checks the behaviour (recurrence equality, mask ==
compact, step == scan, ...). The checks follow the layer's kind
(`last_nnx.ssm.base`): an LTI layer's ``state_modes()`` is checked, a selective
layer's ``state_statistics()`` instead.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.ssm.base import PrunableSSM, StateModes, is_selective, layer_kind

REQUIRED = ("state_mask", "state_shape", "mask_states", "prune_states", "init_state", "step")
# What each kind adds to REQUIRED.
REQUIRED_BY_KIND = {"lti": ("state_modes",), "selective": ("record_input", "state_statistics")}
STATISTICS = ("output_energy", "controllability", "observability")


def _shape(x) -> tuple:
  return tuple(getattr(x, "shape", ()))


def _check_modes(modes: StateModes, s: int, d_model: int, bidirectional) -> list[str]:
  """Shapes, dtypes and stability of the one-state subsystems."""
  checks = [
    (
      _shape(modes.poles) == (s,),
      f"state_modes().poles has shape {_shape(modes.poles)}, "
      f"expected ({s},) (one pole per flattened slot of state_shape)",
    ),
    (
      getattr(modes.poles, "dtype", None) == jnp.complex64,
      f"state_modes().poles must be complex64, got {getattr(modes.poles, 'dtype', None)}",
    ),
    (
      len(_shape(modes.B)) == 2 and _shape(modes.B)[0] == s,
      f"state_modes().B has shape {_shape(modes.B)}, expected ({s}, H_in)",
    ),
    (
      getattr(modes.B, "dtype", None) == jnp.complex64,
      f"state_modes().B must be complex64, got {getattr(modes.B, 'dtype', None)}",
    ),
    (
      len(_shape(modes.C)) == 3 and _shape(modes.C)[0] in (1, 2) and _shape(modes.C)[2] == s,
      f"state_modes().C has shape {_shape(modes.C)}, expected (D in {{1, 2}}, H_out, {s})",
    ),
    (
      getattr(modes.C, "dtype", None) == jnp.complex64,
      f"state_modes().C must be complex64, got {getattr(modes.C, 'dtype', None)}",
    ),
    (
      _shape(modes.valid) == (s,) and getattr(modes.valid, "dtype", None) == jnp.bool_,
      f"state_modes().valid must be ({s},) bool, got {_shape(modes.valid)} "
      f"{getattr(modes.valid, 'dtype', None)}",
    ),
    (
      modes.output_scale in (1.0, 2.0),
      f"state_modes().output_scale must be 1.0 (Re(Cx)) or 2.0 (conjugate pairs, 2 Re(Cx)), "
      f"got {modes.output_scale}",
    ),
    (
      modes.feedthrough is None or _shape(modes.feedthrough) == (d_model,),
      f"state_modes().feedthrough must be None or ({d_model},), got {_shape(modes.feedthrough)}",
    ),
  ]
  if bidirectional is not None and len(_shape(modes.C)) == 3:
    want = 2 if bidirectional else 1
    checks.append(
      (
        _shape(modes.C)[0] == want,
        f"layer.bidirectional is {bool(bidirectional)} but state_modes().C has "
        f"{_shape(modes.C)[0]} direction(s)",
      )
    )
  if modes.channel is None:
    checks.append(
      (
        _shape(modes.B)[1:] == (d_model,) and _shape(modes.C)[1:2] == (d_model,),
        f"MIMO layer (channel=None): B ({s}, {d_model}) and C (D, {d_model}, {s}) "
        f"expected, got B {_shape(modes.B)}, C {_shape(modes.C)}",
      )
    )
  else:
    ch = np.asarray(modes.channel)
    checks.append(
      (
        _shape(modes.B)[1:] == (1,)
        and _shape(modes.C)[1:2] == (1,)
        and ch.shape == (s,)
        and np.issubdtype(ch.dtype, np.integer)
        and (ch.size == 0 or (ch.min() >= 0 and ch.max() < d_model)),
        f"multi-SISO layer: B ({s}, 1), C (D, 1, {s}) and integer channel ({s},) "
        f"in [0, {d_model}) expected, got B {_shape(modes.B)}, C {_shape(modes.C)}, "
        f"channel {ch.shape} {ch.dtype}",
      )
    )
  problems = [msg for ok, msg in checks if not ok]
  if not problems:
    live = np.asarray(modes.valid)
    if live.any() and not np.all(np.abs(np.asarray(modes.poles))[live] < 1):
      problems.append(
        "state_modes().poles must lie inside the unit circle (|lam| < 1) on "
        "live slots: the scores divide by 1 - |lam|"
      )
  return problems


def _check_state_axes(layer) -> list[str]:
  """Every parameter in STATE_AXES carries the state slots at the declared axis."""
  axes = getattr(type(layer), "STATE_AXES", None)
  if not axes:
    return [
      "STATE_AXES is empty: prune_states would not shrink any parameter (declare "
      "{param name: first state axis} for every parameter with a state axis)"
    ]
  shape = tuple(layer.state_shape)
  problems = []
  for name, axis in axes.items():
    var = getattr(layer, name, None)
    if not isinstance(var, nnx.Variable):
      problems.append(f"STATE_AXES names {name!r}, which is not an nnx.Param of the layer")
      continue
    got = tuple(var.shape[axis : axis + len(shape)])
    if got != shape:
      problems.append(
        f"STATE_AXES[{name!r}] = {axis}: {name} has shape {tuple(var.shape)}, "
        f"whose axes {axis}..{axis + len(shape) - 1} are {got}, not state_shape "
        f"{shape}"
      )
  io = getattr(type(layer), "STATE_IO", ())
  problems += [
    f"STATE_IO names {name!r}, which is not in STATE_AXES" for name in io if name not in axes
  ]
  return problems


def _check_statistics(layer, d_model: int) -> list[str]:
  """A selective layer's ``state_statistics``: the three state_shape float32 arrays."""
  shape = tuple(layer.state_shape)
  u = jnp.ones((2, 5, d_model), jnp.float32)
  try:
    stats = layer.state_statistics(u, jnp.array([5, 3]))
  except Exception as e:  # noqa: BLE001
    return [f"state_statistics(u (2, 5, H), lengths) raised {type(e).__name__}: {e}"]
  if not isinstance(stats, dict) or set(stats) != set(STATISTICS):
    return [
      f"state_statistics must return a dict with keys {STATISTICS}, got "
      f"{sorted(stats) if isinstance(stats, dict) else type(stats).__name__}"
    ]
  problems = []
  dead = np.asarray(layer.state_mask[...]) == 0
  for name in STATISTICS:
    value = stats[name]
    if _shape(value) != shape or getattr(value, "dtype", None) != jnp.float32:
      problems.append(
        f"state_statistics()[{name!r}] must be float32 state_shape {shape}, "
        f"got {getattr(value, 'dtype', None)} {_shape(value)}"
      )
      continue
    value = np.asarray(value)
    if not (np.all(np.isfinite(value)) and np.all(value >= 0)):
      problems.append(f"state_statistics()[{name!r}] must be finite and >= 0 (an energy)")
    if np.any(value[dead] != 0):
      problems.append(f"state_statistics()[{name!r}] must be 0 on pruned and padding slots")
  return problems


def _check_streaming(layer, d_model: int) -> list[str]:
  """init_state/step shapes for causal layers; a clear ValueError for bidirectional ones."""
  shape = tuple(layer.state_shape)
  if getattr(layer, "bidirectional", False):
    problems = []
    for what, call in (
      ("init_state", lambda: layer.init_state(2)),
      ("step", lambda: layer.step(jnp.zeros((2,) + shape, jnp.complex64), jnp.zeros((2, d_model)))),
    ):
      try:
        call()
        problems.append(
          f"{what} of a bidirectional layer must raise ValueError (it cannot "
          "stream), but it returned"
        )
      except ValueError:
        pass
      except Exception as e:  # noqa: BLE001 - reported, not raised
        problems.append(
          f"{what} of a bidirectional layer must raise ValueError, raised {type(e).__name__}: {e}"
        )
    return problems
  try:
    state = layer.init_state(2)
  except Exception as e:  # noqa: BLE001
    return [f"init_state(2) raised {type(e).__name__}: {e}"]
  problems = []
  if is_selective(layer):  # any pytree of batch-first arrays
    leaves = jax.tree.leaves(state)
    if not leaves or any(_shape(x)[:1] != (2,) for x in leaves):
      return [
        f"init_state(2) must return a pytree of arrays with batch 2 first, got "
        f"{jax.tree.map(_shape, state)}"
      ]
  elif _shape(state) != (2,) + shape or getattr(state, "dtype", None) != jnp.complex64:
    problems.append(
      f"init_state(2) must return complex64 {(2,) + shape} (batch + state_shape), "
      f"got {getattr(state, 'dtype', None)} {_shape(state)}"
    )
    return problems
  try:
    out = layer.step(state, jnp.ones((2, d_model), jnp.float32))
  except Exception as e:  # noqa: BLE001
    return problems + [f"step(state, u_t (2, {d_model})) raised {type(e).__name__}: {e}"]
  if not (isinstance(out, tuple) and len(out) == 2):
    return problems + ["step must return (new_state, y_t)"]
  new_state, y = out
  structure = lambda tree: jax.tree.map(lambda x: (_shape(x), getattr(x, "dtype", None)), tree)
  if structure(new_state) != structure(state):
    problems.append(
      f"step's new_state must keep the state's structure, shapes and dtypes "
      f"{structure(state)}, got {structure(new_state)}"
    )
  if _shape(y) != (2, d_model) or getattr(y, "dtype", None) != jnp.float32:
    problems.append(
      f"step's y_t must be float32 (2, {d_model}), got {getattr(y, 'dtype', None)} {_shape(y)}"
    )
  return problems


def check_protocol(layer, d_model: int) -> list[str]:
  """Problems that keep ``layer`` from working with pruning and training ([] if none).

  Args:
    layer: a freshly built (or pruned) SSM layer.
    d_model: its number of channels H.

  Returns:
    Human-readable problems: missing methods or attributes, mis-shaped or
    mis-typed ``state_modes()`` (LTI) or ``state_statistics()`` (selective),
    wrong ``STATE_AXES``, a forward pass or a streaming step with the wrong
    shapes.
  """
  kind = layer_kind(layer)
  problems = [
    f"missing attribute or method {name!r}"
    for name in REQUIRED + REQUIRED_BY_KIND[kind]
    if not hasattr(layer, name)
  ]
  if problems:
    return problems + [
      "subclass last_nnx.ssm.DiagonalSSM, set self.state_mask = "
      "StateMask(ones(state_shape)) and declare STATE_AXES to get "
      "mask_states/prune_states/init_state/step; then implement "
      "__call__ and state_modes() (LTI) or state_statistics() (selective, "
      "with selective = True)"
    ]
  if not isinstance(layer, PrunableSSM):
    problems.append("not a last_nnx.ssm.PrunableSSM (runtime protocol check failed)")
  shape = tuple(layer.state_shape)
  if _shape(layer.state_mask) != shape:
    problems.append(
      f"state_mask has shape {_shape(layer.state_mask)}, expected state_shape {shape}"
    )
  if len(shape) not in (1, 2):
    problems.append(f"state_shape must be (P,) or (H, N), got {shape}")
  if kind == "selective":
    problems += _check_statistics(layer, d_model)
  else:
    try:
      modes = layer.state_modes()
    except Exception as e:  # noqa: BLE001
      return problems + [f"state_modes() raised {type(e).__name__}: {e}"]
    if not isinstance(modes, StateModes):
      return problems + [f"state_modes() returned {type(modes).__name__}, not StateModes"]
    problems += _check_modes(
      modes, int(np.prod(shape)), d_model, getattr(layer, "bidirectional", None)
    )
  problems += _check_state_axes(layer)
  try:
    y = layer(jnp.ones((2, 3, d_model), jnp.float32))
    if _shape(y) != (2, 3, d_model) or y.dtype != jnp.float32:
      problems.append(
        f"layer(u (2, 3, {d_model})) must return float32 (2, 3, {d_model}), "
        f"got {y.dtype} {_shape(y)}"
      )
  except Exception as e:  # noqa: BLE001
    problems.append(f"layer(u (2, 3, {d_model})) raised {type(e).__name__}: {e}")
  problems += _check_streaming(layer, d_model)
  return problems


def assert_conforms(layer, d_model: int) -> None:
  """Raises AssertionError listing every problem `check_protocol` finds."""
  problems = check_protocol(layer, d_model)
  if problems:
    raise AssertionError(
      f"{type(layer).__name__} does not satisfy PrunableSSM:\n  - " + "\n  - ".join(problems)
    )


__all__ = ["REQUIRED", "REQUIRED_BY_KIND", "assert_conforms", "check_protocol"]
