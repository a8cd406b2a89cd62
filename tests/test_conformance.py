"""Conformance suite: every registered SSM type works with all of pruning and training.

A new layer type adds one entry to SMALL_OPTIONS (the options of a tiny layer of
that type) and runs ``.venv/bin/pytest tests/test_conformance.py``. Failures say
what is missing: `check_protocol` lists missing methods, mis-shaped
``state_modes()``, wrong ``STATE_AXES`` and streaming problems.

Layer level (no engine needed): protocol, subsystem decomposition shapes and
dtypes, recurrence equality (output == sum of the ``state_modes()`` one-state
subsystems + D u, against the naive numpy recurrence of tests/reference.py),
mask == compact, step mode == scan (dense, masked, compacted).
Model level (a SequenceModel with that type; skipped, saying why, when the
pruning engine or the checkpoint module is missing): scores of the right shape,
mask == compact through ``pruning.prune``, optimizer compaction, a training step
after pruning, checkpoint round trip of a pruned model. Slow: the LRU smoke run.

Selective layers (Mamba-2) have no ``state_modes()``: the checks that read modes
(the subsystem decomposition, the generic step fallback) run on the LTI types
only; every other check runs on every type, with the criteria that apply to it
(`KIND_CRITERIA`, calibrated on the test batch) and causal layers only where a
type cannot be bidirectional.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from last_nnx.model import SequenceModel
from last_nnx.ssm import make_ssm, registered_ssms
from last_nnx.ssm.base import is_selective, live_states
from last_nnx.ssm.conformance import assert_conforms, check_protocol
from last_nnx.ssm.lru import LRU
from tests.reference import modes_output

try:
  from last_nnx import pruning

  _NO_PRUNING = None
except ImportError as e:  # the engine is a separate package of the project
  pruning, _NO_PRUNING = None, f"last_nnx.pruning is not importable ({e})"
try:
  from last_nnx.train import checkpoint, loop, steps

  _NO_TRAIN = None
except ImportError as e:
  checkpoint = loop = steps = None
  _NO_TRAIN = f"last_nnx.train (checkpoint, loop) is not importable ({e})"

needs_pruning = pytest.mark.skipif(pruning is None, reason=_NO_PRUNING or "")
needs_train = pytest.mark.skipif(loop is None, reason=_NO_TRAIN or "")

H = 4
# One entry per registered type: options for a tiny layer (d_model = H). Poles
# are kept away from |lam| = 1 so that short sequences exercise the dynamics.
SMALL_OPTIONS = {
  "s5": dict(state_size=8, blocks=2, dt_min=0.01, dt_max=0.5),
  "s4d": dict(state_size=8, dt_min=0.01, dt_max=0.5),
  "lru": dict(state_size=6, r_min=0.5, r_max=0.95),
  "mamba2": dict(state_size=4, head_dim=4, n_groups=2, chunk_size=4),  # 2 heads, 2 groups
}
# Streaming (one step at a time, float32) vs the layer's own parallel path
# (sequential/associative scan for S5 and LRU, FFT convolution for S4D): the two
# round differently. Measured largest |difference| (outputs of size ~5): <= 5e-7
# on these small layers at L = 24 and L = 512; 2.4e-5 (S4D) and 1.1e-5 (LRU) for
# H = 32, 64 states, L = 1024. No drift beyond float32 rounding.
STEP_ATOL = 1e-4
MASK_COMPACT_ATOL = 1e-5


def _is_selective(name) -> bool:
  return is_selective(make_ssm(name, H, SMALL_OPTIONS[name], rngs=nnx.Rngs(0)))


ALL_TYPES = [n for n in registered_ssms() if n in SMALL_OPTIONS]
# Checks that read a layer's modes (`state_modes`) run on the LTI layers.
LTI_TYPES = [n for n in ALL_TYPES if not _is_selective(n)]
CAUSAL_ONLY = {n for n in ALL_TYPES if _is_selective(n)}  # Mamba-2 is causal
TYPES = pytest.mark.parametrize("name", ALL_TYPES)
LTI = pytest.mark.parametrize("name", LTI_TYPES)
_IDS = lambda v: ("bidi" if v else "causal") if isinstance(v, bool) else v
TYPES_BIDI = pytest.mark.parametrize(
  "name,bidirectional",
  [(n, b) for n in ALL_TYPES for b in (False, True) if not (b and n in CAUSAL_ONLY)],
  ids=_IDS,
)
LTI_BIDI = pytest.mark.parametrize(
  "name,bidirectional", [(n, b) for n in LTI_TYPES for b in (False, True)], ids=_IDS
)
# Criteria the model-level checks score with, per layer kind (the first one prunes).
KIND_CRITERIA = {
  "lti": ("last", "energy", "magnitude"),
  "selective": ("calibrated", "gramian", "magnitude"),
}


def test_every_registered_type_has_small_options():
  missing = set(registered_ssms()) - set(SMALL_OPTIONS)
  assert not missing, (
    f"registered SSM type(s) {sorted(missing)} have no entry in "
    "tests/test_conformance.py SMALL_OPTIONS: add the options of a tiny layer"
  )


def _layer(name, bidirectional=False, seed=0):
  return make_ssm(
    name, H, dict(SMALL_OPTIONS[name], bidirectional=bidirectional), rngs=nnx.Rngs(seed)
  )


def _u(length=16, batch=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, length, H))


def _keep(layer, seed=0):
  """About half the slots: ragged across channels for multi-SISO layers (some
  channels may keep none), and every group loses its last slot, so compaction
  shrinks the arrays."""
  keep = np.random.default_rng(seed).random(layer.state_shape) < 0.5
  keep[..., -1] = False
  keep = keep.reshape(-1)
  keep[0] = True
  return keep


_JITTED: dict[type, type] = {}


def _jitted(layer):
  """``layer`` with ``__call__``, ``step`` and ``state_statistics`` compiled (nnx.jit).

  Run eagerly, a layer's forward is one XLA compile per primitive (the Mamba-2
  forward has hundreds): compiled whole, it is one program, and the same one for
  every test with the same shapes. The behaviour checked is the layer's own: each
  override calls the layer type's method. Errors raised while tracing (a
  bidirectional layer refusing to step) propagate unchanged.
  """
  base = type(layer)
  if base not in _JITTED:
    call = nnx.jit(lambda m, u: base.__call__(m, u))
    step = nnx.jit(lambda m, state, u_t: base.step(m, state, u_t))
    stats = nnx.jit(lambda m, u, lengths: base.state_statistics(m, u, lengths))
    _JITTED[base] = type(
      base.__name__,
      (base,),
      {
        "__call__": lambda self, u: call(self, u),
        "step": lambda self, state, u_t: step(self, state, u_t),
        "state_statistics": lambda self, u, lengths=None: stats(self, u, lengths),
      },
    )
  layer.__class__ = _JITTED[base]
  return layer


def _pruned(name, how, bidirectional=False):
  layer = _jitted(_layer(name, bidirectional))
  if how == "mask":
    layer.mask_states(_keep(layer))
  elif how == "compact":
    layer.prune_states(_keep(layer))
  return layer


# ----------------------------------------------------------------------------
# Layer level: the protocol and the subsystem decomposition.


@TYPES_BIDI
@pytest.mark.parametrize("how", ["dense", "compact"])
def test_protocol(name, bidirectional, how):
  assert_conforms(_pruned(name, how, bidirectional), H)


def test_protocol_check_names_what_is_missing():
  problems = check_protocol(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), 2)
  assert "missing attribute or method 'state_modes'" in problems
  assert "missing attribute or method 'step'" in problems
  selective = type("Selective", (nnx.Linear,), {"selective": True})(2, 2, rngs=nnx.Rngs(0))
  problems = check_protocol(selective, 2)
  assert "missing attribute or method 'state_statistics'" in problems
  assert "missing attribute or method 'state_modes'" not in problems


def test_protocol_check_reads_selective_statistics():
  layer = _pruned("mamba2", "dense")
  broken = type(
    "Broken",
    (type(layer),),
    {
      "state_statistics": lambda self, u, lengths=None: {"output_energy": jnp.zeros(3)},
      "STATE_IO": ("in_B", "W_missing"),
    },
  )
  layer.__class__ = broken
  problems = "\n".join(check_protocol(layer, H))
  assert "state_statistics must return a dict with keys" in problems
  assert "STATE_IO names 'W_missing'" in problems


def test_protocol_check_names_bad_shapes_and_axes():

  class Broken(LRU):
    STATE_AXES = {"nu_log": 0, "B": 1, "C": 2}  # B's state axis is 0, not 1

    def state_modes(self):
      modes = super().state_modes()
      return type(modes)(
        poles=modes.poles[:-1],
        B=modes.B.real,
        C=modes.C,
        valid=modes.valid,
        feedthrough=modes.feedthrough,
      )

  problems = "\n".join(check_protocol(Broken(H, 6, rngs=nnx.Rngs(0)), H))
  assert "poles has shape (5,), expected (6,)" in problems
  assert "B must be complex64, got float32" in problems
  assert "STATE_AXES['B'] = 1" in problems
  with pytest.raises(AssertionError, match="does not satisfy PrunableSSM"):
    assert_conforms(Broken(H, 6, rngs=nnx.Rngs(0)), H)


@LTI_BIDI
def test_subsystem_decomposition_shapes_and_dtypes(name, bidirectional):
  layer = _layer(name, bidirectional)
  modes = layer.state_modes()
  s = int(np.prod(layer.state_shape))
  h_in = H if modes.channel is None else 1
  assert modes.poles.shape == (s,) and modes.poles.dtype == jnp.complex64
  assert modes.B.shape == (s, h_in) and modes.B.dtype == jnp.complex64
  assert modes.C.shape == (2 if bidirectional else 1, h_in, s)
  assert modes.C.dtype == jnp.complex64
  assert modes.valid.shape == (s,) and modes.valid.dtype == jnp.bool_ and bool(modes.valid.all())
  assert np.all(np.abs(np.asarray(modes.poles)) < 1)
  if modes.channel is not None:
    assert modes.channel.shape == (s,)
    # Flat slots are row-major over state_shape (H, N): slot h * N + n feeds channel h.
    np.testing.assert_array_equal(
      np.asarray(modes.channel), np.repeat(np.arange(H), layer.state_shape[-1])
    )


@LTI_BIDI
@pytest.mark.parametrize("how", ["dense", "mask", "compact"])
def test_output_is_sum_of_subsystems(name, bidirectional, how):
  """The layer computes exactly the system its state_modes() describes (what gets scored)."""
  layer = _pruned(name, how, bidirectional)
  u = _u()
  y = np.asarray(layer(u))
  for b in range(u.shape[0]):
    expected = modes_output(layer.state_modes(), np.asarray(u[b], np.float64))
    np.testing.assert_allclose(y[b], expected, atol=2e-4, rtol=1e-4)


@TYPES_BIDI
def test_mask_equals_compact(name, bidirectional):
  masked, compact = _pruned(name, "dense", bidirectional), _pruned(name, "dense", bidirectional)
  keep = _keep(masked)
  masked.mask_states(keep)
  transforms = compact.prune_states(keep)
  assert set(transforms) == set(type(compact).STATE_AXES)
  assert int(np.prod(compact.state_shape)) < keep.size
  assert live_states(compact) == live_states(masked) == int(keep.sum())
  u = _u()
  np.testing.assert_allclose(masked(u), compact(u), atol=MASK_COMPACT_ATOL)
  # Removing states changes the output (the mask reaches the computation).
  assert not np.allclose(masked(u), _pruned(name, "dense", bidirectional)(u), atol=1e-4)
  if is_selective(compact):
    # Statistics of the kept states are unchanged by compaction (each state evolves alone).
    dense = _pruned(name, "dense", bidirectional).state_statistics(u)
    kept = compact.state_statistics(u)
    index = np.flatnonzero(np.asarray(compact.state_mask[...]).reshape(-1))
    for key, value in dense.items():
      np.testing.assert_allclose(
        np.asarray(kept[key]).reshape(-1)[index],
        np.asarray(value).reshape(-1)[keep],
        rtol=1e-4,
        atol=1e-6,
      )
    return
  # And both equal the dense layer's subsystems restricted to the kept slots.
  expected = modes_output(
    _layer(name, bidirectional).state_modes(), np.asarray(u[0], np.float64), keep=keep
  )
  np.testing.assert_allclose(compact(u)[0], expected, atol=2e-4, rtol=1e-4)


# ----------------------------------------------------------------------------
# Layer level: streaming.


def _stream(layer, u):
  state = layer.init_state(u.shape[0])
  outs = []
  for t in range(u.shape[1]):
    state, y = layer.step(state, u[:, t])
    outs.append(y)
  return jnp.stack(outs, axis=1), state


@TYPES
@pytest.mark.parametrize("how", ["dense", "mask", "compact"])
def test_step_mode_equals_scan(name, how):
  layer = _pruned(name, how)
  u = _u(length=24)
  streamed, state = _stream(layer, u)
  np.testing.assert_allclose(streamed, layer(u), atol=STEP_ATOL)
  if is_selective(layer):  # a pytree of batch-first arrays
    assert all(x.shape[0] == u.shape[0] for x in jax.tree.leaves(state))
    return
  assert state.shape == (u.shape[0],) + layer.state_shape
  # Pruned (masked or padding) slots never get input: their state stays exactly zero.
  dead = np.asarray(layer.state_mask[...]) == 0
  assert np.all(np.asarray(state)[:, dead] == 0)


@TYPES
def test_step_mode_streams_under_jit(name):
  """A pruned layer as a compiled RNN: lax.scan over `step` inside nnx.jit, long sequence."""
  layer = _pruned(name, "compact")
  u = _u(length=512)
  step = type(layer).__bases__[0].step  # the layer type's own step, traced into the scan

  @nnx.jit
  def run(layer, u):
    def body(state, u_t):
      return step(layer, state, u_t)

    _, ys = jax.lax.scan(body, layer.init_state(u.shape[0]), jnp.swapaxes(u, 0, 1))
    return jnp.swapaxes(ys, 0, 1)

  np.testing.assert_allclose(run(layer, u), layer(u), atol=STEP_ATOL)


@TYPES
def test_bidirectional_layers_refuse_to_stream(name):
  if name in CAUSAL_ONLY:  # refused when built instead
    with pytest.raises(ValueError, match="bidirectional"):
      _layer(name, True)
    return
  layer = _layer(name, True)
  with pytest.raises(ValueError, match="cannot run as a streaming RNN"):
    layer.init_state(1)
  with pytest.raises(ValueError, match="cannot run as a streaming RNN"):
    layer.step(jnp.zeros((1,) + layer.state_shape, jnp.complex64), jnp.zeros((1, H)))


# ----------------------------------------------------------------------------
# Model level: the engine, the optimizer, checkpoints and training.


def _model(name, bidirectional=True, seed=0):
  bidirectional = bidirectional and name not in CAUSAL_ONLY
  return SequenceModel(
    n_classes=3,
    vocab_size=9,
    d_model=H,
    n_layers=2,
    ssm=name,
    ssm_config=dict(SMALL_OPTIONS[name], bidirectional=bidirectional),
    rngs=nnx.Rngs(seed),
  )


def _batch():
  return (
    jax.random.randint(jax.random.key(0), (3, 12), 1, 9),
    jnp.array([12, 8, 5]),
    jnp.array([0, 1, 2]),
  )


def _kind(name) -> str:
  return "selective" if _is_selective(name) else "lti"


def _prune(model, name, ratio, **kwargs):
  """`pruning.prune` with the first criterion of the type's kind (calibrated on _batch)."""
  return pruning.prune(
    model, ratio, criterion=KIND_CRITERIA[_kind(name)][0], calibration=[_batch()], **kwargs
  )


# One optax transformation for every optimizer below: optimizers built from it have equal
# graph definitions, so models of equal shapes reuse one compiled train step.
_ADAM = optax.adam(1e-2)


def _train_step(model, optimizer):
  """One step of the training loop's own (nnx.jit) train_step; returns the loss."""
  return float(steps.fit(model, optimizer, [_batch()]).metrics.compute()["loss"])


@nnx.jit
def _forward(model, x, lengths):
  return model(x, lengths)


def _eval(model):
  model.eval()
  x, lengths, _ = _batch()
  out = np.asarray(_forward(model, x, lengths))
  model.train()
  return out


def _param_shapes(model):
  return {
    tuple(str(k) for k in p): tuple(v.shape)
    for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
  }


@needs_pruning
@TYPES
def test_scores_one_per_slot(name):
  model = _model(name)
  layers = model.prunable_layers()
  assert len(layers) == 2
  for criterion in KIND_CRITERIA[_kind(name)]:
    scores = pruning.score(model, criterion, calibration=[_batch()])
    assert set(scores) == set(layers)
    for path, layer in layers.items():
      s = np.asarray(scores[path])
      assert s.shape == (int(np.prod(layer.state_shape)),), (criterion, path, s.shape)
      assert np.all(np.isfinite(s)), (criterion, path)
  if _kind(name) == "selective":  # an LTI-only criterion is refused, naming those that apply
    with pytest.raises(ValueError, match="calibrated"):
      pruning.score(model, "last")
    return
  last = pruning.score(model, "last")
  for path in layers:  # LAST: in (0, 1], the strongest state of each layer scores 1
    assert np.all((last[path] > 0) & (last[path] <= 1 + 1e-9))
    assert np.isclose(last[path].max(), 1.0)


@needs_pruning
@TYPES_BIDI
def test_model_mask_equals_compact(name, bidirectional):
  compact = _model(name, bidirectional)
  masked = nnx.clone(compact)
  r_comp = _prune(compact, name, 0.5, mode="compact")
  r_mask = _prune(masked, name, 0.5, mode="mask")
  assert r_comp.states_after < r_comp.states_before
  assert [l.kept for l in r_comp.layers.values()] == [l.kept for l in r_mask.layers.values()]
  np.testing.assert_allclose(_eval(compact), _eval(masked), atol=MASK_COMPACT_ATOL)


@needs_pruning
@needs_train
@TYPES
def test_optimizer_compaction(name):
  model = _model(name)
  optimizer = nnx.Optimizer(model, _ADAM, wrt=nnx.Param)
  _train_step(model, optimizer)
  report = _prune(model, name, 0.5, mode="compact", optimizer=optimizer)
  assert report.states_after < report.states_before
  # Every Adam moment (mu, nu) has its parameter's new, smaller shape.
  params = _param_shapes(model)
  checked = 0
  for path, node in nnx.iter_graph(optimizer.opt_state):
    value = node.get_value() if isinstance(node, nnx.Variable) else None
    if getattr(value, "ndim", 0) == 0:
      continue
    key = tuple(str(k) for k in path)
    for pk, shape in params.items():
      if key[-len(pk) :] == pk:
        assert value.shape == shape, f"optimizer leaf {key}: {value.shape} != param {shape}"
        checked += 1
  assert checked == 2 * len(params), f"found {checked} Adam moments for {len(params)} params"
  # The next jitted step retraces with the new shapes and trains on.
  # Host copies: the step donates the model's buffers, which nnx.clone would share.
  before = [np.array(a) for a in jax.tree.leaves(nnx.state(model, nnx.Param))]
  assert np.isfinite(_train_step(model, optimizer))
  changed = [
    not np.allclose(a, b) for a, b in zip(before, jax.tree.leaves(nnx.state(model, nnx.Param)))
  ]
  assert any(changed)
  assert _param_shapes(model) == params


@needs_pruning
@needs_train
@TYPES
@pytest.mark.parametrize("mode", ["mask", "compact"])
def test_train_one_step_after_pruning(name, mode):
  model = _model(name)
  optimizer = nnx.Optimizer(model, _ADAM, wrt=nnx.Param)
  _prune(model, name, 0.5, mode=mode, optimizer=optimizer)
  live = {p: live_states(l) for p, l in model.prunable_layers().items()}
  losses = [_train_step(model, optimizer) for _ in range(2)]
  assert np.all(np.isfinite(losses))
  # Training does not revive pruned states.
  assert live == {p: live_states(l) for p, l in model.prunable_layers().items()}
  assert np.all(np.isfinite(_eval(model)))


@needs_pruning
@needs_train
@TYPES
def test_checkpoint_round_trip_of_pruned_model(name, tmp_path):
  model = _model(name)
  optimizer = nnx.Optimizer(model, _ADAM, wrt=nnx.Param)
  _train_step(model, optimizer)
  _prune(model, name, 0.5, optimizer=optimizer)
  _train_step(model, optimizer)
  ck = checkpoint.Checkpointer(str(tmp_path))
  ck.save(7, model, optimizer, {"note": "pruned"})
  ck.wait()

  fresh = _model(name, seed=1)  # different init: everything must come from the checkpoint
  step, meta = ck.latest_usable()
  assert step == 7 and meta["note"] == "pruned"
  checkpoint.resize_layers(fresh, meta["layer_shapes"])
  fresh_opt = nnx.Optimizer(fresh, _ADAM, wrt=nnx.Param)
  ck.restore(step, fresh, fresh_opt)
  ck.close()
  assert {p: l.state_shape for p, l in fresh.prunable_layers().items()} == {
    p: l.state_shape for p, l in model.prunable_layers().items()
  }
  np.testing.assert_array_equal(_eval(fresh), _eval(model))
  # The optimizer state came back too: one more step gives the same model.
  np.testing.assert_allclose(
    _train_step(fresh, fresh_opt), _train_step(model, optimizer), rtol=1e-6
  )
  np.testing.assert_allclose(_eval(fresh), _eval(model), atol=1e-6)


# ----------------------------------------------------------------------------
# The LRU's smoke preset trains and prunes end to end.


@pytest.mark.slow
@needs_pruning
@needs_train
def test_lru_smoke_trains_and_prunes(tmp_path, monkeypatch):
  from tests.test_train_loop import get_config

  monkeypatch.setenv("LAST_NNX_CACHE", str(tmp_path / "cache"))
  config = get_config("listops", "lru,smoke")
  assert config.model.ssm == "lru"
  config.data.cache_dir = str(tmp_path / "cache")
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  before, after = summary["states_initial"], summary["states_final"]
  assert set(before) == set(after) and len(before) == config.model.n_layers
  assert sum(after.values()) < sum(before.values())
  assert all(n >= 1 for n in after.values())
  assert np.isfinite(summary["final"]["val"]["loss"])
