"""The Mamba-2 LM: prefill + steps == forward, generation, perplexity, pruning and compaction."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.lm import Mamba2LM, Mamba2LMConfig, evaluate, generate
from last_nnx.ssm.base import live_states
from last_nnx.ssm.mamba2 import gated_rms_norm
from tests.compiled import forward

CONFIG = Mamba2LMConfig.tiny(n_groups=2, tie_embeddings=False, chunk_size=8)


@pytest.fixture(scope="module")
def model():
  return Mamba2LM(CONFIG, rngs=nnx.Rngs(0))


def _tokens(shape, seed=1):
  return jax.random.randint(jax.random.key(seed), shape, 0, CONFIG.vocab_size)


@nnx.jit
def _decode_logits_jit(model, tokens, split_tokens):
  state, last = model.prefill(split_tokens)

  def body(state, token):
    state, logits = model.step(state, token)
    return state, logits

  _, logits = jax.lax.scan(body, state, tokens.T)
  return jnp.concatenate([last[:, None], jnp.moveaxis(logits, 0, 1)], axis=1)


def _decode_logits(model, tokens, split):
  """Logits of positions split-1 .. L-1 from prefill(tokens[:, :split]) then steps."""
  return np.asarray(_decode_logits_jit(model, tokens[:, split:], tokens[:, :split]))


def test_prefill_then_steps_equal_the_forward(model):
  tokens = _tokens((2, 21))  # 2 chunks and a part, then 5 steps
  full = np.asarray(forward(model, tokens))
  assert full.shape == (2, 21, CONFIG.vocab_size) and full.dtype == np.float32
  decoded = _decode_logits(model, tokens, 16)
  np.testing.assert_allclose(decoded, full[:, 15:], rtol=1e-5, atol=1e-5)


def test_generation_greedy_sampled_and_batched(model):
  prompt = _tokens((3, 5))
  greedy = generate(model, prompt, 4)
  assert greedy.shape == (3, 4) and greedy.dtype == np.int32
  # Greedy: each new token is the argmax of the full forward over the prompt and the
  # tokens before it (causal: position t sees tokens <= t only).
  # (jitted: an eager forward compiles op by op; (3, 9) is also evaluate's shape below)
  full = np.asarray(forward(model, jnp.concatenate([prompt, jnp.asarray(greedy)], axis=1)))
  np.testing.assert_array_equal(greedy, np.argmax(full[:, 4:8], -1))
  # Top-1 sampling is greedy whatever the temperature; seeds repeat.
  np.testing.assert_array_equal(generate(model, prompt, 4, temperature=2.0, top_k=1), greedy)
  a = generate(model, prompt, 4, temperature=1.0, top_k=8, seed=3)
  np.testing.assert_array_equal(a, generate(model, prompt, 4, temperature=1.0, top_k=8, seed=3))
  with pytest.raises(ValueError, match="top_k"):
    generate(model, prompt, 2, temperature=1.0, top_k=0)


def test_evaluate_is_the_mean_token_nll(model):
  windows = np.asarray(_tokens((3, 10)))
  result = evaluate(model, windows, batch_size=2)
  logp = jax.nn.log_softmax(forward(model, jnp.asarray(windows[:, :-1])), -1)
  nll = -np.take_along_axis(np.asarray(logp), windows[:, 1:, None], -1).mean()
  assert result["tokens"] == 27
  np.testing.assert_allclose(result["loss"], nll, rtol=1e-5)
  np.testing.assert_allclose(result["perplexity"], np.exp(nll), rtol=1e-5)


def test_pruned_lm_compacts_and_runs():
  model = Mamba2LM(CONFIG, rngs=nnx.Rngs(2))
  calibration = [(_tokens((2, 12), seed=4), jnp.array([12, 12]))]
  report = pruning.prune(model, 0.5, criterion="calibrated", calibration=calibration)
  layers = model.prunable_layers()
  assert sorted(layers) == ["layers.0.mixer", "layers.1.mixer"]
  assert sum(live_states(l) for l in layers.values()) == 2 * 2 * 8 // 2 == report.states_after
  assert max(model.state_sizes()) < CONFIG.state_size  # the arrays shrank
  tokens = _tokens((2, 11))
  decoded = _decode_logits(model, tokens, 6)
  np.testing.assert_allclose(
    decoded, np.asarray(forward(model, tokens))[:, 5:], rtol=1e-5, atol=1e-5
  )


def test_gated_norm_per_group_or_whole_width():
  y = jax.random.normal(jax.random.key(0), (2, 3, 8))
  z = jax.random.normal(jax.random.key(1), (2, 3, 8))
  scale = jnp.arange(1.0, 9.0)
  v = np.asarray(y * jax.nn.silu(z))
  rms = lambda a: a / np.sqrt((a * a).mean(-1, keepdims=True) + 1e-5)
  whole = rms(v) * np.asarray(scale)
  grouped = np.concatenate([rms(v[..., :4]), rms(v[..., 4:])], -1) * np.asarray(scale)
  np.testing.assert_allclose(gated_rms_norm(y, z, scale, 1), whole, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(gated_rms_norm(y, z, scale, 2), grouped, rtol=1e-5, atol=1e-6)
  assert np.abs(whole - grouped).max() > 1e-2  # the choice matters when G > 1
  full = Mamba2LMConfig.tiny(n_groups=2, gated_norm="full")
  assert full.mixer_options(0)["norm_groups"] == 1 and CONFIG.mixer_options(0)["norm_groups"] == 2
