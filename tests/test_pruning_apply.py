"""Pruning a live model: mask == compact, optimizer surgery, inert masks, LAST vs random, replay."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.ssm import StateMask

SSM_CONFIGS = {
  "s5": dict(state_size=16, bidirectional=True, conj_sym=True, blocks=2),
  "s4d": dict(state_size=8, bidirectional=True),
}


def _model(ssm, *, seed=0, n_layers=2, norm="layer", vocab_size=11, in_dim=1):
  return SequenceModel(
    n_classes=4,
    vocab_size=vocab_size,
    in_dim=in_dim,
    d_model=8,
    n_layers=n_layers,
    ssm=ssm,
    norm=norm,
    ssm_config=SSM_CONFIGS[ssm],
    rngs=nnx.Rngs(seed),
  )


def _inputs():
  return jax.random.randint(jax.random.key(0), (3, 16), 1, 11), jnp.array([16, 11, 5])


@nnx.jit
def _forward(model, x, lengths):
  return model(x, lengths)


@nnx.jit
def _train_step(model, optimizer, x, lengths, y):
  def loss(m):
    return optax.softmax_cross_entropy_with_integer_labels(m(x, lengths), y).mean()

  value, grads = nnx.value_and_grad(loss)(model)
  optimizer.update(model, grads)
  return value


# Live slots by the layer's own modes, computed compiled (eagerly, every operation of
# `state_modes` compiles on its own for each new compacted shape).
_valid = nnx.jit(lambda layer: layer.state_modes().valid)


def _labels(params):
  """multi_transform groups: poles/steps, B/C, the rest (as the training system does)."""

  def label(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    group = (
      "ssm"
      if name in ("Lambda_re", "Lambda_im", "log_step")
      else "ssm_decay"
      if name in ("B", "C")
      else "regular"
    )
    return leaf.replace(group) if isinstance(leaf, nnx.Variable) else group

  return jax.tree_util.tree_map_with_path(
    label, params, is_leaf=lambda x: isinstance(x, nnx.Variable)
  )


# One Adam for every test: optimizers built from the same transformation have equal graph
# definitions, so models of equal shapes share one compiled `_train_step`.
_ADAM = optax.adam(1e-2)
TXS = {
  "adam": lambda: _ADAM,
  # MaskedNode leaves, inject_hyperparams state, adamw, an SGD trace, MultiSteps accumulators.
  "multi": lambda: optax.MultiSteps(
    optax.multi_transform(
      {
        "ssm": optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
        "ssm_decay": optax.adamw(1e-3, weight_decay=0.01),
        "regular": optax.sgd(1e-2, momentum=0.9),
      },
      _labels,
    ),
    every_k_schedule=1,
  ),
}


def _param_shapes(model):
  return {
    tuple(str(k) for k in p): tuple(v.shape)
    for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
  }


def _mirroring_leaves(optimizer, param_path):
  """Optimizer leaves whose key path ends with ``param_path`` (arrays only)."""
  out = {}
  for path, node in nnx.iter_graph(optimizer.opt_state):
    key = tuple(str(k) for k in path)
    if (
      isinstance(node, nnx.Variable)
      and key[-len(param_path) :] == param_path
      and getattr(node.get_value(), "ndim", 0) > 0
    ):
      out[key] = np.asarray(node.get_value())
  return out


# ----------------------------------------------------------------------------
# Mask and compact agree.


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
def test_mask_and_compact_give_same_outputs(ssm):
  dense = _model(ssm)
  dense.eval()
  x, lengths = _inputs()
  ref = _forward(dense, x, lengths)
  for criterion, ratio in (("last", 0.6), ("uniform", 0.5), ("random", 0.3)):
    masked, compact = nnx.clone(dense), nnx.clone(dense)
    r_mask = pruning.prune(masked, ratio, criterion=criterion, mode="mask", seed=3)
    r_comp = pruning.prune(compact, ratio, criterion=criterion, mode="compact", seed=3)
    assert [l.kept for l in r_mask.layers.values()] == [l.kept for l in r_comp.layers.values()]
    np.testing.assert_allclose(
      _forward(masked, x, lengths), _forward(compact, x, lengths), atol=1e-5
    )
    assert not np.allclose(ref, _forward(compact, x, lengths), atol=1e-4)
    for path, layer in compact.prunable_layers().items():
      live = int(np.asarray(_valid(layer)).sum())
      assert live == r_comp.layers[path].states_after
      if ssm == "s5":  # S5 compacts exactly; S4D pads ragged channels with masked slots
        assert layer.state_shape == (live,)
      else:
        assert layer.state_shape[1] == max(
          np.bincount(np.asarray(r_comp.layers[path].kept) // 4, minlength=8)
        )
    n = r_comp.states_before
    assert n == (2 * 8 if ssm == "s5" else 2 * 8 * 4)
    if criterion == "uniform":
      assert r_comp.states_after == sum(int(l.states_before * 0.5) for l in r_comp.layers.values())
    else:
      assert r_comp.states_after == max(1, int(np.floor(n * (1 - ratio) + 1e-9)))
    if criterion == "last":  # pruning again compacts further and still agrees
      pruning.prune(masked, 0.5, mode="mask")
      pruning.prune(compact, 0.5, mode="compact")
      np.testing.assert_allclose(
        _forward(masked, x, lengths), _forward(compact, x, lengths), atol=1e-5
      )


# ----------------------------------------------------------------------------
# Compaction carries the optimizer state along.


@pytest.mark.parametrize(
  "ssm,tx_name",
  [
    ("s5", "adam"),
    ("s4d", "multi"),
    pytest.param("s5", "multi", marks=pytest.mark.slow),
    pytest.param("s4d", "adam", marks=pytest.mark.slow),
  ],
)
def test_compaction_slices_optimizer_state_and_training_continues(ssm, tx_name):
  model = _model(ssm, n_layers=1)  # the surgery is per layer: one keeps the compiles short
  optimizer = nnx.Optimizer(model, TXS[tx_name](), wrt=nnx.Param)
  x, lengths = _inputs()
  y = jnp.array([0, 1, 2])
  _train_step(model, optimizer, x, lengths, y)
  _train_step(model, optimizer, x, lengths, y)
  c_path = ("blocks", "0", "ssm", "C")
  b_path = ("blocks", "0", "ssm", "B")
  before = {**_mirroring_leaves(optimizer, c_path), **_mirroring_leaves(optimizer, b_path)}
  assert before  # mu/nu (and accumulators) of B and C
  report = pruning.prune(model, 0.5, optimizer=optimizer)
  kept = np.asarray(report.layers["blocks.0.ssm"].kept)
  after = {**_mirroring_leaves(optimizer, c_path), **_mirroring_leaves(optimizer, b_path)}
  assert after.keys() == before.keys()
  # Moments of kept states are carried over, not reset.
  for key, old in before.items():
    new = after[key]
    if ssm == "s5":
      axis = 2 if key[-1] == "C" else 0
      np.testing.assert_array_equal(new, np.take(old, kept, axis=axis), err_msg=str(key))
    else:  # ragged: channel h keeps its own slots, padded at the end
      n = 4
      for h in range(8):
        slots = kept[kept // n == h] % n
        got = new[:, h, : len(slots)] if key[-1] == "C" else new[h, : len(slots)]
        want = old[:, h, slots] if key[-1] == "C" else old[h, slots]
        np.testing.assert_array_equal(got, want, err_msg=str(key))
  # Every optimizer leaf mirroring a parameter has the parameter's new shape.
  params = _param_shapes(model)
  checked = 0
  for path, node in nnx.iter_graph(optimizer.opt_state):
    value = node.get_value() if isinstance(node, nnx.Variable) else None
    if getattr(value, "ndim", 0) == 0:
      continue
    key = tuple(str(k) for k in path)
    for pk, shape in params.items():
      if key[-len(pk) :] == pk:
        assert value.shape == shape, (key, value.shape, shape)
        checked += 1
  assert checked >= 2 * len(params)
  # Training goes on (the jitted step retraces), and the moments keep their new shapes.
  for _ in range(2):
    loss = _train_step(model, optimizer, x, lengths, y)
  assert np.isfinite(float(loss))
  assert all(v.shape == after[k].shape for k, v in _mirroring_leaves(optimizer, c_path).items())


def test_mask_mode_persists_through_training():
  for ssm in ("s5", "s4d"):
    model = _model(ssm, n_layers=1)
    optimizer = nnx.Optimizer(model, _ADAM, wrt=nnx.Param)
    x, lengths = _inputs()
    report = pruning.prune(model, 0.5, mode="mask", optimizer=optimizer)
    masks = {p: np.asarray(l.state_mask[...]) for p, l in model.prunable_layers().items()}
    for _ in range(3):
      _train_step(model, optimizer, x, lengths, jnp.array([0, 1, 2]))
    for path, layer in model.prunable_layers().items():
      np.testing.assert_array_equal(np.asarray(layer.state_mask[...]), masks[path])
      assert int(np.asarray(_valid(layer)).sum()) == report.layers[path].states_after
    # The masked states stayed inert: removing them (compaction) changes nothing.
    model.eval()
    compact = nnx.clone(model)
    for layer in compact.prunable_layers().values():
      layer.prune_states(np.ones(int(np.prod(layer.state_shape)), bool))
    np.testing.assert_allclose(
      _forward(model, x, lengths), _forward(compact, x, lengths), atol=1e-5
    )


# ----------------------------------------------------------------------------
# The scores matter: LAST beats random on trained-like weights.


def _trained_like(model, seed):
  """Trained-like weights: a few states dominate.

  Pole radii spread over ``1 - |lam_bar|`` in [0.02, 0.8] (time constants up to
  the sequence length, as a model trained on such sequences has), and
  heavy-tailed (Pareto) input gains per state.
  """
  rng = np.random.default_rng(seed)
  for layer in model.prunable_layers().values():
    shape = layer.state_shape
    step = np.exp(np.asarray(layer.log_step[...]))  # per state (S5) or per channel (S4D)
    step = step if step.shape == shape else step[:, None] * np.ones(shape)
    radius = 1 - np.exp(rng.uniform(np.log(0.02), np.log(0.8), shape))
    layer.Lambda_re.set_value(jnp.asarray(np.log(radius) / step, jnp.float32))  # zoh: e^{Re dt}
    gain = rng.pareto(1.2, size=shape) + 0.02
    layer.B.set_value(layer.B[...] * jnp.asarray(gain, jnp.float32)[..., None])
  return model


@nnx.jit
def _features(model, x):
  h = model.encoder(x)
  for block in model.blocks:
    h = block(h)
  return h


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
def test_last_beats_random_on_trained_like_weights(ssm):
  errors = {"last": [], "energy": [], "random": []}
  x = jax.random.normal(jax.random.key(1), (4, 48, 2))
  for seed in range(3):
    model = _trained_like(_model(ssm, seed=seed, n_layers=3, vocab_size=None, in_dim=2), seed)
    model.eval()
    ref = _features(model, x)
    for criterion in errors:
      pruned = nnx.clone(model)
      # Masking gives the same outputs as compaction (tested above) without recompiling.
      pruning.prune(pruned, 0.5, criterion=criterion, mode="mask", seed=seed)
      out = _features(pruned, x)
      errors[criterion].append(float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref)))
  mean = {k: np.mean(v) for k, v in errors.items()}
  # Measured: last ~0.04, random ~0.6 (both layer types); demand a clear margin.
  assert mean["last"] < 0.5 * mean["random"], errors
  assert mean["energy"] < 0.5 * mean["random"], errors


# ----------------------------------------------------------------------------
# History replay.


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
def test_history_replay_reproduces_the_pruned_model(ssm):
  dense = _model(ssm)
  dense.eval()
  pruned = nnx.clone(dense)
  history = pruning.PruningHistory()
  pruning.prune(pruned, 0.4, mode="compact", history=history)
  pruning.prune(pruned, 0.3, criterion="energy", mode="mask", history=history)
  pruning.prune(pruned, 0.3, criterion="random", seed=7, mode="compact", history=history)
  replayed = nnx.clone(dense)
  pruning.replay(replayed, pruning.PruningHistory.from_json(history.to_json()))
  arrays = (nnx.Param, StateMask)
  for (p1, a), (p2, b) in zip(
    nnx.to_flat_state(nnx.state(pruned, arrays)), nnx.to_flat_state(nnx.state(replayed, arrays))
  ):
    assert p1 == p2
    np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()))
  x, lengths = _inputs()
  np.testing.assert_allclose(
    _forward(replayed, x, lengths), _forward(pruned, x, lengths), atol=1e-6
  )
  # Replaying onto an already pruned model is a clear error.
  with pytest.raises(ValueError, match="slots"):
    pruning.replay(replayed, history)
