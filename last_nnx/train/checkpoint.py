"""Orbax checkpoints of a (possibly pruned) model and its optimizer.

A checkpoint holds three items: ``model`` (every model variable: parameters,
batch statistics, state masks, dropout RNG), ``optimizer`` (its full state) and
``meta`` (JSON, schema `CheckpointMeta`: the config, what the task told the
model builder, the run position with its pruning history, and the state-slot
shape of every prunable layer). Pruned layers are smaller than the config says,
so a restore first reads ``meta``, rebuilds the model at the recorded shapes
(`rebuild_model`, the one builder of loading and resuming), builds the
optimizer on it, then loads the arrays.

Several processes (a multi-host run): every process calls `Checkpointer.save`
and `Checkpointer.restore` at the same points, with the same (replicated)
arrays; orbax has each array shard written once, process 0 writes ``meta`` and
commits the step, and barriers keep the processes together. The directory must
be one that every process sees (a shared file system or a bucket). Each
`Checkpointer` names its barriers after its directory, so the run's
``checkpoints/`` and ``best/`` can save the same step at the same time.
"""

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from last_nnx.ssm import find_prunable_layers
from last_nnx.train import objectives


class CheckpointError(RuntimeError):
  """A checkpoint directory exists but cannot be used."""


def _is_key(x) -> bool:
  return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def flatten_state(state: nnx.State) -> dict[str, np.ndarray]:
  """``nnx.State`` -> ``{'blocks/0/ssm/B': array}`` (RNG keys as raw key data)."""
  flat = {}
  for path, value in nnx.to_flat_state(state):
    value = value.get_value() if isinstance(value, nnx.Variable) else value
    if not hasattr(value, "shape"):  # optax.MaskedNode and other empty placeholders
      continue
    if _is_key(value):
      value = jax.random.key_data(value)
    flat["/".join(str(p) for p in path)] = value
  return flat


def unflatten_into(state: nnx.State, flat: dict[str, Any]) -> None:
  """Writes arrays from ``flat`` (see `flatten_state`) into ``state`` in place."""
  for path, var in nnx.to_flat_state(state):
    key = "/".join(str(p) for p in path)
    current = var.get_value()
    if not hasattr(current, "shape"):
      continue
    if key not in flat:
      raise CheckpointError(
        f"checkpoint lacks variable {key!r}: was it written by another model config?"
      )
    value = flat[key]
    if not getattr(current, "committed", True):
      # orbax hands back arrays committed to a device; an uncommitted variable stays
      # uncommitted, or every compiled step taking it would compile again.
      value = np.asarray(value)
    if _is_key(current):
      value = jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(current))
    elif tuple(np.shape(value)) != tuple(np.shape(current)):
      raise CheckpointError(
        f"variable {key!r} has shape {np.shape(value)} in the checkpoint, "
        f"{np.shape(current)} in the model"
      )
    var.set_value(jnp.asarray(value, dtype=current.dtype))


def layer_shapes(model: nnx.Module) -> dict[str, list[int]]:
  """State-slot shape of every prunable layer (what `resize_layers` needs)."""
  return {path: list(layer.state_shape) for path, layer in find_prunable_layers(model).items()}


def resize_layers(model: nnx.Module, shapes: dict[str, list[int]]) -> None:
  """Shrinks freshly built prunable layers to recorded slot shapes.

  Keeps the first ``n`` slots of each group; the real values, state masks
  included, are loaded from the checkpoint afterwards.
  """
  layers = find_prunable_layers(model)
  for path, shape in shapes.items():
    layer = layers.get(path)
    if layer is None:
      raise CheckpointError(f"checkpoint has prunable layer {path!r}, the model does not")
    if tuple(shape) == tuple(layer.state_shape):
      continue
    keep = np.zeros(layer.state_shape, bool)
    if len(shape) != keep.ndim or shape[:-1] != list(keep.shape[:-1]) or shape[-1] > keep.shape[-1]:
      raise CheckpointError(
        f"layer {path!r}: recorded state shape {shape} does not fit "
        f"the configured {layer.state_shape}"
      )
    keep[..., : shape[-1]] = True
    layer.prune_states(keep.reshape(-1))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What the task tells the model builder (the rest comes from ``config.model``)."""

  n_classes: int
  vocab_size: int | None
  in_dim: int
  retrieval: bool = False
  objective: str = "classification"  # which model: a classifier, or a language model

  @classmethod
  def of_task(cls, task) -> "ModelSpec":
    return cls(
      n_classes=task.n_classes,
      vocab_size=task.vocab_size,
      in_dim=task.in_dim,
      retrieval=task.retrieval,
      objective=getattr(task, "objective", "classification"),
    )


@dataclasses.dataclass
class CheckpointMeta:
  """The ``meta`` item of a checkpoint: written by `to_dict`, read by `from_dict` only.

  Attributes:
    config: the run's ``config.to_dict()``.
    model_spec: what `rebuild_model` needs besides the config.
    run: the training loop's `last_nnx.train.run_state.RunState` as a dict
      (``events``: the pruning-event records, `last_nnx.pruning.EventRecord`);
      ``{}`` for a model written by `save_model` without a run.
    layer_shapes: state-slot shape of every prunable layer (`layer_shapes`),
      filled in by `Checkpointer.save`.
    pruning: a saved model pruned after training: its replayable history and
      where it came from (`last_nnx.pruning.saved`); None otherwise.
  """

  config: dict
  model_spec: ModelSpec
  run: dict = dataclasses.field(default_factory=dict)
  layer_shapes: dict[str, list[int]] | None = None
  pruning: dict | None = None

  @property
  def events(self) -> list[dict]:
    """The run's pruning-event records (possibly empty)."""
    return list(self.run.get("events") or [])

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    if d["model_spec"]["objective"] == "classification":  # classifiers' metadata as before
      del d["model_spec"]["objective"]
    return {k: v for k, v in d.items() if v is not None}

  @classmethod
  def from_dict(cls, d: "dict | CheckpointMeta") -> "CheckpointMeta":
    if isinstance(d, CheckpointMeta):
      return d
    return cls(
      config=dict(d.get("config") or {}),
      model_spec=ModelSpec(**d["model_spec"]),
      run=dict(d.get("run") or {}),
      layer_shapes=d.get("layer_shapes"),
      pruning=d.get("pruning"),
    )


def rebuild_model(config, spec: ModelSpec, layer_shapes: dict[str, list[int]] | None = None):
  """The model of ``config`` and ``spec``, shrunk to ``layer_shapes`` (a checkpoint's).

  Fresh weights from ``config.seed``: a restore loads the real ones afterwards.
  Used by resuming (`last_nnx.train.run_state`) and by `load_model` alike.
  """
  model = objectives.by_name(spec.objective).build_model(config.model, spec, config.seed)
  if layer_shapes:
    resize_layers(model, layer_shapes)
  return model


class Checkpointer:
  """Latest-N checkpoints under ``directory`` (async writes, atomic commits)."""

  def __init__(self, directory: str, max_to_keep: int = 2):
    self.directory = os.path.abspath(directory)
    # Barrier keys of concurrent managers must differ (orbax keys them by step).
    barriers = ocp.options.MultiprocessingOptions(
      barrier_sync_key_prefix=os.path.basename(self.directory) or "root"
    )
    self._manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True, multiprocessing_options=barriers
      ),
      item_names=("model", "optimizer", "meta"),
    )

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(
    self,
    step: int,
    model: nnx.Module,
    optimizer: nnx.Optimizer | None,
    meta: "CheckpointMeta | dict",
  ) -> None:
    """Saves at ``step`` (replacing an existing checkpoint at the same step); ``meta`` is
    stored as JSON with the model's ``layer_shapes`` added."""
    if step in self._manager.all_steps():
      self._manager.wait_until_finished()
      self._manager.delete(step)
    if isinstance(meta, CheckpointMeta):
      meta = meta.to_dict()
    meta = dict(meta, layer_shapes=layer_shapes(model))
    items = dict(
      model=ocp.args.StandardSave(flatten_state(nnx.state(model))), meta=ocp.args.JsonSave(meta)
    )
    if optimizer is not None:
      items["optimizer"] = ocp.args.StandardSave(flatten_state(nnx.state(optimizer)))
    self._manager.save(step, args=ocp.args.Composite(**items), force=True)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def read_meta(self, step: int) -> dict:
    try:
      args = ocp.args.Composite(meta=ocp.args.JsonRestore())
      return self._manager.restore(step, args=args)["meta"]
    except Exception as e:  # orbax raises many types for damaged files
      raise CheckpointError(
        f"checkpoint {self.directory}/{step} is unreadable ({e}); "
        "delete that step directory to fall back to an older one"
      ) from e

  def restore(self, step: int, model: nnx.Module, optimizer: nnx.Optimizer | None) -> None:
    """Loads arrays into a model (and optimizer) already resized to the checkpoint."""
    model_state = nnx.state(model)
    items = dict(model=ocp.args.StandardRestore(flatten_state(model_state)))
    opt_state = nnx.state(optimizer) if optimizer is not None else None
    if optimizer is not None:
      items["optimizer"] = ocp.args.StandardRestore(flatten_state(opt_state))
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:
      raise CheckpointError(
        f"checkpoint {self.directory}/{step} is unreadable ({e}); "
        "delete that step directory to fall back to an older one"
      ) from e
    unflatten_into(model_state, restored["model"])
    nnx.update(model, model_state)
    if optimizer is not None:
      unflatten_into(opt_state, restored["optimizer"])
      nnx.update(optimizer, opt_state)

  def latest_usable(self) -> tuple[int, dict] | None:
    """Newest step whose metadata reads; damaged newer ones are skipped with a warning."""
    for step in reversed(self.steps()):
      try:
        return step, self.read_meta(step)
      except CheckpointError as e:
        logging.warning("%s", e)
    return None

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


# Which checkpoint of a training workdir: the newest one, or the best at the final size.
WHICH = ("latest", "best")
_WHICH_DIR = {"latest": "checkpoints", "best": "best"}


def _which_dir(workdir: str, which: str) -> str:
  if which not in WHICH:
    raise ValueError(f"which={which!r}: use one of {WHICH}")
  return os.path.join(workdir, _WHICH_DIR[which])


def read_meta(workdir: str, *, which: str = "latest") -> CheckpointMeta | None:
  """The `CheckpointMeta` of the newest readable checkpoint of a training workdir (no
  arrays are read); None when it has no ``checkpoints/`` (or ``best/``) or none reads."""
  directory = _which_dir(workdir, which)
  if not os.path.isdir(directory):
    return None
  ckpt = Checkpointer(directory)
  try:
    latest = ckpt.latest_usable()
  finally:
    ckpt.close()
  return None if latest is None else CheckpointMeta.from_dict(latest[1])


def load_model(workdir: str, *, which: str = "latest"):
  """Rebuilds the newest saved model of a training workdir, pruned shapes included.

  Args:
    workdir: a ``last_nnx.train`` workdir (or a directory written by `save_model`).
    which: ``'latest'`` (its ``checkpoints/``) or ``'best'`` (its ``best/``).

  Returns:
    ``(model, config, meta)``: the model in eval mode, its ``ConfigDict`` and
    the `CheckpointMeta` (``meta.events`` is the pruning history).
  """
  import ml_collections  # local: keeps this module importable without configs

  directory = _which_dir(workdir, which)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f"no {_WHICH_DIR[which]}/ under {workdir!r}: pass the --workdir of "
      "a training run (it holds checkpoints/, best/ and summary.json)"
    )
  ckpt = Checkpointer(directory)
  latest = ckpt.latest_usable()
  if latest is None:
    raise CheckpointError(f"{directory} holds no readable checkpoint")
  step, raw = latest
  meta = CheckpointMeta.from_dict(raw)
  config = ml_collections.ConfigDict(meta.config)
  model = rebuild_model(config, meta.model_spec, meta.layer_shapes)
  ckpt.restore(step, model, None)
  ckpt.close()
  model.eval()
  return model, config, meta


def save_model(
  out_dir: str, model: nnx.Module, config, meta: "CheckpointMeta | dict", step: int = 0
) -> None:
  """Writes ``model`` so that `load_model(out_dir)` rebuilds it (at its pruned size)."""
  ckpt = Checkpointer(os.path.join(out_dir, "checkpoints"), max_to_keep=1)
  meta = dataclasses.replace(
    CheckpointMeta.from_dict(meta),
    config=config.to_dict() if hasattr(config, "to_dict") else dict(config),
  )
  ckpt.save(step, model, None, meta)
  ckpt.close()
