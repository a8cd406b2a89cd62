"""The `PrunableSSM` protocol: the one extension point of the pruning engine.

A layer is one of two **kinds**, and the engine asks each for what it can give:

* **LTI** (linear time-invariant: S5, S4D, LRU; `LTISSM`). A diagonal layer is a
  sum of one-state subsystems. After discretization, stored state ``i`` has a
  pole ``lam_i`` (complex, ``|lam_i| < 1`` for a stable layer), an input row
  ``B_i`` (its row of ``B_bar``) and an output column ``C_i`` (its column of
  ``C_tilde``; one per direction when the layer is bidirectional). Everything
  the data-free criteria, the regularizers and the diagnostics need is derived
  from those three arrays, which the layer exposes via ``state_modes()``.
* **Selective** (input-dependent ``dt_t, B_t, C_t``: Mamba-2; `SelectiveSSM`,
  ``selective = True``). There are no fixed poles; the state rows still evolve
  independently (a scalar decay per head), so the output is still a sum of
  per-state parts and a state can still be removed exactly. What the state
  *does* depends on the data, so the layer exposes per-state statistics of
  recorded inputs: ``state_statistics(u, lengths) -> {"output_energy",
  "controllability", "observability"}``, each float32 ``state_shape``, means
  over the batch and the valid steps, 0 on dead slots (see
  `last_nnx.pruning.selective` for the formulas and the criteria built on
  them). ``STATE_IO`` (optional) names the ``STATE_AXES`` parameters whose
  state columns write into and read from a state (Mamba-2: ``in_B``,
  ``in_C``): the data-free ``magnitude`` baseline is the product of their
  per-state norms.

`is_selective` tells the kinds apart (the ``selective`` class attribute, never
an ``isinstance`` check on a layer type); `find_prunable_layers` finds both.
Both kinds share the slots, the mask, the pruning surgery and streaming below.

Conventions
-----------
* **State slots.** A layer stores its states in an array of shape
  ``state_shape``: ``(P,)`` for a MIMO layer (S5), ``(H, N)`` for a multi-SISO
  layer (S4D: channel ``h`` owns states ``(h, 0..N-1)``) or ``(G, N)`` for a
  selective layer with G groups of N states (heads in a group share the
  states' B and C). ``state_modes()`` and the engine flatten the slots
  row-major, so a flat index ``s`` refers to slot
  ``np.unravel_index(s, state_shape)``.
* **Groups.** The leading axis of a two-axis ``state_shape`` is the group
  (channel or head group): compaction is ragged per group (each keeps its own
  count, padded and masked to the largest). A selective layer's groups each
  keep at least one state (the allocation enforces it).
* **Conjugate symmetry** (LTI). With ``conj_sym=True`` a stored state stands for a
  conjugate pair ``(lam, conj(lam))`` and the layer outputs ``2 Re(C x)``. The
  pair is pruned as a unit, and it counts as **one** state of a pruning ratio
  (a layer with all-paired states has the same ratio either way, up to the
  rounding of ``floor``). Scores are computed on the complex one-state
  subsystem ``G_i(z) = C_i B_i / (z - lam_i)``; for a pole away from the real
  axis its H-infinity norm equals that of the real pair system (the peak comes
  from one mode).
* **Validity.** Every layer owns a :class:`StateMask` (shape ``state_shape``,
  1 = live, 0 = pruned). Masked pruning writes zeros into it; compaction may
  leave padding slots (a multi-SISO layer pads ragged channels to the longest
  one), which are also 0. ``StateModes.valid`` exposes it; the engine ignores
  invalid slots (`live_states` counts the live ones for either kind).
* **Streaming.** ``init_state(B)`` returns any pytree of arrays, batch first
  (LTI: one complex64 ``(B,) + state_shape`` array; Mamba-2: a dict with its
  conv window and its head states), and ``step`` maps it to the same structure.

Beyond subsets of modes
-----------------------
Two optional methods (on `SSMLayer`; S5, S4D and the LRU implement them)
serve the criteria that need more than the modes:

* ``record_input(u)``, called first in ``__call__`` by every layer (both kinds):
  sows the layer's input as an `SSMInput` while calibration capture is on
  (calibrated scores, `last_nnx.pruning.calibrated`; selective statistics).
* ``load_state_modes(modes)`` (LTI only): the inverse of ``state_modes``. It rewrites the
  layer's trainable parameters so that its discretized system is ``modes``
  (new poles, input rows and output columns, any number of states), keeping
  the layer's type, feedthrough and options. Balanced reduction
  (`last_nnx.pruning.balanced`) projects a layer onto fewer states and loads
  the result with it, so the reduced layer trains, checkpoints and prunes on.
"""

import dataclasses
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class StateMask(nnx.Variable):
  """Per-slot liveness mask (1.0 live, 0.0 pruned or padding); not trained."""


class SSMInput(nnx.Intermediate):
  """A layer's input ``u (B, L, H)`` sown by `SSMLayer.record_input` (calibration)."""


RECORDED_INPUT = "recorded_input"  # attribute name of the sown `SSMInput`


@dataclasses.dataclass(frozen=True)
class StateModes:
  """The discretized one-state subsystems of a diagonal SSM layer.

  Attributes:
    poles: ``(S,)`` complex64, discretized poles ``lam_i``.
    B: ``(S, H_in)`` complex64, input rows of ``B_bar`` (``H_in = 1`` for a
      multi-SISO layer, whose state feeds the single channel ``channel[i]``).
    C: ``(D, H_out, S)`` complex64, output columns; ``D = 2`` when
      bidirectional (forward, backward), else 1. ``H_out = 1`` for multi-SISO.
    valid: ``(S,)`` bool, live slots (see the module docstring).
    channel: ``(S,)`` int32 channel of each state for a multi-SISO layer, or
      None for a MIMO layer.
    output_scale: 2.0 when each stored state is a conjugate pair (the layer
      outputs ``2 Re(C x)``), else 1.0 (``Re(C x)``).
    feedthrough: ``(H,)`` float32 skip term ``D`` (``y += D * u``), or None.
  """

  poles: jax.Array
  B: jax.Array
  C: jax.Array
  valid: jax.Array
  channel: jax.Array | None = None
  output_scale: float = 1.0
  feedthrough: jax.Array | None = None

  @property
  def num_slots(self) -> int:
    return int(self.poles.shape[0])

  @property
  def bidirectional(self) -> bool:
    return int(self.C.shape[0]) == 2


KINDS = ("lti", "selective")


@runtime_checkable
class PrunableSSM(Protocol):
  """What every prunable layer implements, of either kind (module docstring).

  Subclassing :class:`SSMLayer` gives ``mask_states`` and ``prune_states``
  for free (and the zero ``init_state`` of an LTI layer); a layer then declares
  its state-carrying parameters and implements what its kind needs:
  ``state_modes`` (`LTISSM`) or ``state_statistics`` (`SelectiveSSM`),
  ``__call__`` and ``step``, its recurrence in its native layout.
  `last_nnx.ssm.conformance.check_protocol` lists what a layer is missing.
  """

  state_mask: StateMask

  @property
  def state_shape(self) -> tuple[int, ...]:
    """Shape of the state slots: ``(P,)``, ``(H, N)`` or ``(G, N)``."""
    ...

  def mask_states(self, keep: np.ndarray) -> None:
    """Zeroes the slots where ``keep`` (bool, ``(S,)`` or ``state_shape``) is False; shapes kept."""
    ...

  def prune_states(self, keep: np.ndarray) -> dict[str, Callable[[jax.Array], jax.Array]]:
    """Physically removes the slots where ``keep`` is False.

    Returns, per state-carrying parameter name, the function that maps an
    array shaped like that parameter (before pruning) to its pruned shape, so
    the caller can apply the same surgery to optimizer moments.
    """
    ...

  def init_state(self, batch_size: int):
    """Zero recurrent state for streaming the layer as an RNN with `step`.

    LTI layers return ``(batch_size,) + state_shape`` complex64 zeros (``(B, P)``
    MIMO, ``(B, H, N)`` multi-SISO, N the padded width after ragged
    compaction); a selective layer any pytree of batch-first arrays. Raises
    ValueError for a bidirectional layer: its output at time t depends on
    future inputs, so it cannot stream.
    """
    ...

  def step(self, state, u_t: jax.Array) -> tuple:
    """One causal time step: ``(state, u_t (B, H)) -> (new_state, y_t (B, H))``.

    Stepping ``init_state(B)`` through ``u[:, 0], u[:, 1], ...`` reproduces
    ``self(u)[:, t]`` (dense, masked or compacted; masked and padding slots get
    no input and stay zero). Raises ValueError for a bidirectional layer.
    """
    ...


@runtime_checkable
class LTISSM(PrunableSSM, Protocol):
  """A linear time-invariant diagonal layer: its fixed one-state subsystems."""

  def state_modes(self) -> StateModes:
    """Discretized one-state subsystems, flattened over ``state_shape``."""
    ...


@runtime_checkable
class SelectiveSSM(PrunableSSM, Protocol):
  """A selective layer (``selective = True``): per-state statistics of real inputs."""

  selective: bool

  def record_input(self, u: jax.Array) -> None:
    """Sows the layer input ``u (B, L, H)`` (see `SSMLayer.record_input`)."""
    ...

  def state_statistics(self, u: jax.Array, lengths: jax.Array | None = None) -> dict:
    """``{"output_energy", "controllability", "observability"}``, float32 ``state_shape``.

    Means over the batch and the valid steps ``t < lengths[b]`` of ``u (B, L, H)``
    (the layer's input, as recorded); 0 on dead slots. Jittable.
    """
    ...


def layer_kind(layer) -> str:
  """``'selective'`` or ``'lti'``: the kind of a layer or layer class (module docstring).

  The one place the kind is read: the class attribute ``selective``.
  """
  return "selective" if getattr(layer, "selective", False) else "lti"


def is_selective(layer) -> bool:
  """Whether ``layer`` (or a layer class) is of the ``'selective'`` kind."""
  return layer_kind(layer) == "selective"


def live_states(layer) -> int:
  """Live (unpruned, non-padding) state slots of a layer of either kind."""
  return int((np.asarray(layer.state_mask[...]) > 0).sum())


def compaction_index(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Gather index for ragged compaction of the last state axis.

  Args:
    keep: bool array of shape ``state_shape`` (``(N,)`` or ``(G, N)``).

  Returns:
    ``(index, mask)``, both shaped ``(..., N')`` with ``N' = max(1, max kept
    per group)``: ``index`` int32 lists each group's kept slots in order, padded
    with the group's first kept slot (or 0); ``mask`` float32 is 1 on real
    entries and 0 on padding.
  """
  keep = np.asarray(keep, dtype=bool)
  groups = keep.reshape(-1, keep.shape[-1])
  counts = groups.sum(axis=1)
  width = max(1, int(counts.max(initial=0)))
  index = np.zeros((groups.shape[0], width), dtype=np.int32)
  mask = np.zeros((groups.shape[0], width), dtype=np.float32)
  for g, row in enumerate(groups):
    kept = np.flatnonzero(row)
    index[g, : len(kept)] = kept
    index[g, len(kept) :] = kept[0] if len(kept) else 0
    mask[g, : len(kept)] = 1.0
  out_shape = keep.shape[:-1] + (width,)
  return index.reshape(out_shape), mask.reshape(out_shape)


def gather_states(array: jax.Array, index: np.ndarray, axis: int) -> jax.Array:
  """Gathers ``index`` (shape ``state_shape'``) from the state axes of ``array``.

  The state axes of ``array`` are the ``index.ndim`` consecutive axes starting
  at ``axis``; for two state axes ``(G, N)`` the gather is ragged per group.
  """
  n = index.ndim
  moved = jnp.moveaxis(array, tuple(range(axis, axis + n)), tuple(range(n)))
  if n == 1:
    out = moved[index]
  elif n == 2:
    out = moved[np.arange(index.shape[0])[:, None], index]
  else:
    raise ValueError(f"at most two state axes are supported, got {n}")
  return jnp.moveaxis(out, tuple(range(n)), tuple(range(axis, axis + n)))


class SSMLayer(nnx.Module):
  """The base class of every SSM layer type, of either kind: masking, compaction,
  input recording and the zero streaming state of `PrunableSSM`.

  Subclasses set ``self.state_mask = StateMask(ones(state_shape))`` and list
  their state-carrying parameters in ``STATE_AXES``: attribute name -> the
  first of that parameter's state axes (the state axes are consecutive and
  have the layout of ``state_shape``). ``mask_states``/``prune_states`` then
  work without further code.

  ``PARAM_ROLES`` maps a subclass's parameter names onto their optimizer roles
  (`last_nnx.train.optim.ROLES`: ``dynamics`` the poles, ``step`` the step size,
  ``input``, ``output``, ``feedthrough``): the role decides the learning rate and
  weight decay. Parameters named like S5's (``Lambda_re``, ``B``, ``log_step``...)
  need no entry.
  """

  STATE_AXES: dict[str, int] = {}
  PARAM_ROLES: dict[str, str] = {}
  state_mask: StateMask

  @property
  def state_shape(self) -> tuple[int, ...]:
    return tuple(self.state_mask.shape)

  def _check_keep(self, keep) -> np.ndarray:
    keep = np.asarray(keep, dtype=bool)
    size = int(np.prod(self.state_shape))
    if keep.shape != (size,) and keep.shape != self.state_shape:
      raise ValueError(
        f"{type(self).__name__}: keep has shape {keep.shape}, expected ({size},) "
        f"(flattened slots of state_shape {self.state_shape})"
      )
    return keep.reshape(self.state_shape)

  def mask_states(self, keep) -> None:
    keep = self._check_keep(keep)
    self.state_mask.set_value(self.state_mask.get_value() * jnp.asarray(keep, jnp.float32))

  def record_input(self, u: jax.Array) -> None:
    """Sows ``u`` (``(B, L, H)``) as an `SSMInput` while input recording is on.

    Every layer type calls this first thing in ``__call__``. It is a no-op
    unless ``self.recording_input`` is True (set by
    `last_nnx.pruning.calibration.capture_inputs` around calibration forward
    passes), so training never stores activations.
    """
    if getattr(self, "recording_input", False):
      self.sow(SSMInput, RECORDED_INPUT, u)

  def load_state_modes(self, modes: StateModes) -> None:
    """Sets the parameters so that ``state_modes()`` equals ``modes`` (all slots live).

    ``modes`` has the layer's ``output_scale``, input/output widths and number
    of directions; its number of states is free (for a multi-SISO layer
    ``modes.channel`` says which channel owns each state). Layers that
    support balanced reduction override this.
    """
    raise NotImplementedError(
      f"{type(self).__name__} does not implement load_state_modes(modes) (the inverse of "
      "state_modes), which balanced reduction needs; see last_nnx/ssm/s5.py for an example"
    )

  def _check_streamable(self) -> None:
    if getattr(self, "bidirectional", False):
      raise ValueError(
        f"{type(self).__name__} is bidirectional: its output at time t depends "
        "on future inputs, so it cannot run as a streaming RNN"
      )

  def init_state(self, batch_size: int) -> jax.Array:
    """Zero state ``(batch_size,) + state_shape`` complex64 for ``step`` (causal layers
    only): ``(B, P)`` for S5, ``(B, H, n)`` for S4D (``n`` the padded width after ragged
    compaction; padding slots stay zero), ``(B, S)`` for the LRU."""
    self._check_streamable()
    return jnp.zeros((batch_size,) + self.state_shape, jnp.complex64)

  def prune_states(self, keep) -> dict[str, Callable[[jax.Array], jax.Array]]:
    keep = self._check_keep(keep) & (np.asarray(self.state_mask.get_value()) > 0)
    index, new_mask = compaction_index(keep)
    transforms = {
      name: (lambda a, ax=axis: gather_states(a, index, ax))
      for name, axis in self.STATE_AXES.items()
    }
    for name, fn in transforms.items():
      var = getattr(self, name)
      var.set_value(fn(var.get_value()))
    self.state_mask.set_value(jnp.asarray(new_mask))
    return transforms


DiagonalSSM = SSMLayer  # its former name, from when every layer type was diagonal LTI


def find_prunable_layers(module: nnx.Module) -> dict[str, PrunableSSM]:
  """All `PrunableSSM` submodules of ``module`` (both kinds), keyed by dotted path."""
  layers = {}
  for path, node in nnx.iter_graph(module):
    if isinstance(node, nnx.Module) and isinstance(node, PrunableSSM) and path:
      layers[".".join(str(p) for p in path)] = node
  return layers
