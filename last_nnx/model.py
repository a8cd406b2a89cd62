"""Sequence models: encoder -> residual SSM blocks -> pooling -> head.

``SequenceModel`` classifies one sequence per example; with ``retrieval=True``
it encodes two documents with the same tower and classifies the pair from
``[x1, x2, x1 * x2, x1 - x2]`` (the LRA AAN matching head).
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from last_nnx.ssm import find_prunable_layers, make_ssm

ACTIVATIONS = ("gelu", "full_glu", "half_glu1", "half_glu2")
NORMS = ("batch", "layer")
POOLINGS = ("mean", "last")


class SSMBlock(nnx.Module):
  """Residual block: norm (pre or post), SSM, activation/GLU, dropout.

  Dropout masks are shared along time (one mask per sequence and channel).
  """

  def __init__(self, d_model: int, ssm: str, ssm_config: dict, *, norm: str = "batch",
               prenorm: bool = True, activation: str = "half_glu2", dropout: float = 0.0,
               bn_momentum: float = 0.95, rngs: nnx.Rngs):
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown model.activation {activation!r}; expected one of {ACTIVATIONS}")
    if norm not in NORMS:
      raise ValueError(f"unknown model.norm {norm!r}; expected one of {NORMS}")
    self.prenorm = prenorm
    self.activation = activation
    if norm == "batch":
      self.norm = nnx.BatchNorm(d_model, momentum=bn_momentum, rngs=rngs)
    else:
      self.norm = nnx.LayerNorm(d_model, rngs=rngs)
    self.ssm = make_ssm(ssm, d_model, ssm_config, rngs=rngs)
    self.out1 = nnx.Linear(d_model, d_model, rngs=rngs) if activation == "full_glu" else None
    self.out2 = nnx.Linear(d_model, d_model, rngs=rngs) if activation != "gelu" else None
    self.drop = nnx.Dropout(dropout, broadcast_dims=(1,), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    """``x``: ``(B, L, H)`` float32 -> ``(B, L, H)``."""
    skip = x
    if self.prenorm:
      x = self.norm(x)
    x = self.ssm(x)
    if self.activation == "gelu":
      x = self.drop(nnx.gelu(x))
    elif self.activation == "full_glu":
      x = self.drop(nnx.gelu(x))
      x = self.drop(self.out1(x) * nnx.sigmoid(self.out2(x)))
    elif self.activation == "half_glu1":
      x = self.drop(nnx.gelu(x))
      x = self.drop(x * nnx.sigmoid(self.out2(x)))
    else:  # half_glu2: gate computed from the activated SSM output, applied to the raw one.
      gated = self.drop(nnx.gelu(x))
      x = self.drop(x * nnx.sigmoid(self.out2(gated)))
    x = skip + x
    if not self.prenorm:
      x = self.norm(x)
    return x


def masked_mean(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Mean over the first ``lengths[b]`` steps. ``x`` ``(B, L, H)``, ``lengths`` ``(B,)``."""
  valid = jnp.arange(x.shape[1])[None, :] < lengths[:, None]
  total = jnp.sum(x * valid[..., None], axis=1)
  return total / jnp.maximum(lengths, 1)[:, None].astype(x.dtype)


def last_step(x: jax.Array, lengths: jax.Array) -> jax.Array:
  """Features at step ``lengths[b] - 1``. ``x`` ``(B, L, H)`` -> ``(B, H)``."""
  idx = jnp.clip(lengths - 1, 0, x.shape[1] - 1).astype(jnp.int32)
  return jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]


class SequenceModel(nnx.Module):
  """Deep SSM classifier (or dual-tower matcher when ``retrieval``).

  Args:
    n_classes: number of output classes.
    d_model: channels H.
    n_layers: number of residual SSM blocks.
    ssm: registered SSM type name (``'s5'``, ``'s4d'``, ...).
    ssm_config: keyword options of that SSM type.
    vocab_size: token vocabulary (embedding encoder), or None for continuous
      inputs of ``in_dim`` features (linear encoder).
    in_dim: feature size of continuous inputs.
    pooling: ``'mean'`` (masked by length) or ``'last'``.
    retrieval: two documents per example, matched by the AAN head.
    remat: rematerialize each block in the backward pass (saves memory).
    Remaining arguments configure `SSMBlock`.
  """

  def __init__(self, *, n_classes: int, d_model: int, n_layers: int, ssm: str = "s5",
               ssm_config: dict | None = None, vocab_size: int | None = None, in_dim: int = 1,
               pooling: str = "mean", retrieval: bool = False, norm: str = "batch",
               prenorm: bool = True, activation: str = "half_glu2", dropout: float = 0.0,
               bn_momentum: float = 0.95, remat: bool = False, rngs: nnx.Rngs):
    if pooling not in POOLINGS:
      raise ValueError(f"unknown model.pooling {pooling!r}; expected one of {POOLINGS}")
    self.pooling = pooling
    self.retrieval = retrieval
    self.remat = remat
    if vocab_size is not None:
      self.encoder = nnx.Embed(vocab_size, d_model, rngs=rngs)
    else:
      self.encoder = nnx.Linear(in_dim, d_model, rngs=rngs)
    self.blocks = nnx.List([
        SSMBlock(d_model, ssm, dict(ssm_config or {}), norm=norm, prenorm=prenorm,
                 activation=activation, dropout=dropout, bn_momentum=bn_momentum, rngs=rngs)
        for _ in range(n_layers)])
    if retrieval:
      self.match = nnx.Linear(4 * d_model, d_model, rngs=rngs)
    self.head = nnx.Linear(d_model, n_classes, rngs=rngs)

  def encode(self, inputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """Pooled features ``(B, H)`` of ``inputs`` (``(B, L)`` int32 or ``(B, L, F)`` float32)."""
    x = self.encoder(inputs)
    for block in self.blocks:
      if self.remat:
        x = nnx.remat(lambda blk, h: blk(h))(block, x)
      else:
        x = block(x)
    pool = masked_mean if self.pooling == "mean" else last_step
    return pool(x, lengths)

  def __call__(self, inputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """Logits ``(B, n_classes)`` float32.

    Args:
      inputs: ``(B, L)`` int32 tokens, ``(B, L, F)`` float32 features, or for
        retrieval ``(B, 2, L)`` tokens of two documents.
      lengths: ``(B,)`` int32 valid lengths (``(B, 2)`` for retrieval).
    """
    if not self.retrieval:
      return self.head(self.encode(inputs, lengths))
    batch = inputs.shape[0]
    both = self.encode(inputs.reshape((2 * batch,) + inputs.shape[2:]), lengths.reshape(-1))
    x1, x2 = both.reshape(batch, 2, -1)[:, 0], both.reshape(batch, 2, -1)[:, 1]
    features = jnp.concatenate([x1, x2, x1 * x2, x1 - x2], axis=-1)
    return self.head(nnx.gelu(self.match(features)))

  def prunable_layers(self) -> dict[str, Any]:
    """The model's `PrunableSSM` layers by path (``'blocks.0.ssm'``, ...)."""
    return find_prunable_layers(self)


def build_model(model_config, *, n_classes: int, vocab_size: int | None, in_dim: int,
                retrieval: bool, seed: int) -> SequenceModel:
  """Builds a `SequenceModel` from the ``model`` section of a config.

  Unknown fields of ``model_config`` raise a ValueError naming them.
  """
  options = dict(model_config)
  known = set(SequenceModel.__init__.__code__.co_varnames) - {"self", "rngs"}
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
  options["ssm_config"] = dict(options.get("ssm_config") or {})
  return SequenceModel(n_classes=n_classes, vocab_size=vocab_size, in_dim=in_dim,
                       retrieval=retrieval, rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                       **options)
