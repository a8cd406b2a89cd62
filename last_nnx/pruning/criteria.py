"""Pruning criteria: a per-state score and the allocation rule it is used with.

A criterion maps one layer's view to one score per slot, ``(S,)``, higher =
more important. The view depends on the layer's kind (`last_nnx.ssm.base`):
`StateModes` for an LTI layer, `last_nnx.pruning.selective.StateStatistics`
for a selective one. A criterion declares the kinds it applies to by
registering one function per kind (``kind='lti'``, the default, or
``kind='selective'``, `last_nnx.pruning.selective`); asked of a layer kind it
does not cover, it is refused with a ValueError naming the criteria that
apply (`check_applies`). How scores become keep sets is its ``allocation``:
``'global'`` ranks the states of all layers on one scale and keeps the
strongest overall (one threshold); ``'uniform'`` keeps the same fraction in
every layer. Each criterion also names the system ``norm`` (``'hinf2'`` or
``'h2'``) whose per-layer share is reported as "energy kept" in diagnostics.

Presets (composed of a per-state system norm and an allocation rule):

=============  ===============================================  ==========  ======
name           score                                             allocation  norm
=============  ===============================================  ==========  ======
last           H-inf^2, then layer-energy normalization (LAST)   global      hinf2
energy         H2 energy, then layer-energy normalization        global      h2
               (the AIRE-Prune criterion)
global_hinf    H-inf^2, not normalized                           global      hinf2
uniform        H-inf^2 within each layer                         uniform     hinf2
magnitude      pole magnitude ``|lam_i|``                        global      hinf2
random         uniform random in [0, 1) from ``rng``             global      hinf2
calibrated     output energy on calibration batches, then        global      h2
               layer-energy normalization (`calibrated`)
gramian        selective only: GHOST-style sqrt(Wc Wo) from          global      h2
               calibration statistics, normalized (`selective`)
balanced       balanced truncation: layer-normalized squared     global      h2
               Hankel singular values; a projection, not a
               subset (`balanced`)
=============  ===============================================  ==========  ======

For selective layers (`last_nnx.pruning.selective`): ``calibrated``,
``gramian``, ``magnitude`` (a data-free baseline), ``uniform`` (output energy
within each layer) and ``random``.

Add a criterion by registering one function::

    @register_criterion("b_energy")
    def b_energy(modes, *, rng):
      return jnp.sum(jnp.abs(modes.B) ** 2, axis=1)

It may also accept ``bidirectional`` (``'sum'`` or ``'reference'``) and
``horizon`` (the sequence length the norms are taken over, None = infinite),
passed through from `prune`. Invalid slots (pruned or padding) are overwritten with
``-inf`` afterwards, so the function can ignore ``modes.valid`` unless its
scores depend on the other states of the layer (as the normalization does).
"""

import dataclasses
import inspect
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from last_nnx.pruning import hinf
from last_nnx.ssm.base import KINDS, StateModes

ScoreFn = Callable[..., jnp.ndarray]
ALLOCATIONS = ("global", "uniform")
NORMS = {"hinf2": hinf.hinf_squared, "h2": hinf.h2_energy}


@dataclasses.dataclass(frozen=True)
class Criterion:
  """A registered criterion.

  Attributes:
    name: registry key.
    score_fn: LTI layers: ``(modes, *, rng[, bidirectional, horizon,
      calibration]) -> (S,)`` scores; None if the criterion does not apply to
      them.
    allocation: ``'global'`` or ``'uniform'``.
    norm: key of `NORMS`, the per-state energy used for LTI diagnostics.
    calibrated: on LTI layers the score needs calibration data: ``score_fn``
      takes ``calibration``, the layer's ``(S,)`` output energies on real
      inputs (`last_nnx.pruning.calibrated`).
    reduction: not a subset of modes: `last_nnx.pruning.prune` projects
      each layer onto fewer states (`last_nnx.pruning.balanced.reduce_layer`);
      ``score_fn`` gives its layer-normalized squared Hankel singular values
      (one per live slot, strongest first).
    selective_fn: selective layers: ``(stats, *, rng) -> (S,)`` scores of a
      `last_nnx.pruning.selective.StateStatistics`; None if it does not apply.
    selective_calibrated: on selective layers the score needs the layer's
      statistics on calibration batches.
  """

  name: str
  score_fn: ScoreFn | None
  allocation: str
  norm: str = "hinf2"
  calibrated: bool = False
  reduction: bool = False
  selective_fn: ScoreFn | None = None
  selective_calibrated: bool = False

  @property
  def kinds(self) -> tuple[str, ...]:
    """The layer kinds (``'lti'``, ``'selective'``) this criterion applies to."""
    return tuple(
      k for k, fn in (("lti", self.score_fn), ("selective", self.selective_fn)) if fn is not None
    )

  def needs_data(self, kind: str) -> bool:
    """Whether scoring a layer of ``kind`` needs calibration batches."""
    return self.selective_calibrated if kind == "selective" else self.calibrated

  def takes(self, option: str) -> bool:
    """Whether ``score_fn`` accepts the keyword ``option``."""
    params = inspect.signature(self.score_fn).parameters
    return option in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


_CRITERIA: dict[str, Criterion] = {}


def register_criterion(
  name: str,
  *,
  kind: str = "lti",
  allocation: str = "global",
  norm: str = "hinf2",
  calibrated: bool = False,
  reduction: bool = False,
):
  """Decorator registering ``fn(view, *, rng) -> (S,) scores`` under ``name`` for ``kind``.

  Args:
    name: the criterion's name (re-registering a name for a kind replaces that
      kind's function; the other kind's stays).
    kind: ``'lti'`` (``fn`` scores a `StateModes`) or ``'selective'`` (``fn``
      scores a `last_nnx.pruning.selective.StateStatistics`).
    allocation: ``'global'`` (one threshold over all layers) or ``'uniform'``
      (the same fraction per layer); one per name, whatever the kind.
    norm: ``'hinf2'`` or ``'h2'``: the energy whose per-layer share kept the
      report shows (LTI layers).
    calibrated: the score needs calibration data for this kind.
    reduction: LTI only, see `Criterion`.

  ``rng`` is a ``np.random.Generator``; an LTI ``fn`` may also take the keywords
  ``bidirectional`` and ``horizon``, and ``calibration`` when ``calibrated``.
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  if allocation not in ALLOCATIONS:
    raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
  if norm not in NORMS:
    raise ValueError(f"norm must be one of {tuple(NORMS)}, got {norm!r}")

  def wrap(fn: ScoreFn) -> ScoreFn:
    old = _CRITERIA.get(name)
    if old is not None and old.allocation != allocation and old.kinds != (kind,):
      raise ValueError(
        f"criterion {name!r} is registered with allocation "
        f"{old.allocation!r}; its {kind} function must use the same"
      )
    if kind == "lti":
      _CRITERIA[name] = Criterion(
        name,
        fn,
        allocation,
        norm,
        calibrated,
        reduction,
        old.selective_fn if old else None,
        old.selective_calibrated if old else False,
      )
    else:
      base = old or Criterion(name, None, allocation, norm)
      _CRITERIA[name] = dataclasses.replace(base, selective_fn=fn, selective_calibrated=calibrated)
    return fn

  return wrap


def registered_criteria(kind: str | None = None) -> tuple[str, ...]:
  """Names of every registered criterion (that applies to ``kind``, if given), sorted."""
  return tuple(sorted(n for n, c in _CRITERIA.items() if kind is None or kind in c.kinds))


def get_criterion(name: str) -> Criterion:
  if name not in _CRITERIA:
    raise ValueError(
      f"unknown pruning criterion {name!r}; registered: {registered_criteria()} "
      "(add one with last_nnx.pruning.register_criterion)"
    )
  return _CRITERIA[name]


def applicable_criteria(kinds) -> tuple[str, ...]:
  """Criteria that apply to every layer kind in ``kinds``, sorted."""
  kinds = set(kinds)
  return tuple(n for n in registered_criteria() if kinds <= set(_CRITERIA[n].kinds))


def check_applies(criterion: str, kinds: dict[str, str]) -> Criterion:
  """The criterion, if it applies to every layer; else a one-line ValueError.

  Args:
    criterion: a registered name.
    kinds: ``{layer_path: 'lti' or 'selective'}``.
  """
  crit = get_criterion(criterion)
  missing = sorted({k for k in kinds.values() if k not in crit.kinds})
  if missing:
    first = next(p for p, k in kinds.items() if k == missing[0])
    raise ValueError(
      f"criterion {criterion!r} does not apply to {missing[0]} SSM layers "
      f"({first or 'the model'}): use one of "
      f"{', '.join(applicable_criteria(kinds.values()))}"
    )
  return crit


def layer_energy_normalize(h, valid) -> np.ndarray:
  """LAST normalization ``last_i = h_i / sum_{j valid: h_j >= h_i} h_j``.

  States are ranked by ``(-h, slot index)`` and each is divided by the sum of
  its own and all higher-ranked valid energies (the reference's sort + cumsum).
  Without ties this is the formula above; with ties the lower slot index
  counts as the stronger one, so the result is deterministic and the
  strongest valid state scores exactly 1.

  Args:
    h: ``(S,)`` nonnegative energies of one layer.
    valid: ``(S,)`` bool; invalid slots are ignored and come back as 0.

  Returns:
    ``(S,)`` float64 in [0, 1]; 0 only for zero energy (or invalid slots).
  """
  h = np.asarray(h, np.float64)
  v = np.asarray(valid, bool)
  out = np.zeros_like(h)
  live = np.flatnonzero(v)
  if live.size == 0:
    return out
  order = live[np.lexsort((live, -h[live]))]  # strongest first, ties by slot
  cumulative = np.cumsum(h[order])
  # A zero denominator means every state so far has zero energy: call it 1
  # (the strongest state still scores 1, ties then resolve by slot index).
  out[order] = np.where(cumulative > 0, h[order] / np.where(cumulative > 0, cumulative, 1.0), 1.0)
  return out


def normalized(norm: str):
  """Score function: the ``norm`` energy, then layer-energy normalization."""
  norm_fn = NORMS[norm]

  def score(modes: StateModes, *, rng, bidirectional: str = "sum", horizon: int | None = None):
    del rng
    h = np.asarray(norm_fn(modes, bidirectional=bidirectional, horizon=horizon))
    return layer_energy_normalize(h, np.asarray(modes.valid))

  return score


def raw(norm: str):
  """Score function: the ``norm`` energy itself (no normalization)."""
  norm_fn = NORMS[norm]

  def score(modes: StateModes, *, rng, bidirectional: str = "sum", horizon: int | None = None):
    del rng
    return norm_fn(modes, bidirectional=bidirectional, horizon=horizon)

  return score


register_criterion("last")(normalized("hinf2"))
register_criterion("energy", norm="h2")(normalized("h2"))
register_criterion("global_hinf")(raw("hinf2"))
# Within a layer, H-inf^2 ranks the states exactly as H-inf does.
register_criterion("uniform", allocation="uniform")(raw("hinf2"))


@register_criterion("calibrated", norm="h2", calibrated=True)
def _calibrated(modes: StateModes, *, rng, calibration):
  """Output energy on calibration batches, then LAST's layer-energy normalization."""
  del rng
  return layer_energy_normalize(np.asarray(calibration, np.float64), np.asarray(modes.valid))


@register_criterion("magnitude")
def _magnitude(modes: StateModes, *, rng):
  del rng
  return jnp.abs(modes.poles)


@register_criterion("random")
def _random(modes: StateModes, *, rng):
  return rng.random(modes.num_slots)


def layer_scores(
  modes,
  criterion: str,
  *,
  rng: np.random.Generator,
  bidirectional: str = "sum",
  horizon: int | None = None,
  calibration: np.ndarray | None = None,
) -> np.ndarray:
  """Scores of one layer under ``criterion``.

  ``modes`` is the layer's view: its `StateModes` (LTI) or its
  `last_nnx.pruning.selective.StateStatistics` (selective; ``bidirectional``,
  ``horizon`` and ``calibration`` do not apply, the statistics are in the
  view). ``bidirectional`` and ``horizon`` reach LTI criteria whose function
  takes them (the norm-based ones); the others ignore them. ``calibration``
  (the layer's ``(S,)`` output energies,
  `last_nnx.pruning.calibrated.output_energies`) is required by calibrated
  LTI criteria.

  Returns:
    ``(S,)`` float64, ``-inf`` on invalid slots (pruned or padding).

  Raises:
    ValueError: unknown criterion, wrong output shape, or NaN scores on valid
      slots (diverged weights).
  """
  hinf.check_bidirectional(bidirectional)
  hinf.check_horizon(horizon)
  crit = get_criterion(criterion)
  if not isinstance(modes, StateModes):
    crit = check_applies(criterion, {"": "selective"})
    return _finish(crit.selective_fn(modes, rng=rng), modes, criterion)
  check_applies(criterion, {"": "lti"})
  options = {"bidirectional": bidirectional, "horizon": horizon}
  kwargs = {k: v for k, v in options.items() if crit.takes(k)}
  if crit.calibrated:
    if calibration is None:
      raise ValueError(
        f"criterion {criterion!r} scores states on real inputs: pass "
        "calibration= (a few training batches of (inputs, lengths))"
      )
    kwargs["calibration"] = calibration
  return _finish(crit.score_fn(modes, rng=rng, **kwargs), modes, criterion)


def _finish(scores, modes, criterion: str) -> np.ndarray:
  """Checks a layer's scores (shape, NaN) and puts ``-inf`` on invalid slots."""
  scores = np.asarray(scores, np.float64)
  if scores.shape != (modes.num_slots,):
    raise ValueError(
      f"criterion {criterion!r} returned shape {scores.shape}, "
      f"expected ({modes.num_slots},): one score per state slot"
    )
  valid = np.asarray(modes.valid, bool)
  if np.isnan(scores[valid]).any():
    raise ValueError(
      f"criterion {criterion!r} gave NaN scores to "
      f"{int(np.isnan(scores[valid]).sum())} live states: are the layer's "
      "parameters finite?"
    )
  return np.where(valid, scores, -np.inf)


def layer_energy(
  modes: StateModes, criterion: str, bidirectional: str = "sum", horizon: int | None = None
) -> np.ndarray:
  """``(S,)`` float64 energy of the criterion's norm (0 on invalid slots), for diagnostics."""
  norm_fn = NORMS[get_criterion(criterion).norm]
  e = np.asarray(norm_fn(modes, bidirectional=bidirectional, horizon=horizon), np.float64)
  return np.where(np.asarray(modes.valid, bool), e, 0.0)
