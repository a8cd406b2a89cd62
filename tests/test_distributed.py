"""Data-parallel training over 4 (virtual CPU) devices matches one device."""

import json
import os
import subprocess
import sys

import pytest

from tests.session_once import once_per_session
from tests.test_train_loop import base_run  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, {root!r})
os.environ["LAST_NNX_CACHE"] = {cache!r}
import jax
from tests.test_train_loop import base_run_config
from last_nnx.train import loop
assert jax.device_count() == 4, jax.devices()
out = {{}}
for batch in (18, 16):
  config = base_run_config()
  config.train.num_devices = 4
  config.train.batch_size = batch
  try:
    out[batch] = loop.train_and_evaluate(config, {workdir!r} + f"/b{{batch}}")
  except ValueError as e:
    out["error"] = str(e)
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="session")
def four(tmp_path_factory):
  """test_train_loop's `base_run` config (one layer, dropout on, BatchNorm recalibrated at
  the event) on 4 devices, in one interpreter with 4 virtual devices, after batch 18 (which
  is refused): its summary under '16', the refusal under 'error'. Run once per session
  (the first xdist worker to need it runs it; a module fixture ran once per worker)."""

  def fill(root):
    script = SCRIPT.format(root=ROOT, cache=str(root / "cache"), workdir=str(root))
    # Keep conftest's XLA flags (backend optimizations off: compiles several times faster).
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), PYTHONPATH=ROOT)
    done = subprocess.run(
      [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "result.json").write_text(done.stdout.split("RESULT")[-1])

  root = once_per_session(tmp_path_factory, "distributed-four", fill)
  return json.loads((root / "result.json").read_text())


def test_sharded_training_matches_single_device_across_a_pruning_event(four, base_run):
  # The single-device run is test_train_loop's base_run (one device, trained once per
  # session): a 1-device run inside the 4-device interpreter would compile its own steps.
  one, four = base_run[1], four["16"]
  assert one["steps"] == four["steps"] == 24 and len(four["epochs"]) == 4
  assert [e["status"] for e in four["pruning_events"]] == ["applied"]
  assert one["states_final"] == four["states_final"]
  # Same seed, same global batches: losses agree up to float reassociation of the
  # cross-device reductions (tolerance 1e-4 relative).
  for a, b in zip(one["epochs"], four["epochs"]):
    for key in ("train/loss", "val/loss", "val/accuracy"):
      assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (a["epoch"], key, a[key], b[key])


def test_batch_must_divide_across_devices(four):
  assert "must divide evenly across 4 devices" in four["error"]


def test_every_process_runs_the_same_number_of_eval_steps(tmp_path):
  """A multi-host eval step is a collective: a process whose shard of the split runs out
  first must still take part, with fully masked batches, or the others wait forever."""
  import numpy as np

  from last_nnx import data
  from last_nnx.train import steps as train_steps

  c = data.default_data_config("listops")
  c.cache_dir = str(tmp_path / "cache")
  c.synthetic.update(dict(n_train=24, n_val=10, n_test=10, seq_len=64, max_length=64))
  counts, masked_rows, labels = [], 0, []
  for process in range(4):  # 10 val examples over 4 processes: shards of 3, 3, 2, 2
    task = data.build_task(
      c, batch_size=2, eval_batch_size=2, process_index=process, process_count=4
    )
    steps = list(train_steps.eval_batches(task, "val"))
    counts.append(len(steps))
    for (inputs, lengths, y), mask in steps:
      assert inputs.shape[0] == lengths.shape[0] == y.shape[0] == mask.shape[0] == 2
      masked_rows += int(mask.sum())
      labels.extend(y[mask])
  assert counts == [2, 2, 2, 2]  # shards of 2 still step twice (the second fully masked)
  assert masked_rows == 10  # every example counted exactly once
  np.testing.assert_array_equal(np.sort(labels), np.sort(np.asarray(task.splits["val"].labels)))
