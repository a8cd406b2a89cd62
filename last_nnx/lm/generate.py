"""Text generation and perplexity for `last_nnx.lm.Mamba2LM`.

Generation is prefill then decode: the prompt ``(B, L)`` goes through the chunked
scan once (`Mamba2LM.prefill`), then each new token is one `Mamba2LM.step` (a fixed
amount of work and memory per token, the streaming state of every layer). Both run in
one compiled program: the decode loop is a ``lax.scan`` over the new tokens.

Sampling at step t, from the logits ``l (B, V)``:

1. ``temperature == 0``: greedy, ``argmax l``;
2. else ``l / temperature``; with ``top_k``, every logit below the k-th largest of its
   row is set to -inf;
3. one draw from ``softmax`` of the result per row (``jax.random.categorical``).

Perplexity: over windows ``w (n, L)`` of tokens, each window predicts its tokens
1..L-1 from the ones before, ``loss = mean -log p(w[t] | w[:t])`` over all predicted
tokens, ``perplexity = exp(loss)``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def sample_token(
  logits: jax.Array, key: jax.Array, temperature: float = 0.0, top_k: int | None = None
) -> jax.Array:
  """``logits (B, V)`` float32 -> tokens ``(B,)`` int32 (module docstring, steps 1-3)."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / temperature
  if top_k is not None:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "temperature", "top_k"))
def _generate(graphdef, params, prompt, key, steps, temperature, top_k):
  model = nnx.merge(graphdef, params)
  with jax.named_scope("prefill"):
    state, logits = model.prefill(prompt)

  def decode(carry, key_t):
    state, logits = carry
    token = sample_token(logits, key_t, temperature, top_k)
    state, logits = model.step(state, token)
    return (state, logits), token

  with jax.named_scope("decode"):
    _, tokens = jax.lax.scan(decode, (state, logits), jax.random.split(key, steps))
  return tokens.T  # (B, steps)


def generate(
  model: nnx.Module,
  prompt,
  max_new_tokens: int,
  *,
  temperature: float = 0.0,
  top_k: int | None = None,
  seed: int = 0,
) -> np.ndarray:
  """Continues each row of ``prompt (B, L)`` int32 by ``max_new_tokens`` tokens.

  Greedy when ``temperature == 0`` (the default), else sampled (module docstring).
  Returns the new tokens ``(B, max_new_tokens)`` int32 (without the prompt).
  """
  prompt = jnp.asarray(prompt, jnp.int32)
  if prompt.ndim != 2 or prompt.shape[1] < 1:
    raise ValueError(
      f"generate: prompt has shape {prompt.shape}; pass (batch, length >= 1) int32 tokens"
    )
  if max_new_tokens < 1:
    return np.zeros((prompt.shape[0], 0), np.int32)
  if top_k is not None and not 1 <= top_k <= model.config.vocab_size:
    raise ValueError(
      f"generate: top_k = {top_k}; pass 1 <= top_k <= vocab size {model.config.vocab_size} or None"
    )
  graphdef, params = nnx.split(model)
  return np.asarray(
    _generate(
      graphdef, params, prompt, jax.random.key(seed), max_new_tokens, float(temperature), top_k
    )
  )


def token_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """``-log softmax(logits)[targets]``: ``logits (..., V)``, ``targets (...)`` -> ``(...)``."""
  logz = jax.nn.logsumexp(logits, axis=-1)
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return logz - picked


@nnx.jit
def _window_nll_sum(model, windows):
  logits = model(windows[:, :-1])
  return jnp.sum(token_nll(logits, windows[:, 1:]))


def evaluate(model: nnx.Module, windows, batch_size: int = 8) -> dict:
  """Loss and perplexity of ``model`` on ``windows (n, L)`` int32 (module docstring).

  Returns ``{'loss': mean nats per predicted token, 'perplexity': exp(loss),
  'tokens': n (L - 1)}`` as Python floats/ints. The last batch may be smaller
  (one more compile).
  """
  windows = np.asarray(windows, np.int32)
  if windows.ndim != 2 or windows.shape[1] < 2 or len(windows) == 0:
    raise ValueError(
      f"evaluate: windows have shape {windows.shape}; pass (n >= 1, L >= 2) int32 tokens"
    )
  total = 0.0
  for start in range(0, len(windows), batch_size):
    total += float(_window_nll_sum(model, jnp.asarray(windows[start : start + batch_size])))
  count = windows.shape[0] * (windows.shape[1] - 1)
  loss = total / count
  return {"loss": loss, "perplexity": float(np.exp(loss)), "tokens": count}
