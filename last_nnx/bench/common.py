"""What every benchmark section shares: the task shapes, a model, a batch, a timer."""

import time

import jax.numpy as jnp
import numpy as np
from flax import nnx

from last_nnx.bench.shapes import TASK_SHAPES  # noqa: F401  (re-exported)
from last_nnx.model import SequenceModel
from last_nnx.train.steps import TrainCarry, train_step


def build_model(shape, ssm: str, seed: int = 0, remat: bool = False) -> SequenceModel:
  if ssm == "s5":
    d_model, ssm_config = (
      shape["H"],
      dict(state_size=shape["P"], blocks=shape["J"], bidirectional=True),
    )
  else:
    d_model, ssm_config = shape["s4d_H"], dict(state_size=64, bidirectional=True)
  return SequenceModel(
    n_classes=shape["classes"],
    d_model=d_model,
    n_layers=shape["layers"],
    ssm=ssm,
    ssm_config=ssm_config,
    vocab_size=shape["vocab"],
    retrieval=shape.get("retrieval", False),
    remat=remat,
    rngs=nnx.Rngs(seed),
  )


def one_train_step(model, optimizer, x, lengths, y):
  """One (donating) step of the training loop's own `train_step`."""
  return train_step(model, optimizer, TrainCarry.start(model), x, lengths, y)


def make_batch(shape, batch: int, length: int | None = None):
  length = length or shape["L"]
  rng = np.random.default_rng(0)
  if shape.get("retrieval"):
    x = rng.integers(1, shape["vocab"], (batch, 2, length)).astype(np.int32)
    lengths = np.full((batch, 2), length, np.int32)
  elif shape["vocab"]:
    x = rng.integers(1, shape["vocab"], (batch, length)).astype(np.int32)
    lengths = np.full(batch, length, np.int32)
  else:
    x = rng.normal(size=(batch, length, 1)).astype(np.float32)
    lengths = np.full(batch, length, np.int32)
  return jnp.asarray(x), jnp.asarray(lengths), jnp.asarray(np.arange(batch) % shape["classes"])


def median_time(fn, repeats: int) -> float:
  """Median wall time of ``fn()`` (which must block) after one warm-up call."""
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))
