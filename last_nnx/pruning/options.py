"""How a pruning event is asked for: `PruneOptions`, validated once, and seeds.

Every way into the pipeline (`last_nnx.pruning.prune`, ``score``, the training
loop's events, the watch, the saved-model pruner, the sweeps) builds one
`PruneOptions`; its checks are the only ones, so a bad setting fails the same
way, with the same one-line message, wherever it comes from.

``horizon`` is the library's: None (the paper's infinite-horizon norms) or a
number of steps ``T >= 1``. A config's ``pruning.horizon`` (``0`` infinite,
``-1`` the task's sequence length, ``T``) is converted once, at the edge, by
`PruneOptions.from_config` (`last_nnx.pruning.hinf.resolve_horizon`).
"""

import dataclasses
from typing import Any

import numpy as np

from last_nnx.pruning import hinf
from last_nnx.pruning.allocate import check_min_per_layer
from last_nnx.pruning.apply import MODES
from last_nnx.pruning.calibration import DEFAULT_BATCHES
from last_nnx.pruning.criteria import Criterion, get_criterion


def as_generator(seed) -> np.random.Generator:
  """``seed`` as a numpy Generator: None (seed 0), an int, a sequence of ints, a
  Generator (used as it is) or a jax PRNG key."""
  if isinstance(seed, np.random.Generator):
    return seed
  if seed is None:
    return np.random.default_rng(0)
  if isinstance(seed, (int, np.integer)):
    return np.random.default_rng(int(seed))
  if isinstance(seed, (tuple, list)):
    return np.random.default_rng([int(s) for s in seed])
  import jax  # a jax PRNG key (typed or raw uint32)

  data = seed
  if jax.dtypes.issubdtype(getattr(seed, "dtype", None), jax.dtypes.prng_key):
    data = jax.random.key_data(seed)
  return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


@dataclasses.dataclass(frozen=True)
class PruneOptions:
  """What a pruning event does, checked when built.

  Attributes:
    criterion: a registered criterion (`registered_criteria()`).
    mode: ``'compact'`` (arrays shrink, the optimizer state too) or ``'mask'``
      (shapes kept, pruned states zeroed by the layer's state mask). Reduction
      criteria (``balanced``...) project onto new states: they always compact.
    min_per_layer: states every layer keeps.
    bidirectional: ``'sum'`` or ``'reference'`` (see `last_nnx.pruning.hinf`);
      reductions take ``'sum'`` only.
    horizon: None (infinite-horizon norms, as the paper) or the number of
      steps ``T`` the norms are taken over.
    calibration_batches: calibration batches a data-driven criterion reads.
    seed: seeds ``random``: None (0), an int, a sequence of ints, a numpy
      Generator or a jax key (`as_generator`).
  """

  criterion: str = "last"
  mode: str = "compact"
  min_per_layer: int = 1
  bidirectional: str = "sum"
  horizon: int | None = None
  calibration_batches: int = DEFAULT_BATCHES
  seed: Any = None

  def __post_init__(self):
    crit = get_criterion(self.criterion)
    if self.mode not in MODES:
      raise ValueError(f"unknown pruning mode {self.mode!r}; expected one of {MODES}")
    object.__setattr__(self, "min_per_layer", check_min_per_layer(self.min_per_layer))
    hinf.check_bidirectional(self.bidirectional)
    hinf.check_horizon(self.horizon)
    n = self.calibration_batches
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise ValueError(f"calibration_batches={n!r} must be a positive number of batches")
    if crit.reduction and self.mode == "mask":
      raise ValueError(
        f"criterion {self.criterion!r} projects each layer onto new states, "
        "which a state mask cannot express: use mode='compact'"
      )
    if crit.reduction and self.bidirectional != "sum":
      raise ValueError(
        f"criterion {self.criterion!r} reduces both directions of a "
        "bidirectional layer at once: use bidirectional='sum'"
      )

  @property
  def definition(self) -> Criterion:
    """The registered `Criterion`."""
    return get_criterion(self.criterion)

  @classmethod
  def from_config(cls, pcfg, seq_len: int, **overrides) -> "PruneOptions":
    """The options of a config's ``pruning`` section (its ``horizon`` 0/-1/T converted
    for sequences of ``seq_len`` steps); ``overrides`` replace fields (``seed``)."""
    fields = dict(
      criterion=pcfg.criterion,
      mode=pcfg.mode,
      min_per_layer=pcfg.min_per_layer,
      bidirectional=pcfg.bidirectional,
      horizon=hinf.resolve_horizon(pcfg.horizon, seq_len),
      calibration_batches=pcfg.calibration_batches,
    )
    return cls(**dict(fields, **overrides))
