"""A Mamba-2 causal language model built from the project's prunable Mamba-2 layer.

    from flax import nnx
    from last_nnx.lm import Mamba2LM, Mamba2LMConfig

    model = Mamba2LM(Mamba2LMConfig.tiny(), rngs=nnx.Rngs(0))
    logits = model(tokens)                      # tokens (B, L) int32 -> (B, L, V) float32
    state, last = model.prefill(tokens)         # chunked scan; last (B, V): next-token logits
    state, logits_t = model.step(state, tok_t)  # tok_t (B,) int32 -> (B, V), one token

The architecture of mamba_ssm's ``MambaLMHeadModel`` and transformers'
``Mamba2ForCausalLM``:

1. ``h_0 = E[tokens]``, the embedding ``E (V, D)``;
2. per layer ``i``: ``h_{i+1} = h_i + Mamba2_i(RMSNorm_i(h_i))``, the residual stream in
   float32 (``residual_in_fp32``; everything here is float32);
3. ``logits = RMSNorm_f(h_n) W^T`` with ``W = E`` when the embeddings are tied, else the
   LM head ``(V, D)``.

``RMSNorm(x) = x / sqrt(mean(x^2) + eps) * w``. The mixers are `last_nnx.ssm.Mamba2`
layers (paths ``layers.{i}.mixer``), so the pruning engine finds, scores, calibrates and
compacts them as in any Mamba-2 `SequenceModel`; after compaction each layer keeps its
own state size. ``__call__`` accepts (and ignores) the ``lengths`` the calibration
passes: the model is causal, so a padded tail never changes the valid steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.lm.config import Mamba2LMConfig
from last_nnx.ssm import Mamba2, find_prunable_layers


class RMSNorm(nnx.Module):
  """``x / sqrt(mean(x^2, -1) + eps) * weight`` over the last axis (float32)."""

  def __init__(self, dim: int, eps: float = 1e-5):
    self.weight = nnx.Param(jnp.ones((dim,), jnp.float32))
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps) * self.weight[...]


class Mamba2Block(nnx.Module):
  """``h + mixer(norm(h))``: the pre-norm residual block of the LM."""

  def __init__(self, config: Mamba2LMConfig, index: int, *, rngs: nnx.Rngs):
    self.norm = RMSNorm(config.d_model, config.norm_eps)
    self.mixer = Mamba2(config.d_model, **config.mixer_options(index), rngs=rngs)

  def __call__(self, h: jax.Array) -> jax.Array:
    """``h (B, L, D)`` float32 -> ``(B, L, D)``."""
    return h + self.mixer(self.norm(h))

  def prefill(self, h: jax.Array, state: dict | None = None) -> tuple[dict, jax.Array]:
    """``h (B, L, D)`` -> ``(mixer state after h, (B, L, D))``."""
    state, y = self.mixer.prefill(self.norm(h), state)
    return state, h + y

  def step(self, state: dict, h_t: jax.Array) -> tuple[dict, jax.Array]:
    """``h_t (B, D)`` -> ``(new state, (B, D))``."""
    state, y = self.mixer.step(state, self.norm(h_t))
    return state, h_t + y


class Mamba2LM(nnx.Module):
  """Mamba-2 causal LM (module docstring). ``Mamba2LM(config, rngs=nnx.Rngs(0))``.

  Fresh weights follow mamba_ssm's initialization: embedding ``N(0, 0.02)``, each
  mixer's out-projection scaled by ``1 / sqrt(n_layers)`` (the residual stream grows
  with depth), the mixers' own initialization otherwise (`last_nnx.ssm.Mamba2`).
  """

  def __init__(self, config: Mamba2LMConfig, *, rngs: nnx.Rngs):
    self.config = config
    v, d = config.vocab_size, config.d_model
    self.embedding = nnx.Param(0.02 * jax.random.normal(rngs.params(), (v, d), jnp.float32))
    self.layers = nnx.List([Mamba2Block(config, i, rngs=rngs) for i in range(config.n_layers)])
    scale = 1.0 / np.sqrt(config.n_layers)
    for block in self.layers:
      block.mixer.out.set_value(block.mixer.out.get_value() * scale)
    self.norm_f = RMSNorm(d, config.norm_eps)
    self.lm_head = (
      None
      if config.tie_embeddings
      else nnx.Param(0.02 * jax.random.normal(rngs.params(), (v, d), jnp.float32))
    )

  # ---- pieces --------------------------------------------------------------------------

  def head_weight(self) -> jax.Array:
    """``(V, D)``: the embedding when tied, else the LM head."""
    return self.embedding[...] if self.lm_head is None else self.lm_head[...]

  def embed(self, tokens: jax.Array) -> jax.Array:
    """``tokens (...) int32 -> (..., D)`` float32."""
    return jnp.take(self.embedding[...], tokens, axis=0)

  def logits(self, h: jax.Array) -> jax.Array:
    """Final norm and LM head: ``h (..., D) -> (..., V)`` float32."""
    with jax.named_scope("lm_head"):
      return self.norm_f(h) @ self.head_weight().T

  # ---- full sequences ------------------------------------------------------------------

  def hidden(self, tokens: jax.Array) -> jax.Array:
    """The residual stream after the last block: ``tokens (B, L) -> (B, L, D)``."""
    h = self.embed(tokens)
    for i, block in enumerate(self.layers):
      with jax.named_scope(f"layer_{i}"):
        h = block(h)
    return h

  def __call__(self, tokens: jax.Array, lengths: jax.Array | None = None) -> jax.Array:
    """``tokens (B, L) int32 -> logits (B, L, V)`` float32; ``lengths`` is ignored (causal)."""
    del lengths
    return self.logits(self.hidden(tokens))

  # ---- streaming -----------------------------------------------------------------------

  def init_state(self, batch_size: int) -> dict:
    """Zero decode state: ``{'layers': (mixer state per layer)}``, batch first.

    Each mixer state is ``{'conv': (B, W - 1, d_inner + 2 G N_i), 'ssm': (B, nh, N_i, P)}``
    float32, ``N_i`` that layer's (possibly pruned) state size.
    """
    return {"layers": tuple(b.mixer.init_state(batch_size) for b in self.layers)}

  def prefill(self, tokens: jax.Array, state: dict | None = None) -> tuple[dict, jax.Array]:
    """Runs the chunked scan over ``tokens (B, L)``; returns ``(state, logits (B, V))``.

    ``logits`` predict the token after the last one; ``state`` continues with `step`
    (or another `prefill`). Equal to stepping every token, at the cost of one forward.
    """
    h = self.embed(tokens)
    states = self.init_state(tokens.shape[0])["layers"] if state is None else state["layers"]
    new = []
    for i, (block, s) in enumerate(zip(self.layers, states)):
      with jax.named_scope(f"layer_{i}"):
        s, h = block.prefill(h, s)
      new.append(s)
    return {"layers": tuple(new)}, self.logits(h[:, -1])

  def step(self, state: dict, tokens_t: jax.Array) -> tuple[dict, jax.Array]:
    """One token per stream: ``tokens_t (B,) int32 -> (new state, logits (B, V))``."""
    h = self.embed(tokens_t)
    new = []
    for block, s in zip(self.layers, state["layers"]):
      s, h = block.step(s, h)
      new.append(s)
    return {"layers": tuple(new)}, self.logits(h)

  def state_bytes(self, batch_size: int = 1) -> int:
    """Bytes of the decode state of ``batch_size`` streams (conv windows and SSM states)."""
    shapes = jax.eval_shape(lambda: self.init_state(batch_size))
    return int(sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(shapes)))

  # ---- pruning -------------------------------------------------------------------------

  def prunable_layers(self) -> dict:
    """The mixers by path (``'layers.0.mixer'``, ...), as the pruning engine finds them."""
    return find_prunable_layers(self)

  def state_sizes(self) -> tuple[int, ...]:
    """Each layer's stored N (the compacted width; masked slots still count)."""
    return tuple(int(b.mixer.state_shape[1]) for b in self.layers)
