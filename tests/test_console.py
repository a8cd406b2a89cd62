"""What a run tells its user: the console's story, honest estimates, a named dense baseline."""

import json
import logging as pylogging
import os

import numpy as np
import pytest
from absl import logging
from flax import nnx

from last_nnx.train import baseline, checkpoint, console, loop
from last_nnx.train import summary as summary_lib
from tests.test_train_loop import _base, get_config


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
  monkeypatch.setenv("LAST_NNX_CACHE", str(tmp_path_factory.getbasetemp() / "data-cache"))


def _record(pathname, level=pylogging.INFO, **extra):
  record = pylogging.LogRecord("absl", level, pathname, 1, "msg", (), None)
  record.__dict__.update(extra)
  return record


def test_story_filter_keeps_the_story_and_drops_the_detail():
  story = console.StoryFilter()
  ours = os.path.join(console._PACKAGE, "train", "loop.py")
  assert story.filter(_record(ours))
  assert not story.filter(_record(ours, **console.DETAIL))
  clu = "/venv/site-packages/clu/metric_writers/logging_writer.py"  # histograms, hparams
  assert not story.filter(_record(clu))
  assert not story.filter(_record("/venv/site-packages/jax/_src/xla_bridge.py"))
  assert story.filter(_record(clu, level=pylogging.WARNING))  # warnings from anywhere
  assert not story.filter(_record(ours, level=pylogging.DEBUG))


def test_route_logs_sends_everything_to_the_log_file(tmp_path):
  handler, level = logging.get_absl_handler(), logging.get_absl_logger().level
  logging.set_verbosity(logging.INFO)  # absl's level once a program has parsed its flags
  try:
    path = console.route_logs(str(tmp_path), "story")
    assert sum(isinstance(f, console.StoryFilter) for f in handler.filters) == 1
    console.detail("a detail line %d", 7)
    logging.info("a story line")
    for h in pylogging.getLogger().handlers:
      h.flush()
    text = open(path).read()
    assert "a detail line 7" in text and "a story line" in text
    again = console.route_logs(str(tmp_path / "second"), "all")  # a second run: moved, unfiltered
    assert not any(isinstance(f, console.StoryFilter) for f in handler.filters)
    assert os.path.dirname(again) == str(tmp_path / "second")
    assert sum(getattr(h, "last_nnx_log_file", False) for h in pylogging.getLogger().handlers) == 1
    with pytest.raises(ValueError, match="train.console='loud'"):
      console.route_logs(str(tmp_path), "loud")
  finally:
    logging.get_absl_logger().setLevel(level)  # as it was (NOTSET: caplog sets the level)
    for f in [f for f in handler.filters if isinstance(f, console.StoryFilter)]:
      handler.removeFilter(f)
    root = pylogging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "last_nnx_log_file", False)]:
      root.removeHandler(h)
      h.close()


def _fake_summary(**over):
  s = dict(
    states_initial={"a": 8, "b": 8},
    states_final={"a": 3, "b": 5},
    synthetic_data=True,
    ratio_achieved=0.5,
    pruning_events=[{"status": "applied"}],
    final=dict(val={"accuracy": 0.274}, test={"accuracy": 0.26}, epochs=9),
    before_first_event=dict(val={"accuracy": 0.196}, states={"a": 8, "b": 8}, epoch=4),
    dense_baseline=None,
  )
  s.update(over)
  return s


def test_result_table_names_what_each_accuracy_is():
  table = summary_lib.result_table(_fake_summary(), "last").splitlines()
  assert "SYNTHETIC" in table[0] and len(table) == 4  # title, header, two models
  assert table[2].startswith("before the first event (epoch 4; not a dense baseline)")
  assert "19.60%" in table[2] and table[2].endswith("16")
  assert table[3].startswith("pruned (last, 50% removed, 9 epochs)")
  assert "27.40%" in table[3] and "26.00%" in table[3] and table[3].endswith("8 of 16")
  dense = dict(val={"accuracy": 0.3}, test={"accuracy": 0.31}, states={"a": 8, "b": 8}, epochs=9)
  table = summary_lib.result_table(_fake_summary(dense_baseline=dense), "last").splitlines()
  assert table[2].startswith("dense, no pruning (9 epochs, same init)") and "31.00%" in table[2]


def test_baseline_config_trains_as_long_without_pruning():
  config = get_config("listops", "s5,demo")
  assert config.pruning.dense_baseline  # on in the demo preset
  plan_epochs = len(loop.epoch_plan(config))
  dense = baseline.baseline_config(config, plan_epochs)
  assert dense.pruning.schedule == "none" and not dense.pruning.dense_baseline
  assert dense.train.epochs == plan_epochs == 9  # 6 training + 3 fine-tuning epochs
  assert dense.seed == config.seed and dense.model == config.model
  assert not get_config("listops", "s5").pruning.dense_baseline  # off for long runs


def test_dense_baseline_forks_from_the_pruned_run_and_equals_one_from_scratch(
  tmp_path, monkeypatch
):
  config = _base(tmp_path, **{"pruning.dense_baseline": True})  # BASE's compiled steps
  trained, train_epoch = [], loop.train_epoch
  monkeypatch.setattr(
    loop,
    "train_epoch",
    lambda ctx, run: trained.append(run.state.epoch_index) or train_epoch(ctx, run),
  )
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  # 4 epochs pruned (the event after epoch 1), then the baseline's epochs 2-4 only.
  assert trained == [0, 1, 2, 3, 1, 2, 3]
  d = summary["dense_baseline"]
  assert d["epochs"] == len(loop.epoch_plan(config)) == 4  # 3 training + 1 fine-tuning
  assert d["states"] == summary["states_initial"] != summary["states_final"]
  assert "accuracy" in d["val"] and "accuracy" in d["test"]
  with open(tmp_path / "run" / "summary.json") as f:
    assert json.load(f)["dense_baseline"] == d
  with open(tmp_path / "run" / baseline.BASELINE_DIR / "summary.json") as f:
    forked = json.load(f)
  assert forked["pruning_events"] == [] and forked["steps"] == summary["steps"]
  # The event follows epoch 1: the baseline trained only epochs 2-4 (its first is the
  # pruned run's record).
  assert forked["epochs"][0] == summary["epochs"][0]
  # The same baseline trained from scratch: the same run, to float tolerance.
  scratch = loop.train_and_evaluate(
    baseline.baseline_config(config, 4), str(tmp_path / "dense"), final_table=False
  )
  assert scratch["final"]["val"] == pytest.approx(forked["final"]["val"], abs=1e-5)
  assert [e["train/loss"] for e in scratch["epochs"]] == pytest.approx(
    [e["train/loss"] for e in forked["epochs"]], rel=1e-5
  )
  params = [
    nnx.to_flat_state(nnx.state(checkpoint.load_model(str(w))[0], nnx.Param))
    for w in (tmp_path / "run" / baseline.BASELINE_DIR, tmp_path / "dense")
  ]
  assert [k for k, _ in params[0]] == [k for k, _ in params[1]]
  for (key, x), (_, y) in zip(*params):
    np.testing.assert_allclose(
      np.asarray(x.get_value()), np.asarray(y.get_value()), rtol=1e-5, atol=1e-6, err_msg=str(key)
    )


@pytest.mark.slow  # ~22 s cold: a timing check (the demo model trained), run with make test-all
def test_estimates_are_within_2x_of_the_time_the_run_took(tmp_path):
  """The demo's model (4 layers, H = 64, 32 states) on a shorter synthetic ListOps: the
  estimate after a few completed steps against the time the remaining training steps took,
  the one after the first epoch against the wall time of the rest of the run (the old
  estimate timed dispatches: 10-16x short)."""
  config = get_config("listops", "s5,demo")
  config.data.cache_dir = os.environ["LAST_NNX_CACHE"]
  config.data.synthetic.update(n_train=640, n_val=64, n_test=64)
  config.train.epochs = 2
  config.pruning.update(
    schedule="one_shot",
    start_epoch=1,
    end_epoch=-1,
    finetune_epochs=0,
    mode="mask",
    dense_baseline=False,
  )
  config.watch.enabled = False
  timing = loop.train_and_evaluate(config, str(tmp_path))["timing"]
  assert timing["early"]["step"] == 5 and timing["after_first_epoch"]["epochs_left"] == 1
  for name in ("early", "after_first_epoch"):
    predicted, actual = timing[name]["predicted_s"], timing[name]["actual_s"]
    assert actual / 2 <= predicted <= 2 * actual, (name, timing)
