"""Data-parallel training over 4 (virtual CPU) devices matches one device."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = r"""
import json, sys
sys.path.insert(0, {root!r})
import jax
from tests.test_train_loop import get_config
from last_nnx.train import loop
assert jax.device_count() == 4, jax.devices()
out = {{}}
for n in (4, 1):
  config = get_config("listops", "s5,smoke")
  config.data.cache_dir = {cache!r}
  config.train.num_devices = n
  config.train.batch_size = {batch}
  config.train.eval_batch_size = 32
  summary = loop.train_and_evaluate(config, {workdir!r} + f"/n{{n}}")
  out[n] = summary
print("RESULT" + json.dumps(out))
"""


def _run(tmp_path, batch):
  script = SCRIPT.format(root=ROOT, cache=str(tmp_path / "cache"), workdir=str(tmp_path),
                         batch=batch)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600)


def test_sharded_training_matches_single_device_across_a_pruning_event(tmp_path):
  done = _run(tmp_path, batch=16)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads(done.stdout.split("RESULT")[-1])
  one, four = result["1"], result["4"]
  assert [e["status"] for e in four["pruning_events"]] == ["applied"]
  assert one["states_final"] == four["states_final"]
  # Same seed, same global batches: losses agree up to float reassociation of the
  # cross-device reductions (tolerance 1e-4 relative).
  for a, b in zip(one["epochs"], four["epochs"]):
    for key in ("train/loss", "val/loss", "val/accuracy"):
      assert abs(a[key] - b[key]) <= 1e-4 * max(1.0, abs(a[key])), (a["epoch"], key, a[key], b[key])


def test_batch_must_divide_across_devices(tmp_path):
  done = _run(tmp_path, batch=18)
  assert done.returncode != 0
  assert "must divide evenly across 4 devices" in done.stderr
