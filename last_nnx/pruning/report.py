"""What a pruning event did: threshold, per-layer allocation, diagnostics."""

import dataclasses
import json

import numpy as np

# Mean share of the layers' energy on states slower than the sequences above
# which the report suggests finite-horizon norms.
LONG_SHARE_WARNING = 0.25


def time_constants(poles) -> np.ndarray:
  """``-1 / log|lam|``: steps for a state's impulse response to decay by ``e`` (inf at 1)."""
  radius = np.abs(np.asarray(poles, np.complex128))
  with np.errstate(divide="ignore"):
    return np.where(radius >= 1.0, np.inf, -1.0 / np.log(np.maximum(radius, 1e-300)))


def long_time_constants(poles, valid, energy, seq_len: int) -> tuple[int, float]:
  """``(live states with time constant > seq_len, their share of the live energy)``."""
  valid = np.asarray(valid, bool)
  slow = (time_constants(poles) > seq_len) & valid
  energy = np.where(valid, np.asarray(energy, np.float64), 0.0)
  total = energy.sum()
  return int(slow.sum()), float(energy[slow].sum() / total) if total > 0 else 0.0


@dataclasses.dataclass
class LayerReport:
  """One layer of a `PruneReport`.

  Attributes:
    states_before: live states before the event.
    states_after: live states after it.
    kept: flat slot indices kept, numbered as the layer's slots were *before*
      the event (before compaction).
    energy_kept: share of the layer's energy (the criterion's norm: H-inf^2,
      or H2 for ``energy``) held by the kept states, in [0, 1].
    min_kept_score: smallest criterion score among the kept states.
    slots: number of slots of the layer before the event (live or not).
    error_bound: balanced reduction only: ``2 sum`` of the dropped Hankel
      singular values, the H-inf bound of the layer's output error.
    long_states: live states whose time constant ``-1 / log|lam|`` exceeds
      the sequence length (when it is known).
    long_share: share of the layer's energy (the criterion's norm, infinite
      horizon) on those states.
  """

  states_before: int
  states_after: int
  kept: list[int]
  energy_kept: float
  min_kept_score: float | None
  slots: int | None = None
  error_bound: float | None = None
  long_states: int | None = None
  long_share: float | None = None

  @property
  def pruned(self) -> int:
    return self.states_before - self.states_after

  @property
  def pruned_fraction(self) -> float:
    return 1.0 - self.states_after / max(1, self.states_before)


@dataclasses.dataclass
class PruneReport:
  """The result of `last_nnx.pruning.prune`.

  Attributes:
    criterion: criterion name.
    mode: ``'mask'``, ``'compact'``, or ``'balanced'`` (a reduction: the
      layers were projected onto new states, and compacted).
    ratio_requested: the ``ratio`` argument.
    ratio_achieved: fraction of the live states before this event that it
      removed.
    threshold: global threshold (score of the weakest state kept on merit, see
      `allocate.threshold`); None under uniform allocation.
    layers: per-layer `LayerReport`, in model order.
    allocation: ``'global'`` or ``'uniform'``.
    bidirectional: the bidirectional convention of the scores.
    horizon: the sequence length the norms were taken over (None: infinite).
    min_per_layer: the minimum kept per layer.
    energy_norm: ``'hinf2'`` or ``'h2'``, the energy of ``energy_kept``.
    states_original: live states of the dense model, when a history knows it.
    ratio_achieved_total: fraction of ``states_original`` pruned after this
      event, when known.
    seq_len: the sequence length of the time-constant diagnostic (None: not
      run).
  """

  criterion: str
  mode: str
  ratio_requested: float
  ratio_achieved: float
  threshold: float | None
  layers: dict[str, LayerReport]
  allocation: str = "global"
  bidirectional: str = "sum"
  horizon: int | None = None
  min_per_layer: int = 1
  energy_norm: str = "hinf2"
  states_original: int | None = None
  ratio_achieved_total: float | None = None
  seq_len: int | None = None

  @property
  def states_before(self) -> int:
    return sum(l.states_before for l in self.layers.values())

  @property
  def states_after(self) -> int:
    return sum(l.states_after for l in self.layers.values())

  @property
  def long_states(self) -> int | None:
    """Live states (before the event) with time constants beyond ``seq_len``."""
    values = [l.long_states for l in self.layers.values() if l.long_states is not None]
    return sum(values) if values else None

  @property
  def long_share(self) -> float | None:
    """Mean over layers of the energy share on those states."""
    values = [l.long_share for l in self.layers.values() if l.long_share is not None]
    return float(sum(values) / len(values)) if values else None

  def suggestion(self, threshold: float = LONG_SHARE_WARNING) -> str | None:
    """A hint when much of the score mass sits on states slower than the sequences."""
    share = self.long_share
    if (
      share is None
      or share < threshold
      or self.horizon is not None
      or self.criterion.startswith("calibrated")
    ):  # calibrated scores see real lengths
      return None
    return (
      f"{self.long_states} of {self.states_before} states ({100 * share:.0f}% of the "
      f"layers' energy) have time constants beyond the sequence length {self.seq_len}: "
      f"their infinite-horizon scores count gain they never build up; try horizon="
      f"{self.seq_len} (norms over the sequence length: a sweep's name@L, a config's "
      "pruning.horizon=-1) or a calibrated criterion"
    )

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_dict(cls, d: dict) -> "PruneReport":
    known = {f.name for f in dataclasses.fields(cls)}
    layer_known = {f.name for f in dataclasses.fields(LayerReport)}
    d = {k: v for k, v in d.items() if k in known}
    d["layers"] = {
      k: LayerReport(**{f: x for f, x in v.items() if f in layer_known})
      for k, v in d["layers"].items()
    }
    return cls(**d)

  @classmethod
  def from_json(cls, text: str) -> "PruneReport":
    return cls.from_dict(json.loads(text))

  def table(self) -> str:
    """A fixed-width per-layer table for logs."""
    width = max([len("total")] + [len(name) for name in self.layers])
    rows = [
      f"{'layer':<{width}} {'before':>7} {'after':>7} {'pruned':>7} "
      f"{'energy kept':>12} {'min kept score':>15}"
    ]
    for name, l in self.layers.items():
      score = "-" if l.min_kept_score is None else f"{l.min_kept_score:.3e}"
      rows.append(
        f"{name:<{width}} {l.states_before:>7d} {l.states_after:>7d} "
        f"{100 * l.pruned_fraction:>6.1f}% {100 * l.energy_kept:>11.2f}% {score:>15}"
      )
    threshold = "-" if self.threshold is None else f"{self.threshold:.3e}"
    rows.append(
      f"{'total':<{width}} {self.states_before:>7d} {self.states_after:>7d} "
      f"{100 * self.ratio_achieved:>6.1f}%"
    )
    summary = (
      f"criterion={self.criterion} ({self.allocation}) mode={self.mode} "
      f"requested={self.ratio_requested:.4f} threshold={threshold}"
    )
    if self.horizon is not None:
      summary += f" horizon={self.horizon}"
    if self.ratio_achieved_total is not None:
      summary += (
        f" total pruned vs dense={100 * self.ratio_achieved_total:.1f}% "
        f"({self.states_after}/{self.states_original} kept)"
      )
    rows.append(summary)
    if self.long_states is not None:
      rows.append(
        f"time constants beyond L={self.seq_len}: {self.long_states} of "
        f"{self.states_before} states, {100 * self.long_share:.1f}% of the energy"
      )
    hint = self.suggestion()
    if hint:
      rows.append("hint: " + hint)
    return "\n".join(rows)
