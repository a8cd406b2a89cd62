"""Pruning history: every event, serializable, replayable onto the dense model.

Two records of an event: `EventRecord` is what a run keeps of it (status,
targets, states and accuracies before and after, the `PruneReport`), written by
the training loop's events and by the saved-model pruner into a checkpoint's
``run.events`` and read back here; `PruningEvent` is the part a replay needs.

An event records the flat slot indices each layer kept, numbered as the slots
were just before that event. Replaying the events in order onto the dense
model (same weights) therefore rebuilds the identical pruned model, compact or
masked, whatever criterion chose the states (``random`` included), without
recomputing any score.
"""

import dataclasses
import json

import numpy as np
from flax import nnx

from last_nnx.pruning.apply import apply_keep, prunable_layers
from last_nnx.pruning.report import PruneReport


@dataclasses.dataclass
class PruningEvent:
  """One pruning event.

  Attributes:
    criterion: criterion name (informational on replay).
    ratio: the requested ratio (informational on replay).
    mode: ``'mask'`` or ``'compact'``: how replay applies the event.
    kept: ``{layer_path: [flat slot indices kept]}`` (slots before the event).
    slots: ``{layer_path: slot count before the event}``, checked on replay.
  """

  criterion: str
  ratio: float
  mode: str
  kept: dict[str, list[int]]
  slots: dict[str, int] | None = None


STATUSES = ("applied", "skipped", "rolled_back")


@dataclasses.dataclass
class EventRecord:
  """What a run keeps of one pruning event (``summary.json``'s ``pruning_events``).

  Attributes:
    status: ``'applied'``, ``'skipped'`` (it would remove too few states) or
      ``'rolled_back'`` (the accuracy guard undid it).
    ratio: fraction of the live states the event removed (requested).
    target: cumulative fraction of the dense model's states pruned after it.
    states_before, states_after: live states per layer.
    step, train_epoch: where a training run was (None outside one).
    val_before, val_after: validation metrics around the event, when measured.
    halvings: how often the guard rail halved the ratio.
    recalibrated_batches: batches BatchNorm statistics were re-estimated on.
    report: the `PruneReport` as a dict (applied events).
    source, criterion, mode: a saved model pruned after training (the program
      that did it, and how).
  """

  status: str = "applied"
  ratio: float | None = None
  target: float | None = None
  states_before: dict[str, int] = dataclasses.field(default_factory=dict)
  states_after: dict[str, int] | None = None
  step: int | None = None
  train_epoch: int | None = None
  val_before: dict | None = None
  val_after: dict | None = None
  halvings: int | None = None
  recalibrated_batches: int | None = None
  report: dict | None = None
  source: str | None = None
  criterion: str | None = None
  mode: str | None = None

  def to_dict(self) -> dict:
    """The JSON form; fields that were never set are left out."""
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

  @classmethod
  def from_dict(cls, d: dict) -> "EventRecord":
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in d.items() if k in known})

  @property
  def replayable(self) -> bool:
    """Applied, with the report whose keep sets a replay needs."""
    return self.status == "applied" and bool(self.report)


@dataclasses.dataclass
class PruningHistory:
  """Events in order, plus the dense model's live states per layer."""

  events: list[PruningEvent] = dataclasses.field(default_factory=list)
  dense_states: dict[str, int] | None = None

  @property
  def states_original(self) -> int | None:
    return None if self.dense_states is None else sum(self.dense_states.values())

  def record(self, report: PruneReport) -> None:
    """Appends the event of ``report``; the first one also fixes ``dense_states``."""
    if self.dense_states is None:
      self.dense_states = {k: v.states_before for k, v in report.layers.items()}
    slots = {k: v.slots for k, v in report.layers.items() if v.slots is not None}
    self.events.append(
      PruningEvent(
        report.criterion,
        report.ratio_requested,
        report.mode,
        {k: [int(i) for i in v.kept] for k, v in report.layers.items()},
        slots or None,
      )
    )

  def to_json(self) -> str:
    return json.dumps(
      dict(dense_states=self.dense_states, events=[dataclasses.asdict(e) for e in self.events])
    )

  @classmethod
  def from_json(cls, text: str) -> "PruningHistory":
    data = json.loads(text)
    if isinstance(data, list):  # a bare list of events
      data = dict(events=data)
    return cls([PruningEvent(**e) for e in data.get("events", [])], data.get("dense_states"))

  @classmethod
  def from_run_events(
    cls, events: list[dict], dense_states: dict[str, int] | None = None
  ) -> "PruningHistory":
    """The history of a training run's event records (``meta['run']['events']``).

    Records whose ``status`` is not ``'applied'`` (skipped, rolled back) or that
    carry no ``report`` are ignored.
    """
    history = cls(dense_states=dict(dense_states) if dense_states else None)
    for record in map(EventRecord.from_dict, events):
      if record.replayable:
        history.record(PruneReport.from_dict(record.report))
    return history


def replay(model: nnx.Module, history: PruningHistory, optimizer=None) -> None:
  """Re-applies every recorded event, in order, to ``model`` (in place).

  Args:
    model: the model at its pre-pruning (dense) size, with the weights the
      history was recorded on.
    history: the events.
    optimizer: with compact events, its state is sliced along.

  Raises:
    ValueError: a layer of the history is missing or has another slot count.
  """
  for n, event in enumerate(history.events):
    if event.mode == "balanced":
      raise ValueError(
        f"pruning history event {n} is a balanced reduction ({event.criterion}): "
        "a projection onto new states, which keep sets cannot replay; load the "
        "saved (reduced) model instead"
      )
    layers = prunable_layers(model)
    keep = {}
    for path, kept in event.kept.items():
      if path not in layers:
        raise ValueError(
          f"pruning history event {n}: no prunable layer {path!r} in the "
          f"model (it has {sorted(layers)})"
        )
      slots = int(np.prod(layers[path].state_shape))
      if event.slots and event.slots.get(path, slots) != slots:
        raise ValueError(
          f"pruning history event {n}: layer {path!r} has {slots} slots, the "
          f"history expects {event.slots[path]}: replay onto the dense model "
          "the history was recorded on"
        )
      mask = np.zeros(slots, bool)
      kept = np.asarray(kept, int)
      if kept.size and (kept.min() < 0 or kept.max() >= slots):
        raise ValueError(
          f"pruning history event {n}: layer {path!r} keeps slot "
          f"{int(kept.max())}, but it has {slots} slots"
        )
      mask[kept] = True
      keep[path] = mask
    apply_keep(model, keep, mode=event.mode, optimizer=optimizer)
