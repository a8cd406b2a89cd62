"""What a run optimizes and reports, chosen once from its task: classification or
language modelling.

  objective = objectives.for_task(task)      # task.objective: 'classification' | 'lm'
  loss = objective.loss(logits, labels)     # in the train step
  metrics = objective.batch_metrics(logits, labels, mask, penalty)
  val = objective.scalars(metrics, "val")   # host floats, derived figures included

Both are softmax cross-entropy; they differ in what a prediction is and in what
the run reports:

* **classification**: logits ``(B, C)``, labels ``(B,)``; the loss is the mean over
  examples; reported: loss, accuracy; the run's score (best checkpoint, the pruning
  guard rail ``pruning.max_acc_drop``) is accuracy.
* **lm** (next-token prediction): logits ``(B, L, V)``, targets ``(B, L)``; the loss
  is the mean over the ``B L`` predicted tokens (nats per token); reported: loss,
  next-token accuracy, perplexity ``exp(loss)`` and bits per byte
  ``loss / ln 2 / bytes_per_token[split]`` (`last_nnx.data.text`); the score is
  minus the bits per byte (so ``max_acc_drop`` is read in bits per byte).

The metric collection is the same CLU ``Collection`` for both (`metrics`: means of
per-example or per-token values, masked per example), so checkpoints and resumed
partial epochs are handled alike; the derived figures are computed on the host
from the means (perplexity of the mean loss, not the mean of perplexities).
"""

import dataclasses
import math

import jax
import optax
from flax import nnx

from last_nnx.data import tokenize
from last_nnx.lm import Mamba2LM, Mamba2LMConfig
from last_nnx.model import build_model
from last_nnx.train import metrics as metrics_lib

OBJECTIVES = ("classification", "lm")


@dataclasses.dataclass(frozen=True)
class Classification:
  """One label per sequence (see the module docstring)."""

  name = "classification"
  score_name = "accuracy"
  short_name = "acc"

  def build_model(self, model_config, spec, seed: int):
    """The `SequenceModel` of the ``model`` section; ``spec`` (a task, or a checkpoint's
    `last_nnx.train.checkpoint.ModelSpec`) gives its classes and encoder."""
    return build_model(
      model_config,
      n_classes=spec.n_classes,
      vocab_size=spec.vocab_size,
      in_dim=spec.in_dim,
      retrieval=spec.retrieval,
      seed=seed,
    )

  def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy; ``logits (B, C)`` float32, ``labels (B,)`` int32."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  def batch_metrics(self, logits, labels, mask=None, penalty=0.0):
    return metrics_lib.batch_metrics(logits, labels, mask, penalty=penalty)

  def empty_metrics(self):
    return metrics_lib.ClassificationMetrics.empty()

  def scalars(self, collection, split: str) -> dict[str, float]:
    """``{'loss', 'accuracy', 'penalty'}`` of ``collection`` as floats."""
    return {k.split("/", 1)[1]: v for k, v in metrics_lib.to_floats(collection, split).items()}

  def check(self, model_config, task) -> None:
    """Raises a one-line error for a model section that cannot serve ``task``."""

  def score(self, metrics: dict) -> float:
    """Higher is better: validation accuracy."""
    return metrics["accuracy"]

  def chance_level(self, task) -> float | None:
    """The accuracy of guessing, or None when a run should not warn about it."""
    return metrics_lib.chance_level(task.n_classes)

  def describe(self, metrics: dict) -> str:
    return f"loss {metrics['loss']:.4g} acc {100 * metrics['accuracy']:.1f}%"

  def headline(self, metrics: dict | None) -> str:
    return f"{100 * metrics['accuracy']:.2f}%" if metrics else "-"


@dataclasses.dataclass(frozen=True)
class LanguageModel(Classification):
  """Next-token prediction over windows (see the module docstring).

  ``bytes_per_token``: ``((split, bytes per token), ...)`` of the task (a tuple, so
  the objective stays hashable and can be a static argument of a compiled step).
  """

  bytes_per_token: tuple = (("train", 1.0), ("val", 1.0), ("test", 1.0))
  name = "lm"
  score_name = "bits_per_byte"
  short_name = "bpb"

  def build_model(self, model_config, spec, seed: int) -> Mamba2LM:
    """A fresh `Mamba2LM` from the ``model`` section (`lm_config`); ``spec`` gives
    the tokenizer's vocabulary."""
    return Mamba2LM(lm_config(model_config, spec.vocab_size), rngs=nnx.Rngs(params=seed))

  def loss(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy over all predicted tokens; ``logits (B, L, V)``, ``labels (B, L)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  def scalars(self, collection, split: str) -> dict[str, float]:
    """Loss (nats per token), next-token accuracy, penalty, perplexity, bits per byte."""
    out = super().scalars(collection, split)
    if "loss" in out:
      per_token = dict(self.bytes_per_token).get(split, 1.0)
      out["perplexity"] = math.exp(min(out["loss"], 700.0))
      out["bits_per_byte"] = out["loss"] / math.log(2) / per_token
    return out

  def check(self, model_config, task) -> None:
    """The model section's fields and the tokenizer's vocabulary (`lm_config`)."""
    lm_config(model_config, task.vocab_size)

  def score(self, metrics: dict) -> float:
    """Higher is better: minus the bits per byte."""
    return -metrics["bits_per_byte"]

  def chance_level(self, task) -> float | None:
    del task
    return None

  def describe(self, metrics: dict) -> str:
    return (
      f"loss {metrics['loss']:.4g} ppl {metrics['perplexity']:.4g} "
      f"bpb {metrics['bits_per_byte']:.4g}"
    )

  def headline(self, metrics: dict | None) -> str:
    return f"{metrics['bits_per_byte']:.4f}" if metrics else "-"


# model section field -> Mamba2LMConfig field; ssm_config's fields keep their names.
_LM_FIELDS = {
  "d_model": "d_model",
  "n_layers": "n_layers",
  "tie_embeddings": "tie_embeddings",
  "vocab_size": "vocab_size",
}
_LM_SSM_FIELDS = (
  "state_size",
  "head_dim",
  "n_heads",
  "n_groups",
  "expand",
  "conv_width",
  "chunk_size",
)


def lm_config(model_config, vocab_size: int) -> Mamba2LMConfig:
  """The `Mamba2LMConfig` of a ``model`` section: ``ssm='mamba2'``, ``d_model``,
  ``n_layers``, ``tie_embeddings`` (default True), ``ssm_config`` with the mixer's
  shape (`_LM_SSM_FIELDS`), optionally ``vocab_size`` (default: the tokenizer's).

  Raises:
    ValueError: another layer type, a field the LM does not have, or a
      ``model.vocab_size`` the tokenizer does not match (`tokenize.check_vocab`).
  """
  m = dict(model_config)
  if m.get("ssm", "mamba2") != "mamba2":
    raise ValueError(
      f"model.ssm={m['ssm']!r}: the language model is a Mamba-2 LM; use "
      "model.ssm='mamba2' (MODEL=mamba2)"
    )
  ssm = dict(m.pop("ssm_config", None) or {})
  unknown = sorted(set(m) - set(_LM_FIELDS) - {"ssm"}) + sorted(
    f"ssm_config.{k}" for k in set(ssm) - set(_LM_SSM_FIELDS)
  )
  if unknown:
    ssm_fields = ", ".join(_LM_SSM_FIELDS)
    raise ValueError(
      f"model.{unknown[0]} is not a field of the Mamba-2 LM; it has "
      f"{', '.join(sorted(_LM_FIELDS))} and ssm_config.{{{ssm_fields}}}"
    )
  fields = {_LM_FIELDS[k]: v for k, v in m.items() if k in _LM_FIELDS and v is not None}
  fields.update({k: v for k, v in ssm.items() if v is not None})
  model_vocab = fields.setdefault("vocab_size", vocab_size)
  tokenize.check_vocab(vocab_size, model_vocab)
  return Mamba2LMConfig(**fields)


def by_name(name: str) -> Classification:
  """The objective called ``name`` (for reading a summary: no task at hand)."""
  if name not in OBJECTIVES:
    raise ValueError(f"unknown objective {name!r}; expected one of {OBJECTIVES}")
  return Classification() if name == "classification" else LanguageModel()


def for_task(task) -> Classification:
  """The objective of ``task`` (its ``objective`` attribute; classification when absent)."""
  kind = getattr(task, "objective", "classification")
  if kind == "classification":
    return Classification()
  if kind == "lm":
    per_token = getattr(task, "bytes_per_token", {})
    return LanguageModel(bytes_per_token=tuple(sorted(per_token.items())))
  raise ValueError(f"task {task.name!r} has objective {kind!r}; expected one of {OBJECTIVES}")
