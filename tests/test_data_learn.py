"""Slow: small models learn the synthetic tasks clearly above chance.

The models are defined here (a few lines of flax.nnx) so that the check
depends on nothing but the data package: a stack of diagonal linear
recurrences over the sequence for ListOps, a small convolutional net over the
image for Pathfinder.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx import data


class DiagonalRecurrence(nnx.Module):
  """``h_t = a * h_{t-1} + W_in x_t`` per state, both directions; ``y = W_out [h_fwd, h_bwd]``.

  Decays ``a = exp(-exp(log_rate))`` start spread over time scales 1..L.
  """

  def __init__(self, width: int, states: int, seq_len: int, *, rngs: nnx.Rngs):
    self.w_in = nnx.Linear(width, 2 * states, rngs=rngs)
    self.w_out = nnx.Linear(2 * states, width, rngs=rngs)
    self.log_rate = nnx.Param(-jnp.linspace(0.0, jnp.log(seq_len), 2 * states))

  def __call__(self, x, mask):
    u = self.w_in(x) * mask[..., None]  # (B, L, 2S): padding feeds nothing
    a = jnp.exp(-jnp.exp(self.log_rate[...]))
    fwd, bwd = jnp.split(u, 2, axis=-1)
    a_f, a_b = jnp.split(a, 2)
    combine = lambda p, q: (p[0] * q[0], q[0] * p[1] + q[1])
    scan = lambda v, decay, reverse: jax.lax.associative_scan(
      combine, (jnp.broadcast_to(decay, v.shape), v), axis=1, reverse=reverse
    )[1]
    h = jnp.concatenate([scan(fwd, a_f, False), scan(bwd, a_b, True)], axis=-1)
    return self.w_out(h)


class SequenceClassifier(nnx.Module):
  """Embedding -> residual [norm, recurrence, GELU MLP] blocks -> masked mean -> classes."""

  def __init__(
    self, vocab: int, n_classes: int, seq_len: int, width=64, states=32, depth=2, *, rngs: nnx.Rngs
  ):
    self.embed = nnx.Embed(vocab, width, rngs=rngs)
    self.norms = nnx.List([nnx.LayerNorm(width, rngs=rngs) for _ in range(depth)])
    self.mixers = nnx.List(
      [DiagonalRecurrence(width, states, seq_len, rngs=rngs) for _ in range(depth)]
    )
    self.mlps = nnx.List([nnx.Linear(width, width, rngs=rngs) for _ in range(depth)])
    self.head = nnx.Linear(width, n_classes, rngs=rngs)

  def __call__(self, tokens, lengths):
    mask = (jnp.arange(tokens.shape[1]) < lengths[:, None]).astype(jnp.float32)
    x = self.embed(tokens)
    for norm, mixer, mlp in zip(self.norms, self.mixers, self.mlps):
      x = x + jax.nn.gelu(mlp(mixer(norm(x), mask)))
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    return self.head(pooled)


class ImageClassifier(nnx.Module):
  """The pixel sequence as a ``side x side`` image: 3x3 convs, two poolings, global max."""

  def __init__(self, side: int, n_classes: int, width=32, *, rngs: nnx.Rngs):
    self.side = side
    chans = [1, width, width, 2 * width, 2 * width, 2 * width]
    self.convs = nnx.List([nnx.Conv(i, o, (3, 3), rngs=rngs) for i, o in zip(chans, chans[1:])])
    self.head = nnx.Linear(chans[-1], n_classes, rngs=rngs)

  def __call__(self, pixels, lengths):
    del lengths
    x = pixels.reshape(-1, self.side, self.side, 1)
    for i, conv in enumerate(self.convs):
      x = jax.nn.relu(conv(x))
      if i in (1, 3):
        x = nnx.max_pool(x, (2, 2), strides=(2, 2))
    return self.head(x.max(axis=(1, 2)))


def accuracy_after_training(model, task, epochs: int, lr: float) -> float:
  """Trains with Adam (cosine decay) and returns test accuracy."""
  steps = epochs * task.steps_per_epoch
  tx = optax.adam(optax.warmup_cosine_decay_schedule(0.0, lr, steps // 20, steps))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

  @nnx.jit
  def step(model, optimizer, x, lengths, y):
    def loss_fn(model):
      return optax.softmax_cross_entropy_with_integer_labels(model(x, lengths), y).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  @nnx.jit
  def predict(model, x, lengths):
    return model(x, lengths).argmax(-1)

  for epoch in range(epochs):
    for x, lengths, y in task.train_batches(epoch):
      step(model, optimizer, x, lengths, y)
  hits = [
    np.asarray(predict(model, x, lengths)) == y for x, lengths, y in task.eval_batches("test")
  ]
  return float(np.concatenate(hits).mean())


def synthetic_task(name, tmp_path, n_train, n_eval, batch_size, **fields):
  c = data.default_data_config(name)
  c.cache_dir = str(tmp_path / "cache")
  for k, v in fields.items():
    c[k] = v
  c.synthetic.update(n_train=n_train, n_val=n_eval, n_test=n_eval)
  if name == "listops":
    c.synthetic.max_length = c.seq_len
  return data.build_task(c, batch_size=batch_size, eval_batch_size=250)


@pytest.mark.slow
def test_small_model_learns_synthetic_listops(tmp_path):
  task = synthetic_task("listops", tmp_path, 6000, 1000, 50, seq_len=128)
  model = SequenceClassifier(task.vocab_size, task.n_classes, task.seq_len, rngs=nnx.Rngs(0))
  acc = accuracy_after_training(model, task, epochs=16, lr=3e-3)
  assert acc > 0.25, acc  # chance: 0.1 (balanced answers); measured 0.32


@pytest.mark.slow
def test_small_model_learns_synthetic_pathfinder32(tmp_path):
  task = synthetic_task("pathfinder", tmp_path, 8000, 1000, 50, resolution=32)
  model = ImageClassifier(32, task.n_classes, rngs=nnx.Rngs(0))
  acc = accuracy_after_training(model, task, epochs=8, lr=2e-3)
  assert acc > 0.65, acc  # chance: 0.5 (balanced labels); measured 0.78
