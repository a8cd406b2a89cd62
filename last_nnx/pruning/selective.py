"""Scores for selective SSM layers (Mamba-2): what each state does on real inputs.

A selective layer (`last_nnx.ssm.base.SelectiveSSM`) has no fixed poles: its
decay ``a_t = exp(dt_t A)`` and its ``B_t, C_t`` depend on the input. Its state
rows still evolve independently (the decay is a scalar per head), so the output
is exactly a sum of per-state parts, ``y_t,h = sum_n C_t,g[n] H_t,h[n, :] + D_h
x_t,h``, and state ``n`` of group ``g`` can be removed without approximating the
rest. What a state is worth depends on the data, so the scores are taken from
the layer's ``state_statistics`` on a few calibration batches (its recorded
input ``u``, `last_nnx.pruning.calibration.capture_inputs`), averaged over the
valid steps of all batches (each batch weighted by its number of valid steps):

    E[g, n]  = mean_{b,t} sum_{h in g} || C_t,g[n] H_t,h[n, :] ||^2     output energy
    Wc[g, n] = mean_{b,t} sum_{h in g} || H_t,h[n, :] ||^2              controllability
    Wo[g, n] = mean_{b,t} C_t,g[n]^2                                    observability

Criteria (the same names as for LTI layers where the idea carries over):

=============  ==============================================================  ==========
name           score of state (g, n)                                           allocation
=============  ==============================================================  ==========
calibrated     ``E``, then LAST's layer-energy normalization                   global
gramian        ``Wc Wo`` (the squared Hankel singular value of a diagonal      global
               system whose Gramians are diagonal, in the spirit of GHOST,
               arXiv 2602.11408), then layer-energy normalization
magnitude      ``prod_p ||p[:, g, n]||`` over the layer's ``STATE_IO``          global
               parameters (Mamba-2: the state's columns of the B and C
               in-projections): data-free, a baseline only (magnitude
               pruning of d_state is reported worse than random there)
uniform        ``E`` within each layer, the same fraction kept per layer        uniform
random         uniform random in [0, 1)                                        global
=============  ==============================================================  ==========

LAST's two ideas carry over unchanged: the layer-energy normalization
``s_i / sum_{j: s_j >= s_i} s_j`` makes layers comparable, and one global
threshold gives layer-adaptive ratios. Every group keeps at least one state
(`last_nnx.pruning.allocate`, ``groups``). Normalization runs over the whole
layer (all groups). The squares (``E``, ``Wc Wo``) are the energies, as LAST
normalizes squared H-inf norms; ranking by ``sqrt(Wc Wo)`` inside a layer is the
same order. The "energy kept" diagnostic of a report is the share of ``E`` kept
when the statistics were computed, else the share of the squared magnitude.
"""

import dataclasses
from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.pruning.calibration import DEFAULT_BATCHES, mean_over_steps, valid_steps
from last_nnx.pruning.criteria import layer_energy_normalize, register_criterion
from last_nnx.pruning.layers import prunable_layers
from last_nnx.ssm.base import is_selective

STATISTICS = ("output_energy", "controllability", "observability")


@dataclasses.dataclass(frozen=True)
class StateStatistics:
  """What the engine sees of one selective layer; every field flat over ``state_shape``.

  Attributes:
    valid: ``(S,)`` bool live slots.
    group: ``(S,)`` int32 group of each slot (its row of ``state_shape``).
    weight_norm: ``(S,)`` float64 data-free magnitude (module docstring).
    output_energy, controllability, observability: ``(S,)`` float64 means on
      the calibration batches (0 on dead slots), or None when no data was read.
  """

  valid: np.ndarray
  group: np.ndarray
  weight_norm: np.ndarray
  output_energy: np.ndarray | None = None
  controllability: np.ndarray | None = None
  observability: np.ndarray | None = None

  @property
  def num_slots(self) -> int:
    return int(self.valid.shape[0])

  def require(self, criterion: str) -> None:
    if self.output_energy is None:
      raise ValueError(
        f"criterion {criterion!r} scores selective states on real inputs: "
        "pass calibration= (a few training batches of (inputs, lengths))"
      )


def weight_norms(layer) -> np.ndarray:
  """``state_shape`` float64: product over ``STATE_IO`` of each state's column norm.

  A parameter ``p`` in ``STATE_AXES`` with state axes at ``a, a+1`` contributes
  the l2 norm of ``p`` over its other axes at each slot. Without ``STATE_IO``
  the layer's ``STATE_AXES`` parameters are all used. Dead slots give 0.
  """
  axes = type(layer).STATE_AXES
  names = getattr(type(layer), "STATE_IO", None) or tuple(axes)
  shape = tuple(layer.state_shape)
  out = np.ones(shape)
  for name in names:
    value = np.asarray(getattr(layer, name)[...], np.float64)
    a = axes[name]
    moved = np.moveaxis(value, tuple(range(a, a + len(shape))), tuple(range(len(shape))))
    out *= np.sqrt(np.sum(moved.reshape(shape + (-1,)) ** 2, axis=-1))
  return np.where(np.asarray(layer.state_mask[...]) > 0, out, 0.0)


def layer_view(layer, stats: dict | None = None) -> StateStatistics:
  """The `StateStatistics` of ``layer`` (``stats``: its `statistics` entry, or None)."""
  shape = tuple(layer.state_shape)
  valid = (np.asarray(layer.state_mask[...]) > 0).reshape(-1)
  group = (
    np.repeat(np.arange(shape[0]), int(np.prod(shape[1:])))
    if len(shape) == 2
    else np.zeros(valid.shape, np.int32)
  )
  flat = {k: np.asarray(stats[k], np.float64).reshape(-1) for k in STATISTICS} if stats else {}
  return StateStatistics(
    valid=valid, group=group.astype(np.int32), weight_norm=weight_norms(layer).reshape(-1), **flat
  )


@nnx.jit
def _layer_statistics(layer, u, lengths):
  return layer.state_statistics(u, lengths)


def statistics(
  model: nnx.Module, batches: Iterable, max_batches: int = DEFAULT_BATCHES, paths=None
) -> dict[str, dict[str, np.ndarray]]:
  """``{layer_path: {statistic: state_shape float64}}`` for every selective layer.

  Means over the valid steps of at most ``max_batches`` of ``batches`` (see
  `calibration.mean_over_steps`), each batch weighted by its valid steps.
  ``paths``: only those layers (None: all). ``{}`` when the model has no
  selective layer (no batch is read then).
  """
  layers = {
    p: l
    for p, l in prunable_layers(model).items()
    if is_selective(l) and (paths is None or p in paths)
  }
  if not layers:
    return {}

  def add(totals, recorded, lengths):
    n = valid_steps(recorded[next(iter(layers))], lengths)
    for path, layer in layers.items():
      means = _layer_statistics(layer, recorded[path], jnp.asarray(lengths))
      for k in STATISTICS:
        totals[path][k] += n * np.asarray(means[k], np.float64)

  return mean_over_steps(
    model,
    batches,
    max_batches,
    {p: {k: np.zeros(l.state_shape) for k in STATISTICS} for p, l in layers.items()},
    add,
  )


def energy(view: StateStatistics) -> np.ndarray:
  """``(S,)`` energy for the "energy kept" diagnostic (module docstring), 0 on dead slots."""
  e = view.output_energy if view.output_energy is not None else view.weight_norm**2
  return np.where(view.valid, e, 0.0)


@register_criterion("calibrated", kind="selective", norm="h2", calibrated=True)
def _calibrated(view: StateStatistics, *, rng):
  del rng
  view.require("calibrated")
  return layer_energy_normalize(view.output_energy, view.valid)


@register_criterion("gramian", kind="selective", norm="h2", calibrated=True)
def _gramian(view: StateStatistics, *, rng):
  del rng
  view.require("gramian")
  return layer_energy_normalize(view.controllability * view.observability, view.valid)


@register_criterion("magnitude", kind="selective")
def _magnitude(view: StateStatistics, *, rng):
  del rng
  return view.weight_norm


@register_criterion("uniform", kind="selective", allocation="uniform", calibrated=True)
def _uniform(view: StateStatistics, *, rng):
  del rng
  view.require("uniform")
  return view.output_energy


@register_criterion("random", kind="selective")
def _random(view: StateStatistics, *, rng):
  return rng.random(view.num_slots)
