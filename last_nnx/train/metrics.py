"""CLU metric collections for training and evaluation."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metrics


@flax.struct.dataclass
class ClassificationMetrics(metrics.Collection):
  loss: metrics.Average.from_output("loss")
  accuracy: metrics.Accuracy
  penalty: metrics.Average.from_output("penalty")


def batch_metrics(
  logits: jax.Array,
  labels: jax.Array,
  mask: jax.Array | None = None,
  penalty: jax.Array | float = 0.0,
):
  """Per-batch metrics; ``logits`` ``(B, C)``, ``labels`` ``(B,)`` int, ``mask`` ``(B,)`` bool.

  ``loss`` is the cross-entropy alone; ``penalty`` the (unweighted) prunability
  regularizer, logged on its own.
  """
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  penalty = jnp.broadcast_to(jnp.asarray(penalty, loss.dtype), loss.shape)
  return ClassificationMetrics.single_from_model_output(
    loss=loss, logits=logits, labels=labels, mask=mask, penalty=penalty
  )


def merge(total, new):
  return new if total is None else total.merge(new)


def to_floats(collection, prefix: str) -> dict[str, float]:
  """``{'prefix/loss': ..., 'prefix/accuracy': ...}`` as Python floats."""
  if collection is None:
    return {}
  return {f"{prefix}/{k}": float(np.asarray(v)) for k, v in collection.compute().items()}


def chance_level(n_classes: int) -> float:
  return 1.0 / max(1, n_classes)
