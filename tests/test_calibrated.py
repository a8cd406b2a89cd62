"""Calibrated scores: captured layer inputs, output energies, and the criterion."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.model import SequenceModel
from last_nnx.pruning import calibrated, calibration
from last_nnx.ssm import LRU, S4D, S5


def _brute_force_energy(modes, u, lengths):
  """Mean over valid (b, t) of sum_d ||s Re(C_i x_i(t))||^2, materializing (B, L, S, H)."""
  poles = np.asarray(modes.poles, np.complex128)
  b = np.asarray(modes.B, np.complex128) * np.asarray(modes.valid)[:, None]
  c = np.asarray(modes.C, np.complex128)
  u = np.asarray(u, np.float64)
  bsz, length, _ = u.shape
  if modes.channel is None:
    drive = np.einsum("blh,sh->bls", u, b)
  else:
    drive = u[:, :, np.asarray(modes.channel)] * b[:, 0]
  total = np.zeros(len(poles))
  for d in range(c.shape[0]):
    x = np.zeros((bsz, length, len(poles)), np.complex128)
    times = range(length) if d == 0 else range(length - 1, -1, -1)
    prev = np.zeros((bsz, len(poles)), np.complex128)
    for t in times:
      prev = poles * prev + drive[:, t]
      x[:, t] = prev
    y = modes.output_scale * np.real(x[..., None] * c[d].T[None, None])  # (B, L, S, H_out)
    valid = np.arange(length)[None, :] < np.asarray(lengths)[:, None]
    total += np.sum(np.sum(y**2, axis=-1) * valid[..., None], axis=(0, 1))
  return total / valid.sum()


@pytest.mark.parametrize(
  "layer",
  [
    S5(3, 8, blocks=2, rngs=nnx.Rngs(0)),
    S5(3, 6, conj_sym=False, bidirectional=True, rngs=nnx.Rngs(0)),
    S4D(3, 6, bidirectional=True, rngs=nnx.Rngs(0)),
    LRU(3, 5, rngs=nnx.Rngs(0)),
  ],
  ids=["s5", "s5-bidir-noconj", "s4d-bidir", "lru"],
)
def test_output_energy_matches_the_materialized_computation(layer):
  rng = np.random.default_rng(0)
  layer.mask_states(np.arange(int(np.prod(layer.state_shape))) != 1)  # a dead slot scores 0
  u = jnp.asarray(rng.normal(size=(2, 12, 3)), jnp.float32)
  lengths = jnp.asarray([12, 7])
  modes = layer.state_modes()
  total, count = calibrated.output_energy_sums(modes, u, lengths)
  np.testing.assert_allclose(
    np.asarray(total) / float(count), _brute_force_energy(modes, u, lengths), rtol=2e-4, atol=1e-7
  )
  assert float(total[1]) == 0.0


def _model(ssm="s5", **cfg):
  return SequenceModel(
    n_classes=3,
    d_model=4,
    n_layers=2,
    ssm=ssm,
    in_dim=2,
    ssm_config=dict(state_size=8, **cfg),
    rngs=nnx.Rngs(0),
  )


def _batches(rng, n=2, channels=(0, 1)):
  out = []
  for _ in range(n):
    x = np.zeros((3, 10, 2), np.float32)
    x[..., list(channels)] = rng.normal(size=(3, 10, len(channels)))
    out.append((x, np.array([10, 8, 5]), np.zeros(3, np.int32)))
  return out


def test_capture_records_each_layers_input_in_eval_mode_and_cleans_up():
  model = _model()
  model.train()
  batches = _batches(np.random.default_rng(0))
  [(recorded, lengths)] = list(calibration.capture_inputs(model, batches, max_batches=1))
  model.eval()
  x = jnp.asarray(batches[0][0])
  expected = model.blocks[0].norm(model.encoder(x))
  np.testing.assert_allclose(
    np.asarray(recorded["blocks.0.ssm"]), np.asarray(expected), rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(
    np.asarray(recorded["blocks.1.ssm"]),
    np.asarray(model.blocks[1].norm(model.blocks[0](expected))),
    rtol=1e-4,
    atol=1e-5,
  )
  assert lengths.tolist() == [10, 8, 5]
  for layer in model.prunable_layers().values():
    assert not hasattr(layer, "recorded_input") and not hasattr(layer, "recording_input")
  model.train()
  model2 = _model()
  model2.train()
  list(calibration.capture_inputs(model2, batches, max_batches=1))
  assert model2.blocks[0].norm.use_running_average is False  # the mode is restored


def test_calibrated_prunes_states_the_data_never_excites():
  # One layer; the data drives input channel 0 only. Give state 0 a huge gain from
  # channel 1: every data-free norm ranks it first, the calibrated score last.
  layer = S5(2, 8, blocks=1, conj_sym=False, rngs=nnx.Rngs(0))
  b = np.array(layer.B[...])
  b[0, 0] = 0.0
  b[0, 1] = 50.0
  layer.B.set_value(jnp.asarray(b))
  rng = np.random.default_rng(0)
  batches = [
    (np.stack([rng.normal(size=(4, 16)), np.zeros((4, 16))], -1).astype(np.float32), np.full(4, 16))
    for _ in range(2)
  ]

  # A bare layer is called as layer(u): wrap it as a model taking (inputs, lengths).
  class Wrap(nnx.Module):
    def __init__(self, ssm):
      self.ssm = ssm

    def __call__(self, inputs, lengths):
      return self.ssm(inputs)

  model = Wrap(layer)
  calib = pruning.score(model, "calibrated", calibration=batches)["ssm"]
  last = pruning.score(model, "last")["ssm"]
  assert np.argmax(last) == 0 and calib[0] == calib.min()
  report = pruning.prune(nnx.clone(model), 0.5, criterion="calibrated", calibration=batches)
  assert 0 not in report.layers["ssm"].kept
  assert 0 in pruning.prune(nnx.clone(model), 0.5, criterion="last").layers["ssm"].kept


def test_calibrated_needs_data_and_a_recording_layer():
  model = _model()
  with pytest.raises(ValueError, match="calibration="):
    pruning.prune(model, 0.3, criterion="calibrated")
  with pytest.raises(ValueError, match="at least one batch"):
    pruning.prune(model, 0.3, criterion="calibrated", calibration=[])

  class Quiet(S5):
    def __call__(self, u):  # forgets self.record_input(u)
      lam, b, c = self.discrete_system()
      return u

  class Wrap(nnx.Module):
    def __init__(self):
      self.ssm = Quiet(2, 4, rngs=nnx.Rngs(0))

    def __call__(self, inputs, lengths):
      return self.ssm(inputs)

  with pytest.raises(ValueError, match="record_input"):
    pruning.score(Wrap(), "calibrated", calibration=_batches(np.random.default_rng(0)))


def test_calibrated_report_and_time_constant_diagnostic():
  model = _model("s4d")
  batches = _batches(np.random.default_rng(1))
  report = pruning.prune(model, 0.5, criterion="calibrated", calibration=batches, seq_len=10)
  assert report.states_after == report.states_before // 2
  assert all(0 < l.energy_kept <= 1 for l in report.layers.values())
  assert report.long_states is not None and report.seq_len == 10
  # S4D-Inv at dt <= 0.1 has time constants far beyond 10 steps: LAST gets the hint.
  hinted = pruning.prune(_model("s4d"), 0.5, criterion="last", seq_len=10)
  assert hinted.long_share > 0.25 and "horizon=-1" in hinted.table()
  assert "hint" not in report.table()  # calibrated scores already see the real lengths
  assert pruning.prune(_model("s4d"), 0.5, criterion="last", seq_len=10_000).long_states == 0
