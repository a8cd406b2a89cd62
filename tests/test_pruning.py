"""The pruning engine's pure parts: exact scores, normalization, allocation, schedules, records.

Model-level application (mask, compact, optimizer surgery, replay) is in
test_pruning_apply.py; the command line in test_pruning_cli.py.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.pruning import allocate, criteria, hinf
from last_nnx.ssm import S4D, S5, StateModes


def _s5(bidirectional=True, conj_sym=True, seed=0, h=6, p=16):
  return S5(
    h,
    p,
    blocks=2,
    conj_sym=conj_sym,
    bidirectional=bidirectional,
    dt_min=0.01,
    dt_max=0.5,
    rngs=nnx.Rngs(seed),
  )


def _s4d(bidirectional=True, seed=0, h=6, n=8):
  return S4D(h, n, bidirectional=bidirectional, dt_min=0.01, dt_max=0.5, rngs=nnx.Rngs(seed))


def _model(ssm="s5", n_layers=3, seed=0):
  return SequenceModel(
    n_classes=4,
    vocab_size=11,
    d_model=8,
    n_layers=n_layers,
    ssm=ssm,
    ssm_config=dict(state_size=16, bidirectional=True),
    rngs=nnx.Rngs(seed),
  )


def _random_modes(rng, s=12, h_in=5, h_out=3, directions=1, radius=(0.3, 0.99)):
  """Random stable one-state subsystems (complex B, C)."""
  poles = rng.uniform(*radius, size=s) * np.exp(1j * rng.uniform(-np.pi, np.pi, size=s))
  b = rng.normal(size=(s, h_in)) + 1j * rng.normal(size=(s, h_in))
  c = rng.normal(size=(directions, h_out, s)) + 1j * rng.normal(size=(directions, h_out, s))
  return StateModes(
    poles=jnp.asarray(poles, jnp.complex64),
    B=jnp.asarray(b, jnp.complex64),
    C=jnp.asarray(c, jnp.complex64),
    valid=jnp.ones(s, bool),
  )


# ----------------------------------------------------------------------------
# Per-state norms: closed form vs the frequency sweep, and the numpy transcription.


@pytest.mark.parametrize(
  "layer_fn",
  [
    lambda: _s5(bidirectional=True, conj_sym=True),
    lambda: _s5(bidirectional=False, conj_sym=False),
    lambda: _s4d(bidirectional=True),
    lambda: _s4d(bidirectional=False),
  ],
  ids=["s5-conj-bidi", "s5-uni", "s4d-bidi", "s4d-uni"],
)
def test_closed_form_hinf_equals_frequency_sweep_on_layers(layer_fn):
  modes = layer_fn().state_modes()
  closed = np.asarray(hinf.hinf_norm(modes, eps=0.0))
  slots = list(range(0, modes.num_slots, max(1, modes.num_slots // 4)))
  swept = hinf.hinf_numeric_modes(modes, slots=slots)
  np.testing.assert_allclose(closed[slots], swept, rtol=1e-3)
  # The stacked [C_fwd; C_bwd] system's squared norm is the sum of the directions' ones.
  if modes.bidirectional:
    c = np.asarray(modes.C)
    for i in slots[:2]:
      fwd, bwd = (
        hinf.hinf_numeric(complex(modes.poles[i]), np.asarray(modes.B[i]), c[d, :, i])
        for d in range(2)
      )
      np.testing.assert_allclose(closed[i] ** 2, fwd**2 + bwd**2, rtol=2e-3)


def test_closed_form_hinf_equals_sweep_on_random_stable_subsystems():
  rng = np.random.default_rng(0)
  for directions in (1, 2):
    modes = _random_modes(rng, s=10, directions=directions, radius=(0.2, 0.995))
    np.testing.assert_allclose(
      hinf.hinf_norm(modes, eps=0.0), hinf.hinf_numeric_modes(modes), rtol=1e-3
    )
  # Multi-SISO: scalar B and C.
  modes = _random_modes(rng, s=10, h_in=1, h_out=1)
  np.testing.assert_allclose(
    hinf.hinf_norm(modes, eps=0.0), hinf.hinf_numeric_modes(modes), rtol=1e-3
  )


def test_conjugate_pair_has_about_the_norm_of_one_mode():
  """The design's note: the real pair system peaks at one mode, not twice it."""
  rng = np.random.default_rng(1)
  for _ in range(5):
    pole = rng.uniform(0.95, 0.99) * np.exp(1j * rng.uniform(0.5, 2.5))
    b = rng.normal(size=3) + 1j * rng.normal(size=3)
    c = rng.normal(size=2) + 1j * rng.normal(size=2)
    single = np.linalg.norm(b) * np.linalg.norm(c) / (1 - abs(pole))
    pair = hinf.hinf_numeric(pole, b, c, conj_pair=True)
    assert pair == pytest.approx(single, rel=0.15)


def _np_scores(modes, kind, reference=False):
  """A direct numpy transcription of the design's formulas (float64)."""
  lam = np.asarray(modes.poles, np.complex128)
  b = np.linalg.norm(np.asarray(modes.B, np.complex128), axis=1)
  c = np.linalg.norm(np.asarray(modes.C, np.complex128), axis=1)  # (D, S)
  if reference and c.shape[0] == 2:
    cterm = (c[0] + c[1]) / 2**2  # the reference's `(a + b)/2 **2`, as Python parses it
  else:
    cterm = (c**2).sum(0)
  if kind == "hinf":
    return cterm * b**2 / ((1 - np.abs(lam)) ** 2 + 1e-8)
  return cterm * b**2 / (1 - np.abs(lam) ** 2 + 1e-8)


def _np_last(h):
  return np.array([hi / h[h >= hi].sum() for hi in h])


@pytest.mark.parametrize("layer_fn", [_s5, _s4d], ids=["s5", "s4d"])
@pytest.mark.parametrize("reference", [False, True], ids=["sum", "reference"])
def test_scores_match_numpy_transcription(layer_fn, reference):
  modes = layer_fn().state_modes()
  bidi = "reference" if reference else "sum"
  h, e = _np_scores(modes, "hinf", reference), _np_scores(modes, "h2", reference)
  np.testing.assert_allclose(hinf.hinf_squared(modes, bidirectional=bidi), h, rtol=1e-4)
  np.testing.assert_allclose(hinf.h2_energy(modes, bidirectional=bidi), e, rtol=1e-4)
  rng = np.random.default_rng(0)
  got = lambda c: criteria.layer_scores(modes, c, rng=rng, bidirectional=bidi)
  np.testing.assert_allclose(got("last"), _np_last(h), rtol=1e-4)
  np.testing.assert_allclose(got("energy"), _np_last(e), rtol=1e-4)
  np.testing.assert_allclose(got("global_hinf"), h, rtol=1e-4)
  np.testing.assert_allclose(got("uniform"), h, rtol=1e-4)
  np.testing.assert_allclose(got("magnitude"), np.abs(np.asarray(modes.poles)), rtol=1e-6)


def test_reference_quirk_by_hand():
  # ||C_f|| = 3, ||C_b|| = 4, ||B|| = 2, |lam| = 0.5.
  modes = StateModes(
    poles=jnp.asarray([0.5 + 0j]),
    B=jnp.asarray([[2.0 + 0j]]),
    C=jnp.asarray([[[3.0 + 0j]], [[4.0 + 0j]]]),
    valid=jnp.asarray([True]),
  )
  np.testing.assert_allclose(hinf.hinf_squared(modes, eps=0.0), [25 * 4 / 0.25], rtol=1e-6)
  np.testing.assert_allclose(
    hinf.hinf_squared(modes, bidirectional="reference", eps=0.0),
    [(3 + 4) / 4 * 4 / 0.25],
    rtol=1e-6,
  )
  np.testing.assert_allclose(hinf.h2_energy(modes, eps=0.0), [25 * 4 / 0.75], rtol=1e-6)
  np.testing.assert_allclose(hinf.hinf_norm(modes), [np.sqrt(25 * 4) / 0.5], rtol=1e-6)
  with pytest.raises(ValueError, match="bidirectional"):
    hinf.hinf_squared(modes, bidirectional="mean")


@pytest.mark.parametrize("horizon", [1, 16, 256])
def test_finite_horizon_norms_equal_the_truncated_impulse_response(horizon):
  """Peak gain (dense frequency sweep) and energy of h_t = C_i lam_i^t B_i, t < T."""
  modes = _random_modes(np.random.default_rng(3), s=6, directions=2, radius=(0.5, 0.9995))
  lam = np.asarray(modes.poles, np.complex128)
  gain = np.sqrt(
    (np.abs(np.asarray(modes.C)) ** 2).sum((0, 1)) * (np.abs(np.asarray(modes.B)) ** 2).sum(1)
  )  # ||C_i|| ||B_i|| (rank one)
  t = np.arange(horizon)
  for i in range(len(lam)):
    w = np.concatenate([np.linspace(-np.pi, np.pi, 4001), [np.angle(lam[i])]])
    response = np.exp(-1j * np.outer(w, t)) @ lam[i] ** t  # sum_t lam^t e^{-iwt}
    peak = gain[i] * np.abs(response).max()
    energy = gain[i] ** 2 * (np.abs(lam[i]) ** (2 * t)).sum()
    np.testing.assert_allclose(
      np.sqrt(hinf.hinf_squared(modes, horizon=horizon)[i]), peak, rtol=1e-4
    )
    np.testing.assert_allclose(hinf.h2_energy(modes, horizon=horizon)[i], energy, rtol=1e-4)
  # Long horizons recover the infinite-horizon norms.
  np.testing.assert_allclose(
    hinf.hinf_squared(modes, horizon=10**7), hinf.hinf_squared(modes, eps=0.0), rtol=1e-3
  )


def test_finite_horizon_demotes_states_slower_than_the_sequence():
  # State 0: |lam| = 0.9995 (time constant 2000 steps), small gain; state 1: |lam| = 0.9.
  modes = StateModes(
    poles=jnp.asarray([0.9995 + 0j, 0.9 + 0j]),
    B=jnp.ones((2, 1), jnp.complex64),
    C=jnp.asarray([[[0.05 + 0j, 1.0 + 0j]]]),
    valid=jnp.ones(2, bool),
  )
  rng = np.random.default_rng(0)
  infinite = criteria.layer_scores(modes, "last", rng=rng)
  short = criteria.layer_scores(modes, "last", rng=rng, horizon=64)
  assert infinite[0] == 1.0 and infinite[1] < 1.0  # 1/(1-|lam|) = 2000 wins
  assert short[1] == 1.0 and short[0] < 1.0  # over 64 steps state 0 gains 62 at most
  np.testing.assert_array_equal(
    criteria.layer_scores(modes, "magnitude", rng=rng, horizon=64), np.abs(np.asarray(modes.poles))
  )  # ignored where irrelevant
  for bad in (0, -5, 2.5, True):
    with pytest.raises(ValueError, match="horizon"):
      criteria.layer_scores(modes, "last", rng=rng, horizon=bad)


def test_normalization_matches_formula_strongest_is_one_ties_deterministic():
  rng = np.random.default_rng(2)
  for _ in range(20):
    h = rng.pareto(1.0, size=rng.integers(1, 30))
    np.testing.assert_allclose(
      criteria.layer_energy_normalize(h, np.ones(h.size, bool)), _np_last(h), rtol=1e-12
    )
  # Ties: the lower slot counts as the stronger one; invalid slots are ignored.
  h = np.array([4.0, 1.0, 1.0, 2.0, 9.0, 4.0])
  valid = np.array([True, True, True, True, False, True])
  out = criteria.layer_energy_normalize(h, valid)
  np.testing.assert_allclose(out, [1.0, 1 / 11, 1 / 12, 2 / 10, 0.0, 4 / 8])
  assert criteria.layer_energy_normalize(np.zeros(3), np.ones(3, bool))[0] == 1.0


@pytest.mark.parametrize("ssm", ["s5", "s4d"])
def test_strongest_state_of_every_layer_scores_one(ssm):
  model = _model(ssm)
  layer = model.blocks[1].ssm
  layer.mask_states(np.arange(int(np.prod(layer.state_shape))) % 3 != 0)
  for path, s in pruning.score(model, "last").items():
    live = s[np.isfinite(s)]
    assert live.max() == 1.0, path
    assert np.all((live > 0) & (live <= 1.0))
    assert np.isneginf(s).sum() == (
      int(np.prod(layer.state_shape)) - live.size if path == "blocks.1.ssm" else 0
    )


def test_random_scores_are_reproducible():
  model = _model()
  a = pruning.score(model, "random", seed=5)
  b = pruning.score(model, "random", seed=np.random.default_rng(5))
  c = pruning.score(model, "random", seed=jax.random.key(5))
  assert all(np.array_equal(a[k], b[k]) for k in a)
  assert not np.array_equal(a["blocks.0.ssm"], a["blocks.1.ssm"])
  assert all(c[k].shape == a[k].shape for k in a)
  assert all(
    np.array_equal(x, y)
    for x, y in zip(
      pruning.score(model, "random").values(), pruning.score(model, "random").values()
    )
  )


@pytest.fixture
def scratch_criteria():
  before = dict(criteria._CRITERIA)
  yield
  criteria._CRITERIA.clear()
  criteria._CRITERIA.update(before)


def test_register_a_criterion(scratch_criteria):
  seen = {}

  @pruning.register_criterion("test_b_norm")
  def b_norm(modes, *, rng):
    return jnp.sum(jnp.abs(modes.B) ** 2, axis=1)

  @pruning.register_criterion("test_c_uniform", allocation="uniform")
  def c_norm(modes, *, rng, bidirectional):
    seen["bidirectional"] = bidirectional
    return hinf.output_norm_sq(modes, bidirectional)

  assert {"test_b_norm", "test_c_uniform"} <= set(pruning.registered_criteria())
  model = _model()
  report = pruning.prune(model, 0.5, criterion="test_b_norm", mode="mask")
  assert report.criterion == "test_b_norm" and report.states_after == 12
  report = pruning.prune(
    model, 0.5, criterion="test_c_uniform", mode="mask", bidirectional="reference"
  )
  assert seen["bidirectional"] == "reference" and report.threshold is None
  assert [l.states_after for l in report.layers.values()] == [
    max(1, l.states_before // 2) for l in report.layers.values()
  ]

  @pruning.register_criterion("test_bad_shape")
  def bad(modes, *, rng):
    return jnp.zeros(3)

  with pytest.raises(ValueError, match="one score per state slot"):
    pruning.score(model, "test_bad_shape")
  with pytest.raises(ValueError, match="allocation"):
    pruning.register_criterion("x", allocation="per_channel")


# ----------------------------------------------------------------------------
# Allocation.


def test_global_keeps_exactly_target_count_for_many_ratios():
  rng = np.random.default_rng(1)
  for trial in range(300):
    sizes = rng.integers(1, 40, size=rng.integers(1, 6))
    scores = {f"l{i}": rng.exponential(size=n) ** rng.uniform(0.5, 3) for i, n in enumerate(sizes)}
    if trial % 3 == 0:  # dead slots and exact ties
      for s in scores.values():
        s[rng.random(s.size) < 0.2] = -np.inf
        s[rng.random(s.size) < 0.2] = 0.5
    if trial % 5 == 0:
      ratio = float(rng.integers(0, 20)) / 20
    else:
      ratio = float(rng.uniform(0, 0.999))
    min_per_layer = int(rng.integers(0, 4))
    keep = allocate.allocate_global(scores, ratio, min_per_layer)
    live = {k: int(np.isfinite(s).sum()) for k, s in scores.items()}
    n = sum(live.values())
    expected = max(1, math.floor(n * (1 - ratio) + 1e-9))
    forced = sum(min(min_per_layer, c) for c in live.values())
    kept = sum(int(m.sum()) for m in keep.values())
    assert kept == max(expected, forced), (trial, ratio, sizes)
    for k, m in keep.items():
      assert m.sum() >= min(min_per_layer, live[k])
      assert not (m & ~np.isfinite(scores[k])).any()  # dead slots never kept
    # One threshold: every state kept on merit outscores (or ties) every pruned one.
    t = allocate.threshold(scores, keep)
    pruned = np.concatenate([s[~keep[k] & np.isfinite(s)] for k, s in scores.items()])
    if pruned.size and t is not None:
      assert pruned.max() <= t
    # Deterministic.
    again = allocate.allocate_global({k: s.copy() for k, s in scores.items()}, ratio, min_per_layer)
    assert all(np.array_equal(keep[k], again[k]) for k in keep)


def test_target_count_tolerates_decimal_ratios():
  assert 100 * (1 - 0.34) < 66 and 10 * (1 - 0.8) < 2  # floating point
  assert allocate.target_count(100, 0.34) == 66 and allocate.target_count(10, 0.8) == 2
  assert allocate.target_count(10, 0.0) == 10 and allocate.target_count(10, 0.999) == 1
  keep = allocate.allocate_global({"a": np.arange(100.0)}, 0.34)
  assert keep["a"].sum() == 66 and keep["a"][34:].all()


def test_min_per_layer_and_uniform_counts():
  scores = {"a": np.array([5.0, 4, 3, 2]), "b": np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])}
  keep = allocate.allocate_global(scores, 0.5, min_per_layer=2)
  assert keep["a"].tolist() == [True, True, True, False]
  assert keep["b"].tolist() == [False, False, False, False, True, True]
  assert allocate.threshold(scores, keep) == 3.0  # b's forced keeps do not set it
  keep = allocate.allocate_uniform(scores, 0.5)
  assert keep["a"].sum() == 2 and keep["b"].sum() == 3 and keep["b"][3:].all()
  keep = allocate.allocate_uniform(scores, 0.9, min_per_layer=1)
  assert keep["a"].sum() == 1 and keep["b"].sum() == 1
  with pytest.raises(ValueError, match="rule"):
    allocate.allocate(scores, 0.5, "per_channel")


def test_dead_slots_never_kept_and_ties_deterministic():
  keep = allocate.allocate_global({"a": np.array([1.0, 1.0, -np.inf, 1.0])}, 0.4)
  np.testing.assert_array_equal(keep["a"], [True, False, False, False])
  # Ties across layers: earlier layer first.
  keep = allocate.allocate_global(
    {"a": np.array([1.0, 2.0]), "b": np.array([2.0, 1.0])}, 0.5, min_per_layer=0
  )
  assert keep["a"].tolist() == [False, True] and keep["b"].tolist() == [True, False]


def test_allocate_counts_is_the_exact_minimum_of_summed_costs():
  rng = np.random.default_rng(0)
  for _ in range(20):
    sizes = rng.integers(1, 6, size=3)
    costs = {f"l{i}": np.sort(rng.random(n + 1))[::-1] for i, n in enumerate(sizes)}
    costs["l0"][0] = np.inf  # layer 0 must keep at least one state
    total = int(rng.integers(1, sizes.sum() + 1))
    counts = allocate.allocate_counts(costs, total)
    assert sum(counts.values()) == total and counts["l0"] >= 1
    best = min(
      costs["l0"][a] + costs["l1"][b] + costs["l2"][total - a - b]
      for a in range(1, sizes[0] + 1)
      for b in range(sizes[1] + 1)
      if 0 <= total - a - b <= sizes[2]
    )
    assert sum(costs[k][v] for k, v in counts.items()) == pytest.approx(best)
  # A cheap layer gives up its states first; a total below the minimums is raised to them.
  costs = {"cheap": np.array([np.inf, 0.1, 0.05, 0.0]), "dear": np.array([9.0, 5.0, 1.0, 0.0])}
  assert allocate.allocate_counts(costs, 4) == {"cheap": 1, "dear": 3}
  assert allocate.allocate_counts(costs, 0) == {"cheap": 1, "dear": 0}


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "x"])
def test_bad_ratio_is_a_clear_error(bad):
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    pruning.prune(_model(), bad)
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    allocate.allocate_global({"a": np.ones(3)}, bad)


def test_other_bad_inputs_are_clear_errors():
  model = _model()
  with pytest.raises(ValueError, match=r"unknown pruning criterion 'lastt'; registered: .*'last'"):
    pruning.prune(model, 0.3, criterion="lastt")
  with pytest.raises(ValueError, match="registered"):
    pruning.score(model, "lastt")
  with pytest.raises(ValueError, match="no prunable SSM layer"):
    pruning.prune(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 0.3)
  with pytest.raises(ValueError, match="no prunable SSM layer"):
    pruning.score(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="mode"):
    pruning.prune(model, 0.3, mode="shrink")
  with pytest.raises(ValueError, match="bidirectional"):
    pruning.prune(model, 0.3, bidirectional="mean")
  with pytest.raises(ValueError, match="min_per_layer"):
    pruning.prune(model, 0.3, min_per_layer=-1)
  # Nothing was changed by the failed calls.
  assert all(np.asarray(l.state_mask[...]).all() for l in model.prunable_layers().values())


def test_a_bare_layer_can_be_pruned():
  layer = _s5()
  report = pruning.prune(layer, 0.5)
  assert list(report.layers) == [""] and layer.state_shape == (report.states_after,)


# ----------------------------------------------------------------------------
# Schedules.


def test_schedule_cubic_and_linear_ramps():
  s = pruning.PruningSchedule(
    kind="iterative", target_ratio=0.5, start_epoch=2, end_epoch=6, every=2, ramp="cubic"
  )
  events = s.events()
  assert list(events) == [2, 4, 6] and s.event_epochs() == [2, 4, 6]
  # Zhu & Gupta with t0 = start - every = 0, T = 6.
  for e in events:
    assert events[e] == pytest.approx(0.5 * (1 - (1 - e / 6) ** 3))
  assert events[6] == pytest.approx(0.5)
  lin = pruning.PruningSchedule(
    kind="iterative", target_ratio=0.6, start_epoch=3, end_epoch=7, every=2, ramp="linear"
  )
  assert lin.events() == pytest.approx({3: 0.6 * 2 / 6, 5: 0.6 * 4 / 6, 7: 0.6})
  odd = pruning.PruningSchedule(
    kind="iterative", target_ratio=0.4, start_epoch=1, end_epoch=6, every=2
  )
  assert odd.event_epochs() == [1, 3, 5, 6] and odd.events()[6] == pytest.approx(0.4)
  assert np.all(np.diff(list(odd.events().values())) > 0)
  assert pruning.PruningSchedule(kind="none").events() == {}
  assert pruning.PruningSchedule(kind="one_shot", target_ratio=0.3, start_epoch=4).events() == {
    4: 0.3
  }


def test_schedule_ratio_at_and_event_ratio():
  s = pruning.PruningSchedule(
    kind="iterative", target_ratio=0.5, start_epoch=2, end_epoch=6, every=2
  )
  events = s.events()
  assert s.ratio_at(1) == 0.0 and s.ratio_at(2) == events[2] and s.ratio_at(3) == events[2]
  assert s.ratio_at(100) == pytest.approx(0.5)
  # At epoch 4, with a fraction f pruned already, remove 1 - (1 - s4)/(1 - f) of the rest.
  f = events[2]
  assert s.event_ratio(4, f) == pytest.approx(1 - (1 - events[4]) / (1 - f))
  assert s.event_ratio(3, f) == 0.0  # no event at epoch 3
  assert s.event_ratio(4, 0.9) == 0.0  # already beyond the target
  # Reaching 50% overall from 100 states with 20 gone: remove 30 of the 80.
  assert pruning.event_ratio(0.5, 80, 100) == pytest.approx(30 / 80)
  assert pruning.event_ratio(0.1, 80, 100) == 0.0
  assert 0 <= pruning.event_ratio(0.999999999999, 1, 100) < 1


def test_schedule_errors():
  with pytest.raises(ValueError, match="schedule"):
    pruning.PruningSchedule(kind="sometimes")
  with pytest.raises(ValueError, match="ramp"):
    pruning.PruningSchedule(ramp="exp")
  with pytest.raises(ValueError, match=r"\[0, 1\)"):
    pruning.PruningSchedule(target_ratio=1.0)
  with pytest.raises(ValueError, match="before"):
    pruning.PruningSchedule(kind="iterative", start_epoch=5, end_epoch=2)
  with pytest.raises(ValueError, match="every"):
    pruning.PruningSchedule(kind="iterative", every=0)


# ----------------------------------------------------------------------------
# Reports and histories as records.


def test_report_json_roundtrip_and_table():
  model = _model("s4d")
  history = pruning.PruningHistory()
  report = pruning.prune(model, 0.4, criterion="energy", mode="mask", history=history)
  again = pruning.PruneReport.from_json(report.to_json())
  assert again == report
  assert report.energy_norm == "h2" and report.states_original == 3 * 8 * 8
  assert report.ratio_achieved_total == pytest.approx(report.ratio_achieved)
  table = report.table()
  assert "blocks.2.ssm" in table and "total" in table and "energy" in table
  for layer in report.layers.values():
    assert 0 < layer.energy_kept <= 1 and layer.min_kept_score >= report.threshold
    assert layer.slots == 64 and len(layer.kept) == layer.states_after
  # A second event: ratio vs the dense model accumulates.
  second = pruning.prune(model, 0.5, criterion="last", mode="mask", history=history)
  assert second.states_before == report.states_after
  assert second.ratio_achieved_total == pytest.approx(1 - second.states_after / 192)
  # Older JSON without the newer fields still loads.
  old = {
    k: v
    for k, v in json.loads(report.to_json()).items()
    if k not in ("allocation", "states_original", "ratio_achieved_total")
  }
  assert pruning.PruneReport.from_dict(old).criterion == "energy"


def test_history_json_and_run_events():
  history = pruning.PruningHistory()
  model = _model()
  r1 = pruning.prune(model, 0.25, mode="mask", history=history)
  r2 = pruning.prune(model, 0.5, criterion="random", seed=1, mode="mask", history=history)
  again = pruning.PruningHistory.from_json(history.to_json())
  assert again == history and again.dense_states == {f"blocks.{i}.ssm": 8 for i in range(3)}
  assert [e.criterion for e in again.events] == ["last", "random"]
  events = [
    dict(status="applied", report=json.loads(r1.to_json())),
    dict(status="rolled_back", report=json.loads(r2.to_json())),
    dict(status="skipped"),
  ]
  from_run = pruning.PruningHistory.from_run_events(events)
  assert len(from_run.events) == 1 and from_run.events[0].kept == history.events[0].kept
