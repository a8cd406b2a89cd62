"""Pruning a Mamba-2 LM: sequential recalibration (GHOST), global vs uniform allocation,
compaction with ragged per-layer N, perplexity after pruning."""

import numpy as np
import pytest
from flax import nnx

from last_nnx.lm import Mamba2LM, Mamba2LMConfig, evaluate
from last_nnx.lm import prune as lm_prune
from last_nnx.pruning.layers import prunable_layers
from last_nnx.pruning.sequential import prune_selective

CONFIG = Mamba2LMConfig.tiny(n_layers=2, chunk_size=16)
LENGTH = 16


def _model(n_layers=2, seed=0):
  return Mamba2LM(Mamba2LMConfig.tiny(n_layers=n_layers, chunk_size=16), rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def windows():
  rng = np.random.default_rng(0)
  # A skewed token stream (a few frequent tokens), so states differ in what they carry.
  stream = rng.choice(CONFIG.vocab_size, size=4000, p=np.sort(rng.dirichlet(np.ones(64) * 0.3)))
  return lm_prune.calibration_windows(stream, count=16, length=LENGTH)


def test_calibration_windows_count_length_and_short_text():
  stream = np.arange(300) % 64
  w = lm_prune.calibration_windows(stream, count=5, length=20, seed=1)
  assert w.shape == (5, 20) and w.dtype == np.int32
  assert all(np.array_equal(row, (np.arange(row[0], row[0] + 20)) % 64) for row in w)
  rows = lm_prune.calibration_windows(np.arange(40).reshape(4, 10), count=3, length=6)
  assert rows.shape == (3, 6) and set(rows[:, 0]) <= {0, 10, 20, 30}
  with pytest.raises(ValueError, match="fewer than one window"):
    lm_prune.calibration_windows(stream[:10], count=2, length=20)


def test_sequential_equals_one_pass_on_one_layer(windows):
  batches = lm_prune.as_batches(windows, 8)
  one, seq = _model(1), _model(1)
  a = prune_selective(one, 0.5, criterion="calibrated", calibration=batches, mode="mask")
  b = prune_selective(
    seq, 0.5, criterion="calibrated", calibration=batches, mode="mask", sequential=True
  )
  (path,) = a.kept
  np.testing.assert_array_equal(a.kept[path], b.kept[path])
  for k, v in a.first_pass[path].items():
    np.testing.assert_allclose(b.statistics[path][k], v, rtol=1e-6, atol=1e-12)


def test_sequential_rescores_later_layers_on_the_pruned_model(windows):
  batches = lm_prune.as_batches(windows, 8)
  model = _model(2)
  report = prune_selective(
    model,
    0.6,
    criterion="calibrated",
    allocation="uniform",
    calibration=batches,
    mode="mask",
    sequential=True,
  )
  first, second = report.kept
  # Layer 0 sees the same inputs as in the first pass; layer 1 sees layer 0 pruned.
  np.testing.assert_allclose(
    report.statistics[first]["output_energy"], report.first_pass[first]["output_energy"], rtol=1e-6
  )
  before = report.first_pass[second]["output_energy"]
  after = report.statistics[second]["output_energy"]
  assert np.max(np.abs(after - before) / np.max(before)) > 1e-3
  # The counts come from the allocation (uniform: 60% of 8 pruned -> 3 kept per layer).
  assert report.per_layer() == [3, 3]


def test_uniform_keeps_the_same_count_in_every_layer_global_does_not(windows):
  for criterion in ("calibrated", "gramian", "magnitude", "random"):
    for sequential in (False, True):
      model = _model(3)
      report = lm_prune.prune_lm(
        model,
        0.5,
        criterion=criterion,
        allocation="uniform",
        sequential=sequential,
        calibration=windows,
        batch_size=8,
        mode="mask",
      )
      assert report.per_layer() == [4, 4, 4], (criterion, sequential)
      assert lm_prune.state_counts(model) == (4, 4, 4)
  lm_prune.prune_lm(model, 0.5, criterion="random", allocation="uniform")
  assert model.state_sizes() == (2, 2, 2)
  assert model.config.state_size == 2 and model.config.layer_state_sizes is None
  model = _model(3)
  report = lm_prune.prune_lm(
    model,
    0.5,
    criterion="calibrated",
    allocation="global",
    sequential=True,
    calibration=windows,
    batch_size=8,
  )
  assert sum(report.per_layer()) == 12  # floor(24 * 0.5), spread by the global threshold
  assert lm_prune.state_counts(model) == tuple(report.per_layer())
  assert model.config.layer_state_sizes in (None, tuple(report.per_layer()))


def test_compacted_equals_masked_and_perplexity_is_finite(windows):
  masked, compact = _model(2), _model(2)
  for m, mode in ((masked, "mask"), (compact, "compact")):
    lm_prune.prune_lm(
      m,
      0.5,
      criterion="calibrated",
      allocation="global",
      sequential=True,
      calibration=windows,
      batch_size=8,
      mode=mode,
    )
  a, b = evaluate(masked, windows[:4]), evaluate(compact, windows[:4])
  assert np.isfinite(a["perplexity"])
  np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
  assert compact.state_sizes() != masked.state_sizes()


def test_measured_allocation_cuts_the_layers_the_loss_does_not_need():
  # A loss that only layer 1's states move (one unit per state masked there).
  model = _model(2)
  second = list(prunable_layers(model))[1]

  def loss(m):
    return float(8 - np.asarray(prunable_layers(m)[second].state_mask[...]).sum())

  report = prune_selective(
    model, 0.5, criterion="magnitude", allocation="measured", loss_fn=loss, mode="mask"
  )
  assert report.per_layer() == [1, 7]  # layer 0 down to its one state before layer 1 pays
  np.testing.assert_allclose(report.layer_costs[second], [np.inf, 7, 6, 5, 4, 3, 2, 1, 0])

  # The costs serve again without measuring (any ratio, same model and scores).
  def no_loss(m):
    raise AssertionError("measured again")

  again = prune_selective(
    _model(2),
    0.75,
    criterion="magnitude",
    allocation="measured",
    loss_fn=no_loss,
    layer_costs=report.layer_costs,
    mode="mask",
  )
  assert again.per_layer() == [1, 3]


def test_measured_costs_are_each_layer_cut_alone_on_the_calibration_loss(windows):
  report = lm_prune.prune_lm(
    _model(2), 0.5, allocation="measured", calibration=windows, batch_size=8, mode="mask"
  )
  first, second = report.kept
  dense = _model(2)
  base = evaluate(dense, windows, 8)["loss"]
  energy = report.first_pass[second]["output_energy"]
  measured = []
  for k in range(1, 8):  # the grid of 10-90% of 8 states hits every count
    cut = nnx.clone(dense)
    keep = np.zeros(8, bool)
    keep[np.argsort(-energy, kind="stable")[:k]] = True
    prunable_layers(cut)[second].mask_states(keep)
    measured.append(evaluate(cut, windows, 8)["loss"] - base)
  expected = np.maximum.accumulate((measured + [0.0])[::-1])[::-1]  # non-increasing in k
  np.testing.assert_allclose(report.layer_costs[second][1:], expected, rtol=1e-4, atol=1e-6)
  assert np.isinf(report.layer_costs[second][0]) and sum(report.per_layer()) == 8
  costs = report.layer_costs
  k0 = report.per_layer()[0]
  assert costs[first][k0] + costs[second][8 - k0] == pytest.approx(
    min(costs[first][a] + costs[second][8 - a] for a in range(1, 8))
  )


def test_bad_options_say_what_to_do(windows):
  with pytest.raises(ValueError, match="allocation"):
    lm_prune.prune_lm(_model(1), 0.5, allocation="layerwise", calibration=windows)
  with pytest.raises(ValueError, match="calibration"):
    lm_prune.prune_lm(_model(1), 0.5, criterion="calibrated")
  with pytest.raises(ValueError, match="loss_fn"):
    lm_prune.prune_lm(_model(1), 0.5, criterion="magnitude", allocation="measured")


def test_pruned_saved_and_reloaded_lm_has_the_same_perplexity(windows, tmp_path):
  from last_nnx.lm import hub

  model = _model(3)
  report = lm_prune.prune_lm(
    model,
    0.5,
    criterion="calibrated",
    allocation="global",
    sequential=True,
    calibration=windows,
    batch_size=8,
  )
  assert len(set(report.per_layer())) > 1  # ragged: both layouts are exercised
  before = evaluate(model, windows[:4])
  for fmt, layout in (("transformers", "padded"), ("mamba_ssm", "native")):
    loaded = hub.load_pretrained(
      hub.save_pretrained(model, tmp_path / f"{fmt}-{layout}", format=fmt, layout=layout)
    )
    assert loaded.state_sizes() == model.state_sizes() == tuple(report.per_layer())
    after = evaluate(loaded, windows[:4])
    np.testing.assert_allclose(after["perplexity"], before["perplexity"], rtol=1e-6)


def test_perplexity_curves_rows_table_and_plot(windows, tmp_path):
  from last_nnx.sweeps import lm as lm_sweep

  model = _model(2)
  rows = lm_sweep.curves(
    model,
    windows,
    windows[:4],
    ratios=(0.25, 0.5),
    seeds=2,
    methods=("calibrated/global/seq", "random/uniform"),
    bytes_per_token=1.0,
  )
  assert len(rows) == 1 + 2 + 2 * 2 and rows[0]["method"] == "dense"
  for r in rows:
    np.testing.assert_allclose(r["bits_per_byte"], r["loss"] / np.log(2))
  assert {r["method"] for r in rows} == {"dense", "calibrated/global/seq", "random/uniform"}
  assert all(
    r["per_layer"] == [6, 6] for r in rows if r["method"] == "random/uniform" and r["ratio"] == 0.25
  )
  text = lm_sweep.table(rows, "bits_per_byte")
  assert "random/uniform" in text and "±" in text and "50%" in text
  assert "calibrated/global/seq | 50%" in lm_sweep.allocation_table(rows, ratios=(0.5,))
  assert (tmp_path / "c.png").exists() is False
  lm_sweep.plot(rows, str(tmp_path / "c.png"), key="bits_per_byte")
  lm_sweep.plot(rows, str(tmp_path / "d.png"), key="bits_per_byte", over_dense=True)
  assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "d.png").stat().st_size > 0
  assert "every method pruned the ratio asked" in lm_sweep.achieved_table(rows)
  short = [  # as if uniform's floor had pruned 31.25% where 25% was asked
    {**r, "ratio_achieved": 0.3125} if r["method"] == "random/uniform" and r["ratio"] == 0.25 else r
    for r in rows
  ]
  assert "| random/uniform | 31.2% | 50.0% |" in lm_sweep.achieved_table(short)
  with pytest.raises(ValueError, match="criterion/allocation"):
    lm_sweep.parse_method("calibrated/layerwise")


def test_max_drop_search_stays_within_its_perplexity_tolerance_on_val(windows):
  from last_nnx.sweeps import lm as lm_sweep

  model, val = _model(2), windows[:4]
  for tolerance in (0.5, 3.0):
    found = lm_sweep.max_drop(
      model, "calibrated/global", windows, val, tolerance, step=0.25, bisections=2
    )
    assert found["perplexity"] <= found["dense"] * (1 + tolerance / 100) + 1e-9
    # Every ratio tried above the one found was outside the tolerance.
    assert all(p > found["limit"] for r, p in found["tried"] if r > found["ratio"])
    pruned, _ = lm_sweep.prune_point(model, "calibrated/global", found["ratio"], windows)
    assert evaluate(pruned, val)["perplexity"] == pytest.approx(found["perplexity"], rel=1e-6)


def test_distillation_moves_the_pruned_student_towards_the_teacher(windows):
  from last_nnx.lm import distill

  teacher, student = _model(2, seed=1), _model(2)  # a teacher the student does not match
  lm_prune.prune_lm(student, 0.5, criterion="calibrated", calibration=windows, batch_size=8)
  # Four rows, the fine-tuning batch: the teacher's logits here are the jitted forward
  # finetune compiles for its batches (an eager forward compiles op by op).
  sizes, rows = student.state_sizes(), windows[:4]

  def kl():
    return float(distill.kl_loss(distill._logits(student, rows[:, :-1]), teacher_logits))

  teacher_logits = distill._logits(teacher, rows[:, :-1])

  before = kl()
  history = distill.finetune(
    student, rows, teacher=teacher, steps=12, lr=3e-3, batch_size=4, log_every=6
  )
  assert [s for s, _ in history] == [6, 12]
  assert kl() < 0.9 * before
  assert student.state_sizes() == sizes  # still pruned
  assert float(
    distill.kl_loss(teacher_logits, distill._logits(teacher, rows[:, :-1]))
  ) == pytest.approx(0.0, abs=1e-6)
