"""The loop's accelerator habits: donation, prefetch, device-side finiteness, bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.train import checkpoint, distributed, loop, steps
from tests.compiled import forward
from tests.test_train_loop import _base, _cache  # noqa: F401 (autouse fixture)


def _model(dtype=None):
  return SequenceModel(
    n_classes=3,
    vocab_size=9,
    d_model=8,
    n_layers=2,
    ssm="s5",
    ssm_config=dict(state_size=8, bidirectional=False),
    dtype=dtype,
    rngs=nnx.Rngs(0),
  )


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  return (
    rng.integers(1, 9, (4, 12)).astype(np.int32),
    np.array([12, 9, 5, 12], np.int32),
    rng.integers(0, 3, (4,)).astype(np.int32),
  )


def test_donated_step_then_pruning_event_then_checkpoint(tmp_path):
  model = _model()
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  carry = steps.TrainCarry.start(model)
  before = np.array(model.blocks[0].ssm.B[...])
  carry = steps.train_step(model, optimizer, carry, *_batch())
  after = np.asarray(model.blocks[0].ssm.B[...])  # the model holds the step's outputs
  assert np.isfinite(after).all() and not np.array_equal(after, before)
  pruning.prune(model, 0.5, criterion="last", mode="compact", optimizer=optimizer)
  ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
  ckpt.save(1, model, optimizer, {"note": "after a donated step and an event"})
  saved = {k: np.array(v) for k, v in checkpoint.flatten_state(nnx.state(model)).items()}
  for seed in (1, 2):  # donated steps right after the (async) save
    carry = steps.train_step(model, optimizer, carry, *_batch(seed))
  steps.check_health(model, carry)
  ckpt.wait()
  fresh = _model()
  checkpoint.resize_layers(fresh, checkpoint.layer_shapes(model))
  ckpt.restore(1, fresh, None)
  restored = checkpoint.flatten_state(nnx.state(fresh))
  for key, value in saved.items():
    np.testing.assert_array_equal(np.asarray(restored[key]), value, err_msg=key)
  ckpt.close()


def test_health_latch_names_the_first_broken_parameter_without_host_reads():
  model = _model()
  # The donated-step test's optimizer: the same compiled step, loaded from the cache.
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  carry = steps.TrainCarry.start(model)
  carry = steps.train_step(model, optimizer, carry, *_batch())
  ssm = model.blocks[1].ssm
  ssm.Lambda_im.set_value(ssm.Lambda_im[...] * jnp.nan)
  for seed in range(3):  # the NaN spreads to every parameter; the latch keeps the first
    carry = steps.train_step(model, optimizer, carry, *_batch(seed))
  assert np.isnan(np.asarray(model.blocks[0].ssm.B[...])).all()
  with pytest.raises(steps.Diverged, match=r"\['blocks'\]\[1\]\['ssm'\]\['Lambda_im'\]"):
    steps.check_health(model, carry)


def test_prefetch_keeps_order_and_places_on_device():
  batches = [(np.full((2, 3), i), np.full((2,), i)) for i in range(5)]
  seen = list(distributed.prefetch_to_device(iter(batches), None, size=2))
  assert len(seen) == 5
  for i, (x, y) in enumerate(seen):
    assert isinstance(x, jax.Array) and int(x[0, 0]) == i == int(y[0])


def test_bfloat16_compute_keeps_ssm_and_parameters_float32():
  model = _model("bfloat16")
  x, lengths, _ = _batch()
  logits = forward(model, x, lengths)
  assert logits.dtype == jnp.float32
  assert all(
    p.dtype in (jnp.float32, jnp.complex64) for p in jax.tree.leaves(nnx.state(model, nnx.Param))
  )
  reference = _model()  # same parameters, float32 compute
  want = np.asarray(forward(reference, x, lengths))
  np.testing.assert_allclose(np.asarray(logits), want, atol=0.05)


def test_bfloat16_smoke_run_trains_and_prunes(tmp_path):
  # test_train_loop's BASE (one layer) in bfloat16; the test split is not evaluated.
  config = _base(tmp_path, **{"model.dtype": "bfloat16", "train.eval_test": False})
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite([e["train/loss"] for e in summary["epochs"]]).all()
  assert summary["pruning_events"][0]["status"] == "applied"
  first, last = summary["epochs"][0]["train/loss"], summary["epochs"][-1]["train/loss"]
  assert last < first  # it learns


def test_numpy_reader_without_tensorflow_gives_the_tf_data_batches(tmp_path, monkeypatch):
  from last_nnx import data
  from last_nnx.data import pipeline

  c = data.default_data_config("listops")
  c.cache_dir = str(tmp_path / "cache")
  c.synthetic.update(dict(n_train=40, n_val=11, n_test=10, seq_len=64, max_length=64))
  task = data.build_task(c, batch_size=4, eval_batch_size=4, process_index=1, process_count=2)
  with_tf = (list(task.train_batches(3, start_step=1)), list(task.eval_batches("val")))
  monkeypatch.setattr(pipeline, "have_tensorflow", lambda: False)
  without = (list(task.train_batches(3, start_step=1)), list(task.eval_batches("val")))
  for got, want in zip(without, with_tf):
    assert len(got) == len(want) > 0
    for a, b in zip(got, want):
      for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
