"""Whole-model streaming: `SequenceModel.step` equals the full-sequence forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from tests.compiled import forward

BATCH, LENGTH, VOCAB = 3, 10, 7
SSM_CONFIGS = {
  "s5": dict(state_size=16, blocks=2),
  "s4d": dict(state_size=8),
  "lru": dict(state_size=8),
}


def _bare(
  ssm,
  *,
  pooling="mean",
  norm="batch",
  prenorm=True,
  activation="half_glu2",
  bidirectional=False,
  vocab=VOCAB,
  seed=0,
  n_layers=2,
  **kw,
):
  return SequenceModel(
    n_classes=4,
    d_model=8,
    n_layers=n_layers,
    ssm=ssm,
    ssm_config=dict(SSM_CONFIGS[ssm], bidirectional=bidirectional),
    vocab_size=vocab,
    in_dim=3,
    pooling=pooling,
    norm=norm,
    prenorm=prenorm,
    activation=activation,
    dropout=0.1,
    rngs=nnx.Rngs(seed),
    **kw,
  )


# Compiled whole: run eagerly, every operation of the model would compile on its own.
_step = nnx.jit(lambda model, state, x_t: model.step(state, x_t))


def _model(ssm, *, vocab=VOCAB, seed=0, **kw):
  model = _bare(ssm, vocab=vocab, seed=seed, **kw)
  # Non-trivial running statistics: one train-mode forward updates them.
  model.train()
  x, lengths = _inputs(vocab, seed=seed + 1)
  forward(model, x, lengths)
  model.eval()
  return model


def _inputs(vocab=VOCAB, seed=0):
  rng = np.random.default_rng(seed)
  if vocab:
    x = rng.integers(0, vocab, (BATCH, LENGTH)).astype(np.int32)
  else:
    x = rng.normal(size=(BATCH, LENGTH, 3)).astype(np.float32)
  return jnp.asarray(x), jnp.full((BATCH,), LENGTH, jnp.int32)


@nnx.jit
def _stream(model, inputs):
  """Logits after every step, ``(B, L, n_classes)``, and the final state."""

  def body(state, x_t):
    state, logits = model.step(state, x_t)
    return state, logits

  state, logits = jax.lax.scan(body, model.init_state(inputs.shape[0]), jnp.swapaxes(inputs, 0, 1))
  return jnp.swapaxes(logits, 0, 1), state


@nnx.jit
def _prefix_forward(model, inputs):
  """``model(inputs, lengths=t + 1)`` for every t, ``(B, L, n_classes)``."""
  b, length = inputs.shape[:2]
  tiled = jnp.tile(inputs, (length,) + (1,) * (inputs.ndim - 1))
  lengths = jnp.repeat(jnp.arange(1, length + 1, dtype=jnp.int32), b)
  return jnp.swapaxes(model(tiled, lengths).reshape(length, b, -1), 0, 1)


def _assert_streams(model, vocab=VOCAB):
  x, _ = _inputs(vocab, seed=7)
  streamed, state = _stream(model, x)
  expected = _prefix_forward(model, x)
  assert streamed.shape == (BATCH, LENGTH, 4)
  np.testing.assert_allclose(np.asarray(streamed), np.asarray(expected), rtol=2e-4, atol=2e-5)
  np.testing.assert_array_equal(np.asarray(state["count"]), np.full(BATCH, LENGTH))
  return state


@pytest.mark.parametrize("ssm", sorted(SSM_CONFIGS))
@pytest.mark.parametrize("variant", ["dense", "mask", "compact"])
def test_step_equals_forward(ssm, variant):
  model = _model(ssm)
  if variant != "dense":
    report = pruning.prune(model, 0.5, criterion="last", mode=variant)
    assert report.states_after < report.states_before
  state = _assert_streams(model)
  for layer, layer_state in zip(model.prunable_layers().values(), state["layers"]):
    assert layer_state.shape == (BATCH,) + layer.state_shape
    # Pruned (masked) and padding slots get no input: they stay exactly zero.
    dead = np.asarray(layer.state_mask[...]) == 0
    assert np.all(np.asarray(layer_state)[:, dead] == 0)


def test_compacted_state_is_smaller():
  model = _model("s5")
  dense_shape = model.init_state(1)["layers"][0].shape
  pruning.prune(model, 0.5, criterion="last", mode="compact")
  state = model.init_state(1)
  assert sum(s.shape[1] for s in state["layers"]) == 8  # 16 stored -> 8 kept, over 2 layers
  assert all(s.shape[1] < dense_shape[1] or s.shape == dense_shape for s in state["layers"])


@pytest.mark.parametrize(
  "options",
  [
    dict(pooling="last"),
    dict(norm="layer", prenorm=False, activation="full_glu"),
    dict(activation="gelu", vocab=None),
    dict(activation="half_glu1", pooling="last", vocab=None),
  ],
)
def test_step_equals_forward_variants(options):
  model = _model("s5", **options)
  state = _assert_streams(model, options.get("vocab", VOCAB))
  assert ("pool" in state) == (options.get("pooling", "mean") == "mean")


def test_step_is_inference_even_in_train_mode():
  model = _model("lru")
  x, _ = _inputs(seed=3)
  expected = _prefix_forward(model, x)
  model.train()  # dropout on, batch statistics: step must ignore both
  streamed, _ = _stream(model, x)
  np.testing.assert_allclose(np.asarray(streamed), np.asarray(expected), rtol=2e-4, atol=2e-5)


def test_rows_are_independent_streams():
  model = _model("s4d")
  x, _ = _inputs(seed=5)
  state = model.init_state(BATCH)
  for t in range(4):
    state, _ = _step(model, state, x[:, t])
  # Restart stream 1 by zeroing its row: it then matches a fresh single stream.
  state = jax.tree.map(lambda a: a.at[1].set(0), state)
  fresh = model.init_state(1)
  for t in range(4, LENGTH):
    state, logits = _step(model, state, x[:, t])
    fresh, fresh_logits = _step(model, fresh, x[1:2, t])
  np.testing.assert_allclose(
    np.asarray(logits[1]), np.asarray(fresh_logits[0]), rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("ssm", sorted(SSM_CONFIGS))
def test_bidirectional_refuses(ssm):
  model = _bare(ssm, bidirectional=True)
  with pytest.raises(ValueError, match=r"blocks\.0\.ssm cannot stream.*bidirectional"):
    model.init_state(2)


def test_retrieval_refuses():
  model = _bare("s5", n_layers=1, retrieval=True)
  with pytest.raises(ValueError, match="retrieval"):
    model.init_state(2)
