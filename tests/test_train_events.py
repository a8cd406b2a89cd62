"""Scheduled pruning events with calibrated criteria: batches from the loop's task."""

import numpy as np

from last_nnx import data
from last_nnx.train import events, loop, streams
from tests.test_train_loop import _base, _cache  # noqa: F401 (autouse fixture)


def test_calibration_batches_are_the_same_on_every_process(tmp_path):
  c = data.default_data_config("listops")
  c.cache_dir = str(tmp_path / "cache")
  c.synthetic.update(dict(n_train=40, n_val=8, n_test=8, seq_len=64, max_length=64))
  tasks = [
    data.build_task(c, batch_size=4, eval_batch_size=4, process_index=i, process_count=2)
    for i in range(2)
  ]
  first, second = (list(streams.calibration(t, 3)) for t in tasks)
  assert len(first) == 5  # the whole train split (40 rows) in global batches of 2 x 4
  for a, b in zip(first, second):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
  other_epoch = next(streams.calibration(tasks[0], 4))
  assert not np.array_equal(other_epoch[0], first[0][0])


def test_scheduled_event_with_the_calibrated_criterion(tmp_path, monkeypatch):
  # test_train_loop's BASE config: its compiled train and eval steps are reused.
  config = _base(tmp_path, **{"pruning.criterion": "calibrated", "pruning.calibration_batches": 2})
  seen = []
  real_prune = events.pruning.prune

  def prune(model, ratio, **kw):
    batches = list(kw["calibration"])
    seen.append((kw["options"].calibration_batches, batches[0][0].shape))
    return real_prune(model, ratio, **dict(kw, calibration=iter(batches)))

  monkeypatch.setattr(events.pruning, "prune", prune)
  summary = loop.train_and_evaluate(config, str(tmp_path))
  assert seen and seen[0][0] == 2 and seen[0][1][0] == config.train.batch_size
  assert summary["pruning_events"][0]["status"] == "applied"
  assert sum(summary["states_final"].values()) < sum(summary["states_initial"].values())
