"""Pruning criteria: a per-state score and the allocation rule it is used with.

A criterion maps a layer's `StateModes` to one score per slot (higher = more
important). How scores become keep-sets is its ``allocation``: ``'global'``
ranks all states of all layers on one scale and keeps the strongest overall
(one threshold); ``'uniform'`` keeps the same fraction in every layer.

Presets:

=============  =========================================  ==========
name           score                                       allocation
=============  =========================================  ==========
last           H-inf^2, normalized by layer energy (LAST)  global
energy         H2 energy, normalized by layer energy       global
               (the AIRE-Prune criterion)
global_hinf    H-inf^2, not normalized                     global
uniform        H-inf^2 within each layer                   uniform
magnitude      pole magnitude ``|lam_i|``                  global
random         uniform random                              global
=============  =========================================  ==========

Add one with::

    @register_criterion("my_score")
    def my_score(modes, *, rng, bidirectional):
      return jnp.abs(modes.poles) * jnp.sum(jnp.abs(modes.B) ** 2, axis=1)
"""

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

from last_nnx.pruning import hinf
from last_nnx.ssm.base import StateModes

ScoreFn = Callable[..., jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class Criterion:
  name: str
  score_fn: ScoreFn  # (modes, *, rng: np.random.Generator, bidirectional: str) -> (S,)
  allocation: str  # 'global' | 'uniform'


_CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str, *, allocation: str = "global"):
  """Decorator registering ``fn(modes, *, rng, bidirectional) -> (S,) scores``."""
  if allocation not in ("global", "uniform"):
    raise ValueError(f"allocation must be 'global' or 'uniform', got {allocation!r}")

  def wrap(fn: ScoreFn) -> ScoreFn:
    _CRITERIA[name] = Criterion(name, fn, allocation)
    return fn
  return wrap


def registered_criteria() -> tuple[str, ...]:
  return tuple(sorted(_CRITERIA))


def get_criterion(name: str) -> Criterion:
  if name not in _CRITERIA:
    raise ValueError(f"unknown pruning criterion {name!r}; registered: {registered_criteria()}")
  return _CRITERIA[name]


def layer_energy_normalize(h: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """LAST normalization: ``h_i / sum_{j valid, h_j >= h_i} h_j``.

  Args:
    h: ``(S,)`` nonnegative scores of one layer.
    valid: ``(S,)`` bool; invalid slots are ignored and come back as 0.

  Returns:
    ``(S,)`` float64 in (0, 1]; the strongest valid state scores exactly 1.
    Ties share one denominator (all tied states count as "at least as strong").
  """
  h = np.asarray(h, np.float64)
  out = np.zeros_like(h)
  v = np.asarray(valid, bool)
  if not v.any():
    return out
  hv = h[v]
  desc = np.sort(hv)[::-1]
  cumulative = np.cumsum(desc)
  # number of states >= h_i, ties included
  at_least = np.searchsorted(-desc, -hv, side="right")
  denom = cumulative[at_least - 1]
  out[v] = np.where(denom > 0, hv / np.where(denom > 0, denom, 1.0), 1.0)
  return out


def _normalized(norm_fn):
  def score(modes: StateModes, *, rng, bidirectional: str):
    del rng
    h = np.asarray(norm_fn(modes, bidirectional=bidirectional))
    return layer_energy_normalize(h, np.asarray(modes.valid))
  return score


register_criterion("last")(_normalized(hinf.hinf_squared))
register_criterion("energy")(_normalized(hinf.h2_energy))


@register_criterion("global_hinf")
def _global_hinf(modes, *, rng, bidirectional):
  del rng
  return hinf.hinf_squared(modes, bidirectional=bidirectional)


register_criterion("uniform", allocation="uniform")(_global_hinf)


@register_criterion("magnitude")
def _magnitude(modes, *, rng, bidirectional):
  del rng, bidirectional
  return jnp.abs(modes.poles)


@register_criterion("random")
def _random(modes, *, rng, bidirectional):
  del bidirectional
  return rng.random(modes.num_slots)


def layer_scores(modes: StateModes, criterion: str, *, rng: np.random.Generator,
                 bidirectional: str = "sum") -> np.ndarray:
  """``(S,)`` float64 scores of one layer; invalid slots are ``-inf``."""
  crit = get_criterion(criterion)
  scores = np.asarray(crit.score_fn(modes, rng=rng, bidirectional=bidirectional), np.float64)
  if scores.shape != (modes.num_slots,):
    raise ValueError(f"criterion {criterion!r} returned shape {scores.shape}, "
                     f"expected ({modes.num_slots},)")
  return np.where(np.asarray(modes.valid), scores, -np.inf)
