"""Mamba-2 in the training loop: a scheduled calibrated event, the watch, a resume, `settled`.

The ListOps smoke config with one Mamba-2 layer (N = 8 states in one group): epoch 1,
its pruning event (``calibrated``, compact), a fine-tuning epoch, epochs 2 and 3. The
watch follows the data-free ``magnitude``. Slow (three short runs, about 2.5 minutes on a
loaded 2-core machine): ``pytest -m slow tests/test_mamba2_train.py``.
"""

import json

import pytest

from last_nnx.train import loop
from tests.test_train_loop import _cache, _smoke, interrupted_copy  # noqa: F401 (_cache: autouse)

pytestmark = pytest.mark.slow

OVERRIDES = {"model.n_layers": 1, "train.epochs": 3, "watch.criterion": "magnitude"}


def test_event_watch_and_resume_of_pruned_shapes(tmp_path):
  config = _smoke("listops", "mamba2", tmp_path, **OVERRIDES)
  assert config.model.ssm == "mamba2" and config.pruning.criterion == "calibrated"
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  (event,) = full["pruning_events"]
  assert event["status"] == "applied"
  assert full["states_final"] == {"blocks.0.ssm": 4} and full["states_initial"] == {
    "blocks.0.ssm": 8
  }
  # The watch scored every epoch with magnitude: 8 states before the event, 4 after.
  layouts = [w["layout"]["blocks.0.ssm"][1] for w in full["watch"]]
  assert (
    layouts[0] == 8
    and layouts[-1] == 4
    and all(w["criterion"] == "magnitude" for w in full["watch"])
  )
  with open(tmp_path / "full" / "summary.json") as f:
    assert json.load(f)["final"]["states"] == {"blocks.0.ssm": 4}

  # Killed after epoch 2's checkpoint (pruned shapes): the rerun resumes and matches.
  part = interrupted_copy(tmp_path / "full", tmp_path / "part")
  resumed = loop.train_and_evaluate(config, str(part))
  assert resumed["states_final"] == full["states_final"]
  assert resumed["pruning_events"] == full["pruning_events"]
  reference = {e["epoch"]: e for e in full["epochs"]}
  for e in resumed["epochs"]:
    for k in ("val/accuracy", "val/loss", "train/loss", "states/total"):
      assert e[k] == pytest.approx(reference[e["epoch"]][k], rel=1e-5, abs=1e-6), (e["epoch"], k)
  assert resumed["final"]["test"] == pytest.approx(full["final"]["test"], rel=1e-5)


def test_settled_schedule_watches_magnitude_and_prunes_once(tmp_path):
  """``settled`` on Mamba-2: the watch follows the data-free ``magnitude`` (``calibrated``
  needs data), and the one event (``calibrated``, at the keep set's settling or at the
  deadline) prunes to the target."""
  config = _smoke(
    "listops",
    "mamba2",
    tmp_path,
    **dict(
      OVERRIDES,
      **{
        "train.epochs": 4,
        "pruning.schedule": "settled",
        "pruning.settle_epochs": 1,
        "pruning.start_epoch": 2,
        "pruning.end_epoch": 3,
      },
    ),
  )
  summary = loop.train_and_evaluate(config, str(tmp_path / "run"))
  (event,) = summary["pruning_events"]
  assert event["status"] == "applied" and 2 <= event["train_epoch"] <= 3
  assert summary["states_final"] == {"blocks.0.ssm": 4}
  assert [w["criterion"] for w in summary["watch"]] == ["magnitude"] * len(summary["watch"])
  assert len(summary["watch"]) >= 4  # every training epoch (and the fine-tuning one)
