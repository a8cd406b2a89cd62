"""What a pruning event did: threshold, per-layer allocation, diagnostics."""

import dataclasses
import json


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
  """

  states_before: int
  states_after: int
  kept: list[int]
  energy_kept: float
  min_kept_score: float | None
  slots: int | None = None

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
    mode: ``'mask'`` or ``'compact'``.
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

  @property
  def states_before(self) -> int:
    return sum(l.states_before for l in self.layers.values())

  @property
  def states_after(self) -> int:
    return sum(l.states_after for l in self.layers.values())

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_dict(cls, d: dict) -> "PruneReport":
    known = {f.name for f in dataclasses.fields(cls)}
    layer_known = {f.name for f in dataclasses.fields(LayerReport)}
    d = {k: v for k, v in d.items() if k in known}
    d["layers"] = {k: LayerReport(**{f: x for f, x in v.items() if f in layer_known})
                   for k, v in d["layers"].items()}
    return cls(**d)

  @classmethod
  def from_json(cls, text: str) -> "PruneReport":
    return cls.from_dict(json.loads(text))

  def table(self) -> str:
    """A fixed-width per-layer table for logs."""
    width = max([len("total")] + [len(name) for name in self.layers])
    rows = [f"{'layer':<{width}} {'before':>7} {'after':>7} {'pruned':>7} "
            f"{'energy kept':>12} {'min kept score':>15}"]
    for name, l in self.layers.items():
      score = "-" if l.min_kept_score is None else f"{l.min_kept_score:.3e}"
      rows.append(f"{name:<{width}} {l.states_before:>7d} {l.states_after:>7d} "
                  f"{100 * l.pruned_fraction:>6.1f}% {100 * l.energy_kept:>11.2f}% {score:>15}")
    threshold = "-" if self.threshold is None else f"{self.threshold:.3e}"
    rows.append(f"{'total':<{width}} {self.states_before:>7d} {self.states_after:>7d} "
                f"{100 * self.ratio_achieved:>6.1f}%")
    summary = (f"criterion={self.criterion} ({self.allocation}) mode={self.mode} "
               f"requested={self.ratio_requested:.4f} threshold={threshold}")
    if self.horizon is not None:
      summary += f" horizon={self.horizon}"
    if self.ratio_achieved_total is not None:
      summary += (f" total pruned vs dense={100 * self.ratio_achieved_total:.1f}% "
                  f"({self.states_after}/{self.states_original} kept)")
    rows.append(summary)
    return "\n".join(rows)
