"""Sequence model: every pooling/head/encoder compiles and behaves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx.model import SequenceModel, build_model, last_step, masked_mean

COMMON = dict(d_model=8, n_layers=2, ssm_config=dict(state_size=8, bidirectional=True))
# The model's forward, compiled once per model structure (an eager call re-traces the scans).
_forward = nnx.jit(lambda m, x, lengths: m(x, lengths))


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("kind", ["tokens", "features", "retrieval"])
def test_jit_forward_every_head(ssm, pooling, kind):
  vocab = None if kind == "features" else 12
  model = SequenceModel(
    n_classes=3,
    ssm=ssm,
    pooling=pooling,
    vocab_size=vocab,
    in_dim=2,
    retrieval=kind == "retrieval",
    rngs=nnx.Rngs(0),
    **COMMON,
  )
  if kind == "tokens":
    x, lengths = jnp.ones((4, 10), jnp.int32), jnp.array([10, 3, 5, 1])
  elif kind == "features":
    x, lengths = jnp.ones((4, 10, 2)), jnp.array([10, 3, 5, 1])
  else:
    x, lengths = jnp.ones((4, 2, 10), jnp.int32), jnp.full((4, 2), 7)
  logits = nnx.jit(lambda m, x, l: m(x, l))(model, x, lengths)
  assert logits.shape == (4, 3) and np.all(np.isfinite(np.asarray(logits)))
  assert sorted(model.prunable_layers()) == ["blocks.0.ssm", "blocks.1.ssm"]


def test_pooling_ignores_padding():
  x = jnp.arange(2 * 5 * 1, dtype=jnp.float32).reshape(2, 5, 1)
  lengths = jnp.array([2, 5])
  np.testing.assert_allclose(masked_mean(x, lengths)[:, 0], [0.5, 7.0])
  np.testing.assert_allclose(last_step(x, lengths)[:, 0], [1.0, 9.0])


def test_unidirectional_mean_pool_is_causal_in_padding():
  """Changing tokens past a sequence's length must not change its logits (causal SSM)."""
  model = SequenceModel(
    n_classes=3,
    vocab_size=12,
    d_model=8,
    n_layers=2,
    norm="layer",
    ssm_config=dict(state_size=8),
    rngs=nnx.Rngs(0),
  )
  model.eval()
  x = jax.random.randint(jax.random.key(0), (1, 10), 1, 12)
  y = x.at[0, 6:].set(3)
  lengths = jnp.array([6])
  np.testing.assert_allclose(_forward(model, x, lengths), _forward(model, y, lengths), atol=1e-5)


def test_dropout_active_only_in_training():
  model = SequenceModel(n_classes=3, vocab_size=12, dropout=0.5, rngs=nnx.Rngs(0), **COMMON)
  x, lengths = jnp.ones((2, 6), jnp.int32), jnp.array([6, 6])
  model.eval()
  np.testing.assert_allclose(_forward(model, x, lengths), _forward(model, x, lengths))
  model.train()
  assert not np.allclose(_forward(model, x, lengths), _forward(model, x, lengths))


def test_build_model_rejects_unknown_field():
  with pytest.raises(ValueError, match="n_layer"):
    build_model(
      dict(d_model=8, n_layer=2), n_classes=2, vocab_size=5, in_dim=1, retrieval=False, seed=0
    )
  with pytest.raises(ValueError, match="unknown model.ssm"):
    build_model(
      dict(d_model=8, n_layers=1, ssm="s6"),
      n_classes=2,
      vocab_size=5,
      in_dim=1,
      retrieval=False,
      seed=0,
    )
  with pytest.raises(ValueError, match="ssm_config"):
    build_model(
      dict(d_model=8, n_layers=1, ssm_config=dict(bogus=1)),
      n_classes=2,
      vocab_size=5,
      in_dim=1,
      retrieval=False,
      seed=0,
    )


def test_remat_gives_same_gradients():
  def grads(remat):
    model = SequenceModel(n_classes=3, vocab_size=12, remat=remat, rngs=nnx.Rngs(0), **COMMON)
    x, lengths = jnp.ones((2, 6), jnp.int32), jnp.array([6, 4])
    g = nnx.jit(nnx.grad(lambda m: jnp.sum(m(x, lengths))))(model)  # remat acts under jit
    return jax.tree_util.tree_leaves(nnx.state(g, nnx.Param))

  # Remat recomputes the forward inside other fusions, so float32 rounding differs: with
  # XLA's classic CPU emitters (tests/conftest.py) by up to 2.4e-4 on gradients up to 2.2
  # (1.1e-4 relative; 0 with the default emitters); a wrong recomputation would differ by
  # the gradient's own size.
  for a, b in zip(grads(False), grads(True)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
