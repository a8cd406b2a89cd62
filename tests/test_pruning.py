"""The pruning engine: exact scores, allocation, mask == compact, optimizer surgery."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx.train import loop

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.pruning import allocate, criteria, hinf
from last_nnx.ssm import S4D, S5, StateModes


def _s5(bidirectional=True, conj_sym=True, seed=0, h=6, p=16):
  return S5(h, p, blocks=2, conj_sym=conj_sym, bidirectional=bidirectional, dt_min=0.01,
            dt_max=0.5, rngs=nnx.Rngs(seed))


def _s4d(bidirectional=True, seed=0, h=6, n=8):
  return S4D(h, n, bidirectional=bidirectional, dt_min=0.01, dt_max=0.5, rngs=nnx.Rngs(seed))


def _model(ssm="s5", n_layers=3, seed=0, bidirectional=True, norm="batch"):
  return SequenceModel(n_classes=4, vocab_size=11, d_model=8, n_layers=n_layers, ssm=ssm,
                       norm=norm, ssm_config=dict(state_size=16, bidirectional=bidirectional),
                       rngs=nnx.Rngs(seed))


# ----------------------------------------------------------------------------
# Scores.


@pytest.mark.parametrize("layer_fn", [lambda: _s5(False), lambda: _s5(True), lambda: _s4d(False),
                                      lambda: _s4d(True)])
def test_closed_form_hinf_equals_frequency_sweep(layer_fn):
  modes = layer_fn().state_modes()
  closed = np.sqrt(np.asarray(hinf.hinf_squared(modes, eps=0.0)))
  c = np.asarray(modes.C)
  for i in range(0, modes.num_slots, max(1, modes.num_slots // 8)):
    stacked = c[:, :, i].reshape(-1)  # [C_fwd; C_bwd]: the stacked output system
    swept = hinf.hinf_numeric(complex(modes.poles[i]), np.asarray(modes.B[i]), stacked)
    np.testing.assert_allclose(closed[i], swept, rtol=1e-3)


def test_closed_form_on_random_stable_poles():
  rng = np.random.default_rng(0)
  for _ in range(20):
    pole = rng.uniform(0.2, 0.98) * np.exp(1j * rng.uniform(-np.pi, np.pi))
    b = rng.normal(size=5) + 1j * rng.normal(size=5)
    c = rng.normal(size=3) + 1j * rng.normal(size=3)
    modes = StateModes(poles=jnp.asarray([pole]), B=jnp.asarray(b[None]),
                       C=jnp.asarray(c[None, :, None]), valid=jnp.asarray([True]))
    closed = float(np.sqrt(hinf.hinf_squared(modes, eps=0.0)[0]))
    assert closed == pytest.approx(hinf.hinf_numeric(pole, b, c), rel=1e-3)


def _numpy_scores(modes, kind, reference=False):
  """A direct transcription of the design's formulas."""
  lam = np.asarray(modes.poles, np.complex128)
  b = np.linalg.norm(np.asarray(modes.B), axis=1)
  c = np.linalg.norm(np.asarray(modes.C), axis=1)  # (D, S)
  if reference and c.shape[0] == 2:
    cterm = (c[0] + c[1]) / 2 ** 2
  else:
    cterm = (c ** 2).sum(0)
  if kind == "hinf":
    return cterm * b ** 2 / ((1 - np.abs(lam)) ** 2 + 1e-8)
  return cterm * b ** 2 / (1 - np.abs(lam) ** 2 + 1e-8)


def _numpy_last(h):
  return np.array([hi / h[h >= hi].sum() for hi in h])


@pytest.mark.parametrize("reference", [False, True])
def test_scores_match_numpy_transcription(reference):
  layer = _s5(True)
  modes = layer.state_modes()
  bidi = "reference" if reference else "sum"
  h = _numpy_scores(modes, "hinf", reference)
  e = _numpy_scores(modes, "h2", reference)
  np.testing.assert_allclose(hinf.hinf_squared(modes, bidirectional=bidi), h, rtol=1e-4)
  np.testing.assert_allclose(hinf.h2_energy(modes, bidirectional=bidi), e, rtol=1e-4)
  rng = np.random.default_rng(0)
  np.testing.assert_allclose(criteria.layer_scores(modes, "last", rng=rng, bidirectional=bidi),
                             _numpy_last(h), rtol=1e-4)
  np.testing.assert_allclose(criteria.layer_scores(modes, "energy", rng=rng, bidirectional=bidi),
                             _numpy_last(e), rtol=1e-4)


def test_strongest_state_of_every_layer_scores_one():
  model = _model("s4d")
  for path, s in pruning.score(model, "last").items():
    assert s.max() == pytest.approx(1.0), path
    assert np.all((s > 0) & (s <= 1 + 1e-12))


def test_normalization_handles_ties_and_dead_slots():
  h = np.array([4.0, 1.0, 1.0, 2.0, 9.0])
  valid = np.array([True, True, True, True, False])
  out = criteria.layer_energy_normalize(h, valid)
  np.testing.assert_allclose(out, [1.0, 1 / 8, 1 / 8, 2 / 6, 0.0])


# ----------------------------------------------------------------------------
# Allocation.


def test_global_keeps_exactly_target_count_for_many_ratios():
  rng = np.random.default_rng(1)
  for trial in range(200):
    sizes = rng.integers(1, 40, size=rng.integers(1, 6))
    scores = {f"l{i}": rng.exponential(size=n) ** rng.uniform(0.5, 3) for i, n in enumerate(sizes)}
    n = int(sizes.sum())
    ratio = float(rng.uniform(0, 0.999))
    keep = allocate.allocate_global(scores, ratio)
    expected = max(1, math.floor(n * (1 - ratio)))
    kept = sum(int(m.sum()) for m in keep.values())
    assert all(m.sum() >= 1 for m in keep.values())
    assert kept == max(expected, len(sizes)), (trial, ratio, sizes)
    # One threshold: every kept non-forced state outscores every pruned state.
    forced = {k: allocate._top(s, 1) for k, s in scores.items()}
    kept_free = [s[i] for k, s in scores.items() for i in np.flatnonzero(keep[k])
                 if i not in forced[k]]
    pruned = [s[i] for k, s in scores.items() for i in np.flatnonzero(~keep[k])]
    if kept_free and pruned:
      assert min(kept_free) >= max(pruned)


def test_min_per_layer_and_uniform_counts():
  scores = {"a": np.array([5.0, 4, 3, 2]), "b": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}
  keep = allocate.allocate_global(scores, 0.5, min_per_layer=2)
  assert keep["a"].sum() >= 2 and keep["b"].sum() >= 2 and sum(m.sum() for m in keep.values()) == 5
  keep = allocate.allocate_uniform(scores, 0.5)
  assert keep["a"].sum() == 2 and keep["b"].sum() == 3
  assert keep["b"][3:].all()  # strongest of b kept


def test_dead_slots_never_kept_and_ties_deterministic():
  scores = {"a": np.array([1.0, 1.0, -np.inf, 1.0])}
  keep = allocate.allocate_global(scores, 0.4)
  np.testing.assert_array_equal(keep["a"], [True, False, False, False])


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_ratio_is_a_clear_error(bad):
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    pruning.prune(_model(), bad)


def test_unknown_criterion_and_no_prunable_layer():
  with pytest.raises(ValueError, match="registered"):
    pruning.prune(_model(), 0.3, criterion="lastt")
  with pytest.raises(ValueError, match="no prunable SSM layer"):
    pruning.prune(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 0.3)


def test_register_a_criterion():
  @pruning.register_criterion("test_b_norm")
  def b_norm(modes, *, rng, bidirectional):
    return jnp.sum(jnp.abs(modes.B) ** 2, axis=1)
  model = _model()
  report = pruning.prune(model, 0.5, criterion="test_b_norm")
  assert report.criterion == "test_b_norm" and report.states_after == 12


# ----------------------------------------------------------------------------
# Application.


def _inputs():
  return jax.random.randint(jax.random.key(0), (3, 20), 1, 11), jnp.array([20, 13, 7])


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
@pytest.mark.parametrize("criterion", ["last", "uniform", "random"])
def test_mask_and_compact_give_same_outputs(ssm, criterion):
  dense = _model(ssm)
  dense.eval()
  masked, compact = nnx.clone(dense), nnx.clone(dense)
  r_mask = pruning.prune(masked, 0.6, criterion=criterion, mode="mask", rng=3)
  r_comp = pruning.prune(compact, 0.6, criterion=criterion, mode="compact", rng=3)
  assert [l.kept for l in r_mask.layers.values()] == [l.kept for l in r_comp.layers.values()]
  x, lengths = _inputs()
  np.testing.assert_allclose(masked(x, lengths), compact(x, lengths), atol=1e-5)
  assert not np.allclose(dense(x, lengths), compact(x, lengths), atol=1e-5)
  total = sum(int(np.prod(l.state_shape)) for l in compact.prunable_layers().values())
  if ssm == "s5":
    assert total == r_comp.states_after  # S5 compacts exactly
  n_dense = r_comp.states_before
  assert n_dense == (24 if ssm == "s5" else 3 * 8 * 8)
  if criterion == "uniform":
    assert r_comp.states_after == 3 * math.floor(n_dense / 3 * 0.4)
  else:
    assert r_comp.states_after == max(1, math.floor(n_dense * 0.4))


def _train_step(model, optimizer, x, lengths, y):
  """One training step of the real loop; returns the batch loss."""
  return loop.train_step(model, optimizer, x, lengths, y).compute()["loss"]


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
@pytest.mark.parametrize("tx_name", ["adam", "multi"])
def test_compaction_slices_optimizer_state_and_training_continues(ssm, tx_name):
  model = _model(ssm)
  if tx_name == "adam":
    tx = optax.adam(1e-2)
  else:
    from last_nnx.train.optim import param_labels
    tx = optax.MultiSteps(optax.multi_transform(
        {"ssm": optax.adam(1e-3), "ssm_decay": optax.adamw(1e-3), "regular": optax.adamw(1e-2)},
        lambda p: param_labels(p, "BandCdecay")), every_k_schedule=1)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x, lengths = _inputs()
  y = jnp.array([0, 1, 2])
  _train_step(model, optimizer, x, lengths, y)
  layer = model.blocks[1].ssm
  mu_path = lambda: [v for p, v in nnx.iter_graph(optimizer)
                     if isinstance(v, nnx.Variable) and p[-4:] == ("blocks", 1, "ssm", "C")
                     and hasattr(v.get_value(), "shape") and "mu" in p]
  mu_before = np.asarray(mu_path()[0].get_value())
  report = pruning.prune(model, 0.5, optimizer=optimizer)
  kept = report.layers["blocks.1.ssm"].kept
  mu_after = np.asarray(mu_path()[0].get_value())
  if ssm == "s5":  # moments of kept states are carried over, not reset
    np.testing.assert_array_equal(mu_after, mu_before[:, :, kept])
  # Every optimizer leaf mirroring a parameter has the parameter's new shape.
  params = {tuple(str(k) for k in p): v.shape for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
  for path, node in nnx.iter_graph(optimizer):
    if isinstance(node, nnx.Variable) and hasattr(node.get_value(), "shape"):
      key = tuple(str(k) for k in path)
      for pk, shape in params.items():
        if key[-len(pk):] == pk:
          assert node.get_value().shape == shape, (key, node.get_value().shape, shape)
  loss = _train_step(model, optimizer, x, lengths, y)
  assert np.isfinite(float(loss))
  assert layer.state_shape[-1] <= 8


def test_masked_states_stay_inert_through_training():
  model = _model("s5", norm="layer")
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
  pruning.prune(model, 0.5, mode="mask", optimizer=optimizer)
  x, lengths = _inputs()
  for _ in range(3):
    _train_step(model, optimizer, x, lengths, jnp.array([0, 1, 2]))
  for layer in model.prunable_layers().values():
    assert int(np.asarray(layer.state_modes().valid).sum()) < 8
  # A masked state's contribution is zero: removing it (compaction) changes nothing.
  model.eval()
  compact = nnx.clone(model)
  for layer in compact.prunable_layers().values():
    layer.prune_states(np.ones(int(np.prod(layer.state_shape)), bool))
  np.testing.assert_allclose(model(x, lengths), compact(x, lengths), atol=1e-5)


def _trained_like(model, seed):
  """Heavy-tailed state strengths and a spread of pole radii, as after training."""
  rng = np.random.default_rng(seed)
  for layer in model.prunable_layers().values():
    n = layer.state_shape[0]
    gain = rng.pareto(1.5, size=n) + 0.05
    layer.B.set_value(layer.B[...] * jnp.asarray(gain, jnp.float32)[:, None, None])
    layer.log_step.set_value(jnp.asarray(np.log(rng.uniform(0.002, 0.5, n)), jnp.float32))
  return model


def test_last_beats_random_on_trained_like_weights():
  errors = {"last": [], "random": []}
  x = jax.random.normal(jax.random.key(1), (4, 64, 8))
  for seed in range(4):
    layer_model = _trained_like(_model("s5", n_layers=2, seed=seed), seed)
    layers = list(layer_model.prunable_layers().values())

    def run(m):
      h = x
      for blk in m.blocks:
        h = h + blk.ssm(h)
      return h
    ref = run(layer_model)
    for criterion in errors:
      pruned = nnx.clone(layer_model)
      pruning.prune(pruned, 0.5, criterion=criterion, rng=seed)
      out = run(pruned)
      errors[criterion].append(float(jnp.linalg.norm(out - ref) / jnp.linalg.norm(ref - x)))
  assert np.mean(errors["last"]) < np.mean(errors["random"]), errors
  del layers


def test_report_json_roundtrip_and_history_replay():
  dense = _model("s4d")
  dense.eval()
  pruned = nnx.clone(dense)
  history = pruning.PruningHistory()
  history.record(pruning.prune(pruned, 0.4, mode="compact"))
  report = pruning.prune(pruned, 0.3, criterion="energy", mode="mask")
  history.record(report)
  again = pruning.PruneReport.from_json(report.to_json())
  assert again == report and "total" in report.table()
  replayed = nnx.clone(dense)
  pruning.replay(replayed, pruning.PruningHistory.from_json(history.to_json()))
  x, lengths = _inputs()
  np.testing.assert_allclose(replayed(x, lengths), pruned(x, lengths), atol=1e-6)


def test_schedule_events_and_event_ratio():
  s = pruning.PruningSchedule(kind="iterative", target_ratio=0.5, start_epoch=2, end_epoch=6,
                              every=2, ramp="cubic")
  events = s.events()
  assert list(events) == [2, 4, 6]
  assert events[6] == pytest.approx(0.5) and events[2] == pytest.approx(0.5 * (1 - (2 / 3) ** 3))
  assert s.ratio_at(3) == events[2] and s.ratio_at(1) == 0.0
  # Reaching 50% overall from 100 states, 20 already gone: remove 30 of the 80.
  assert pruning.event_ratio(0.5, 80, 100) == pytest.approx(30 / 80)
  assert pruning.event_ratio(0.1, 80, 100) == 0.0
  with pytest.raises(ValueError):
    pruning.PruningSchedule(kind="sometimes")
