"""Optimizer groups, schedules, checkpoints of pruned models: the loop's parts."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx.model import SequenceModel
from last_nnx.train import checkpoint as ckpt_lib
from last_nnx.train.optim import learning_rate_schedule, make_optimizer, param_labels, param_roles


def _model(ssm="s5", **kw):
  return SequenceModel(
    n_classes=3,
    vocab_size=7,
    d_model=8,
    n_layers=2,
    ssm=ssm,
    ssm_config=dict(state_size=8),
    dropout=0.1,
    rngs=nnx.Rngs(0),
    **kw,
  )


def _labels(opt_config, dt_global=False):
  labels = param_labels(nnx.state(_model(), nnx.Param), opt_config, dt_global)
  return {
    jax.tree_util.keystr(p).split("'")[-2]: v
    for p, v in jax.tree_util.tree_leaves_with_path(labels)
  }


def test_param_groups_follow_reference_opt_configs():
  std = _labels("standard")
  assert std["B"] == std["Lambda_re"] == std["log_step"] == "ssm"
  assert std["C"] == std["D"] == std["kernel"] == std["scale"] == "regular"
  assert _labels("BandCdecay")["B"] == "ssm_decay"
  assert _labels("BfastandCdecay")["B"] == "regular"
  nobc = _labels("noBCdecay")
  assert nobc["C"] == nobc["D"] == nobc["B"] == "ssm"
  assert _labels("standard", dt_global=True)["log_step"] == "regular"
  with pytest.raises(ValueError, match="opt_config"):
    _labels("fast")


def test_layer_types_declare_the_roles_of_their_parameters():
  """The LRU's pole parameters get the SSM rate and no decay, from its PARAM_ROLES alone."""
  model = _model("lru")
  roles = param_roles(model)
  assert roles == {"nu_log": "dynamics", "theta_log": "dynamics", "gamma_log": "input"}
  labels = param_labels(nnx.state(model, nnx.Param), "standard", False, roles)
  by_name = {
    jax.tree_util.keystr(p).split("'")[-2]: v
    for p, v in jax.tree_util.tree_leaves_with_path(labels)
  }
  assert by_name["nu_log"] == by_name["theta_log"] == by_name["gamma_log"] == "ssm"
  assert by_name["C"] == by_name["D"] == "regular"
  # The optimizer built for the model uses them: nu_log is not decayed.
  optimizer, _ = make_optimizer(
    model,
    ml_collections.ConfigDict(
      dict(
        ssm_lr=1e-3,
        lr_factor=4.0,
        weight_decay=0.5,
        opt_config="standard",
        dt_global=False,
        warmup_epochs=0.0,
        lr_min=0.0,
        schedule="cosine",
        grad_clip=0.0,
        grad_accum=1,
      )
    ),
    total_steps=10,
    steps_per_epoch=5,
  )
  before = np.asarray(model.blocks[0].ssm.nu_log[...]).copy()
  c_before = np.asarray(model.blocks[0].ssm.C[...]).copy()
  zero = jax.tree_util.tree_map(jnp.zeros_like, nnx.state(model, nnx.Param))
  optimizer.update(model, zero)  # zero gradients: only weight decay moves anything
  np.testing.assert_array_equal(np.asarray(model.blocks[0].ssm.nu_log[...]), before)
  assert not np.allclose(np.asarray(model.blocks[0].ssm.C[...]), c_before)  # decayed


def test_warmup_then_cosine():
  sched = learning_rate_schedule(1.0, total_steps=110, warmup_steps=10)
  assert float(sched(0)) == pytest.approx(0.1)
  assert float(sched(9)) == pytest.approx(1.0)
  assert float(sched(60)) == pytest.approx(0.5, abs=1e-6)
  assert float(sched(110)) == pytest.approx(0.0, abs=1e-6)


def _optim_config(**kw):
  c = dict(
    ssm_lr=1e-3,
    lr_factor=4.0,
    weight_decay=0.05,
    opt_config="standard",
    dt_global=False,
    warmup_epochs=1.0,
    lr_min=0.0,
    schedule="cosine",
    grad_clip=0.0,
    grad_accum=1,
  )
  c.update(kw)
  return ml_collections.ConfigDict(c)


@nnx.jit
def _grads(model):
  """Compiled once per model shape (shared by every optimizer below)."""
  x, lengths, y = jnp.ones((2, 6), jnp.int32), jnp.array([6, 4]), jnp.array([0, 2])

  def loss(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x, lengths), y).mean()

  return nnx.grad(loss)(model)


def _step(model, optimizer):
  optimizer.update(model, _grads(model))


def test_ssm_params_not_decayed_and_get_ssm_lr():
  model = _model()
  lam_before = np.asarray(model.blocks[0].ssm.Lambda_re[...])
  c_before = np.asarray(model.blocks[0].ssm.C[...])
  # Zero gradients isolate weight decay: only decayed groups move.
  optimizer, _ = make_optimizer(
    model, _optim_config(weight_decay=0.5), total_steps=10, steps_per_epoch=1
  )
  zero = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
  optimizer.update(model, zero)
  np.testing.assert_array_equal(model.blocks[0].ssm.Lambda_re[...], lam_before)
  assert not np.allclose(model.blocks[0].ssm.C[...], c_before)


@pytest.mark.parametrize("accum", [1, 2])
def test_checkpoint_roundtrip_of_pruned_model_and_optimizer(tmp_path, accum):
  model = _model("s4d")
  keep = np.random.default_rng(0).random(int(np.prod(model.blocks[0].ssm.state_shape))) < 0.5
  model.blocks[0].ssm.prune_states(keep)
  model.blocks[1].ssm.mask_states(~keep)
  optimizer, _ = make_optimizer(
    model, _optim_config(grad_accum=accum), total_steps=10, steps_per_epoch=2
  )
  _step(model, optimizer)  # moves the parameters off their (seed-0) initial values
  ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"))
  ck.save(5, model, optimizer, {"hello": 1})
  ck.wait()

  fresh = _model("s4d")
  step, meta = ck.latest_usable()
  assert step == 5 and meta["hello"] == 1
  ckpt_lib.resize_layers(fresh, meta["layer_shapes"])
  fresh_opt, _ = make_optimizer(
    fresh, _optim_config(grad_accum=accum), total_steps=10, steps_per_epoch=2
  )
  ck.restore(step, fresh, fresh_opt)
  for a, b in zip(jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(fresh))):
    # Restored arrays are as (un)committed as the model's: compiled steps do not recompile.
    assert a.committed == b.committed
    a = jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a
    b = jax.random.key_data(b) if jax.dtypes.issubdtype(b.dtype, jax.dtypes.prng_key) else b
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(nnx.state(optimizer)), jax.tree.leaves(nnx.state(fresh_opt))):
    assert a.committed == b.committed
    np.testing.assert_array_equal(a, b)
  _step(fresh, fresh_opt)  # trains on after restore


def test_corrupt_latest_checkpoint_falls_back_to_older(tmp_path):
  model = _model()
  ck = ckpt_lib.Checkpointer(str(tmp_path / "ck"), max_to_keep=3)
  ck.save(1, model, None, {"n": 1})
  ck.save(2, model, None, {"n": 2})
  ck.wait()
  meta_dir = tmp_path / "ck" / "2" / "meta"
  for name in os.listdir(meta_dir):
    (meta_dir / name).write_text("{not json")
  with pytest.raises(ckpt_lib.CheckpointError, match="delete that step"):
    ck.read_meta(2)
  step, meta = ck.latest_usable()
  assert (step, meta["n"]) == (1, 1)


def test_resize_rejects_mismatched_shapes():
  with pytest.raises(ckpt_lib.CheckpointError, match="does not fit"):
    ckpt_lib.resize_layers(_model(), {"blocks.0.ssm": [99]})
  with pytest.raises(ckpt_lib.CheckpointError, match="model does not"):
    ckpt_lib.resize_layers(_model(), {"blocks.7.ssm": [2]})
