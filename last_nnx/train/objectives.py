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

from last_nnx.train import metrics as metrics_lib

OBJECTIVES = ("classification", "lm")


@dataclasses.dataclass(frozen=True)
class Classification:
  """One label per sequence (see the module docstring)."""

  name = "classification"
  score_name = "accuracy"

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

  def score(self, metrics: dict) -> float:
    """Higher is better: validation accuracy."""
    return metrics["accuracy"]

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

  def score(self, metrics: dict) -> float:
    """Higher is better: minus the bits per byte."""
    return -metrics["bits_per_byte"]

  def describe(self, metrics: dict) -> str:
    return (f"loss {metrics['loss']:.4g} ppl {metrics['perplexity']:.4g} "
            f"bpb {metrics['bits_per_byte']:.4g}")

  def headline(self, metrics: dict | None) -> str:
    return f"{metrics['bits_per_byte']:.4f}" if metrics else "-"


def for_task(task) -> Classification:
  """The objective of ``task`` (its ``objective`` attribute; classification when absent)."""
  kind = getattr(task, "objective", "classification")
  if kind == "classification":
    return Classification()
  if kind == "lm":
    per_token = getattr(task, "bytes_per_token", {})
    return LanguageModel(bytes_per_token=tuple(sorted(per_token.items())))
  raise ValueError(f"task {task.name!r} has objective {kind!r}; expected one of {OBJECTIVES}")
