"""Sequence models: encoder -> residual SSM blocks -> pooling -> head.

``SequenceModel`` classifies one sequence per example; with ``retrieval=True``
it encodes two documents with the same tower and classifies the pair from
``[x1, x2, x1 * x2, x1 - x2]`` (the LRA AAN matching head).

A causal model also runs as an RNN, one token at a time:

    state = model.init_state(batch)
    for t in range(L):
      state, logits = model.step(state, inputs[:, t])   # logits (B, n_classes)

``logits`` after step t equal ``model(inputs, lengths=t + 1)``: the blocks are
applied per step (norms with their running statistics, no dropout) and the
pooling is a running mean (``'mean'``) or the current step (``'last'``).
"""

import contextlib
import inspect
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from last_nnx.ssm import find_prunable_layers, make_ssm

ACTIVATIONS = ("gelu", "full_glu", "half_glu1", "half_glu2")
NORMS = ("batch", "layer")
POOLINGS = ("mean", "last")


_MODE_FLAGS = ("deterministic", "use_running_average")


@contextlib.contextmanager
def eval_mode(model: nnx.Module):
  """``with eval_mode(model):`` dropout off and BatchNorm on its running statistics;
  every module's flags are put back as they were found on exit."""
  saved = [
    (node, attr, getattr(node, attr))
    for _, node in nnx.iter_graph(model)
    if isinstance(node, nnx.Module)
    for attr in _MODE_FLAGS
    if hasattr(node, attr)
  ]
  model.eval()
  try:
    yield model
  finally:
    for node, attr, value in saved:
      setattr(node, attr, value)


class SSMBlock(nnx.Module):
  """Residual block: norm (pre or post), SSM, activation/GLU, dropout.

  Dropout masks are shared along time (one mask per sequence and channel).
  """

  def __init__(
    self,
    d_model: int,
    ssm: str,
    ssm_config: dict,
    *,
    norm: str = "batch",
    prenorm: bool = True,
    activation: str = "half_glu2",
    dropout: float = 0.0,
    bn_momentum: float = 0.95,
    dtype: jnp.dtype | None = None,
    rngs: nnx.Rngs,
  ):
    if activation not in ACTIVATIONS:
      raise ValueError(f"unknown model.activation {activation!r}; expected one of {ACTIVATIONS}")
    if norm not in NORMS:
      raise ValueError(f"unknown model.norm {norm!r}; expected one of {NORMS}")
    self.prenorm = prenorm
    self.activation = activation
    if norm == "batch":
      self.norm = nnx.BatchNorm(d_model, momentum=bn_momentum, dtype=dtype, rngs=rngs)
    else:
      self.norm = nnx.LayerNorm(d_model, dtype=dtype, rngs=rngs)
    self.ssm = make_ssm(ssm, d_model, ssm_config, rngs=rngs)
    linear = lambda: nnx.Linear(d_model, d_model, dtype=dtype, rngs=rngs)
    self.out1 = linear() if activation == "full_glu" else None
    self.out2 = linear() if activation != "gelu" else None
    self.drop = nnx.Dropout(dropout, broadcast_dims=(1,), rngs=rngs)

  def _mix(self, x: jax.Array, deterministic: bool | None = None) -> jax.Array:
    """Activation/GLU and dropout after the SSM, pointwise in time (``(..., H)``)."""

    def drop(v):
      return self.drop(v, deterministic=deterministic)

    if self.activation == "gelu":
      return drop(nnx.gelu(x))
    if self.activation == "full_glu":
      x = drop(nnx.gelu(x))
      return drop(self.out1(x) * nnx.sigmoid(self.out2(x)))
    if self.activation == "half_glu1":
      x = drop(nnx.gelu(x))
      return drop(x * nnx.sigmoid(self.out2(x)))
    # half_glu2: gate computed from the activated SSM output, applied to the raw one.
    gated = drop(nnx.gelu(x))
    return drop(x * nnx.sigmoid(self.out2(gated)))

  def _inference_norm(self, x: jax.Array) -> jax.Array:
    """The norm with running statistics whatever the module's mode."""
    if isinstance(self.norm, nnx.BatchNorm):
      return self.norm(x, use_running_average=True)
    return self.norm(x)

  def _ssm(self, x: jax.Array) -> jax.Array:
    """The SSM in float32 whatever the compute dtype: a long recurrence in bfloat16
    would lose the small per-step contributions the states accumulate."""
    return self.ssm(x.astype(jnp.float32)).astype(x.dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    """``x``: ``(B, L, H)`` float32 (or the compute dtype) -> ``(B, L, H)``."""
    skip = x
    if self.prenorm:
      x = self.norm(x)
    x = skip + self._mix(self._ssm(x))
    if not self.prenorm:
      x = self.norm(x)
    return x

  def step(self, state: jax.Array, x_t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One inference step: ``(SSM state, x_t (B, H)) -> (new state, (B, H))``.

    Always inference behaviour (running norm statistics, no dropout), so it
    matches ``__call__`` of the model in eval mode.
    """
    skip = x_t
    x = self._inference_norm(x_t) if self.prenorm else x_t
    state, h = self.ssm.step(state, x.astype(jnp.float32))
    x = skip + self._mix(h.astype(x.dtype), deterministic=True)
    if not self.prenorm:
      x = self._inference_norm(x)
    return state, x


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
    dtype: compute dtype of encoder, norms, GLUs, pooling inputs and head (e.g.
      ``'bfloat16'``); None or ``'float32'``: float32. Parameters stay float32,
      the SSM runs in float32/complex64, and the logits are float32.
    Remaining arguments configure `SSMBlock`.
  """

  def __init__(
    self,
    *,
    n_classes: int,
    d_model: int,
    n_layers: int,
    ssm: str = "s5",
    ssm_config: dict | None = None,
    vocab_size: int | None = None,
    in_dim: int = 1,
    pooling: str = "mean",
    retrieval: bool = False,
    norm: str = "batch",
    prenorm: bool = True,
    activation: str = "half_glu2",
    dropout: float = 0.0,
    bn_momentum: float = 0.95,
    remat: bool = False,
    dtype: str | None = None,
    rngs: nnx.Rngs,
  ):
    if pooling not in POOLINGS:
      raise ValueError(f"unknown model.pooling {pooling!r}; expected one of {POOLINGS}")
    self.pooling = pooling
    self.retrieval = retrieval
    self.remat = remat
    dtype = jnp.dtype(dtype or "float32")
    if vocab_size is not None:
      self.encoder = nnx.Embed(vocab_size, d_model, dtype=dtype, rngs=rngs)
    else:
      self.encoder = nnx.Linear(in_dim, d_model, dtype=dtype, rngs=rngs)
    self.blocks = nnx.List(
      [
        SSMBlock(
          d_model,
          ssm,
          dict(ssm_config or {}),
          norm=norm,
          prenorm=prenorm,
          activation=activation,
          dropout=dropout,
          bn_momentum=bn_momentum,
          dtype=dtype,
          rngs=rngs,
        )
        for _ in range(n_layers)
      ]
    )
    if retrieval:
      self.match = nnx.Linear(4 * d_model, d_model, dtype=dtype, rngs=rngs)
    self.head = nnx.Linear(d_model, n_classes, dtype=dtype, rngs=rngs)

  def encode(self, inputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """Pooled features ``(B, H)`` of ``inputs`` (``(B, L)`` int32 or ``(B, L, F)`` float32)."""
    x = self.encoder(inputs)
    for block in self.blocks:
      if self.remat:
        x = nnx.remat(lambda blk, h: blk(h))(block, x)
      else:
        x = block(x)
    pool = masked_mean if self.pooling == "mean" else last_step
    return pool(x.astype(jnp.float32), lengths).astype(x.dtype)  # sum over L in float32

  def __call__(self, inputs: jax.Array, lengths: jax.Array) -> jax.Array:
    """Logits ``(B, n_classes)`` float32.

    Args:
      inputs: ``(B, L)`` int32 tokens, ``(B, L, F)`` float32 features, or for
        retrieval ``(B, 2, L)`` tokens of two documents.
      lengths: ``(B,)`` int32 valid lengths (``(B, 2)`` for retrieval).
    """
    if not self.retrieval:
      return self.head(self.encode(inputs, lengths)).astype(jnp.float32)
    batch = inputs.shape[0]
    both = self.encode(inputs.reshape((2 * batch,) + inputs.shape[2:]), lengths.reshape(-1))
    x1, x2 = both.reshape(batch, 2, -1)[:, 0], both.reshape(batch, 2, -1)[:, 1]
    features = jnp.concatenate([x1, x2, x1 * x2, x1 - x2], axis=-1)
    return self.head(nnx.gelu(self.match(features))).astype(jnp.float32)

  def init_state(self, batch_size: int) -> dict[str, Any]:
    """Zero streaming state of ``batch_size`` independent streams.

    Returns a dict: ``'layers'``, a tuple with each block's SSM state (complex64,
    ``(B,) + state_shape`` of that layer: pruned sizes after compaction);
    ``'count'`` ``(B,)`` int32 steps taken; with mean pooling ``'pool'``
    ``(B, H)`` float32, the running sum of the last block's outputs. Every array
    has the batch first, so zeroing one row restarts that stream.

    Raises:
      ValueError: a retrieval (two-document) model, or a bidirectional layer
        (its output at time t depends on future inputs).
    """
    if self.retrieval:
      raise ValueError(
        "a retrieval model classifies two whole documents; it cannot stream "
        "(use the full-sequence forward)"
      )
    layers = []
    for i, block in enumerate(self.blocks):
      try:
        layers.append(block.ssm.init_state(batch_size))
      except ValueError as e:
        raise ValueError(
          f"blocks.{i}.ssm cannot stream: {e}. Train a causal model "
          "(--config.model.ssm_config.bidirectional=False) to stream it"
        ) from e
    state = dict(layers=tuple(layers), count=jnp.zeros((batch_size,), jnp.int32))
    if self.pooling == "mean":
      state["pool"] = jnp.zeros((batch_size, self.head.in_features), jnp.float32)
    return state

  def step(self, state: dict[str, Any], x_t: jax.Array) -> tuple[dict[str, Any], jax.Array]:
    """Consumes one token per stream; returns ``(new_state, logits (B, n_classes))``.

    Args:
      state: from `init_state` or the previous step.
      x_t: ``(B,)`` int32 tokens or ``(B, F)`` float32 features at this step.

    The logits equal ``self(inputs, lengths)`` with ``lengths`` = steps taken
    (the model in eval mode): the prediction of the prefix seen so far.
    """
    if self.retrieval:
      raise ValueError("a retrieval model cannot stream (use the full-sequence forward)")
    x = self.encoder(x_t)
    layers = []
    for block, layer_state in zip(self.blocks, state["layers"]):
      layer_state, x = block.step(layer_state, x)
      layers.append(layer_state)
    new = dict(layers=tuple(layers), count=state["count"] + 1)
    if self.pooling == "mean":
      new["pool"] = state["pool"] + x
      x = new["pool"] / new["count"][:, None].astype(x.dtype)
    return new, self.head(x).astype(jnp.float32)

  def prunable_layers(self) -> dict[str, Any]:
    """The model's `PrunableSSM` layers by path (``'blocks.0.ssm'``, ...)."""
    return find_prunable_layers(self)


def build_model(
  model_config, *, n_classes: int, vocab_size: int | None, in_dim: int, retrieval: bool, seed: int
) -> SequenceModel:
  """Builds a `SequenceModel` from the ``model`` section of a config.

  Unknown fields of ``model_config`` raise a ValueError naming them.
  """
  options = dict(model_config)
  known = set(inspect.signature(SequenceModel.__init__).parameters) - {"self", "rngs"}
  unknown = sorted(set(options) - known)
  if unknown:
    raise ValueError(f"unknown model config field(s) {unknown}; known: {sorted(known)}")
  options["ssm_config"] = dict(options.get("ssm_config") or {})
  return SequenceModel(
    n_classes=n_classes,
    vocab_size=vocab_size,
    in_dim=in_dim,
    retrieval=retrieval,
    rngs=nnx.Rngs(params=seed, dropout=seed + 1),
    **options,
  )
