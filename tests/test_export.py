"""`last_nnx.export`: artifacts reloaded without this library reproduce its outputs."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx import export, pruning
from last_nnx.model import SequenceModel
from last_nnx.train import checkpoint
from tests.compiled import forward

BATCH, LENGTH, VOCAB, CLASSES = 3, 12, 9, 5

# Runs in a fresh interpreter: jax (and tensorflow) only. Reads the inputs, runs
# every artifact, writes the outputs.
RELOAD = r"""
import json, os, sys
import numpy as np
import jax
inputs_path, use_tf = sys.argv[1], sys.argv[2] == "1"
data = np.load(inputs_path)
x, lengths = data["inputs"], data["lengths"]

def run(out_dir, result_path):
  manifest = json.load(open(os.path.join(out_dir, "model.json")))

  def zeros_state(batch):
    return [np.zeros([batch] + s["shape"][1:], s["dtype"]) for s in manifest["step"]["args"][1:]]

  def stream(step):
    state, logits = zeros_state(x.shape[0]), []
    for t in range(x.shape[1]):
      outs = step(x[:, t], *state)
      logits.append(np.asarray(outs[0]))
      state = [np.asarray(o) for o in outs[1:]]
    return np.stack(logits, axis=1)

  results = {}
  fwd = jax.export.deserialize(bytearray(open(os.path.join(out_dir, "forward.jax"), "rb").read()))
  results["jax_forward"] = np.asarray(fwd.call(x, lengths))
  if manifest["streaming"]:
    step = jax.export.deserialize(bytearray(open(os.path.join(out_dir, "step.jax"), "rb").read()))
    results["jax_step"] = stream(step.call)
  if use_tf:
    import tensorflow as tf
    loaded = tf.saved_model.load(os.path.join(out_dir, "saved_model"))
    results["tf_forward"] = loaded.signatures["forward"](
        inputs=tf.constant(x), lengths=tf.constant(lengths))["logits"].numpy()
    if manifest["streaming"]:
      names = [s["name"] for s in manifest["step"]["outputs"]]
      def tf_step(x_t, *state):
        outs = loaded.step(tf.constant(x_t), *[tf.constant(s) for s in state])
        return [outs[n].numpy() for n in names]
      results["tf_step"] = stream(tf_step)
  assert not any(m.split(".")[0] == "last_nnx" for m in sys.modules), "imported last_nnx"
  np.savez(result_path, **results)

for out_dir, result_path in zip(sys.argv[3::2], sys.argv[4::2]):
  run(out_dir, result_path)
"""


def _model(state_size=16, bidirectional=False, seed=0) -> SequenceModel:
  model = SequenceModel(
    n_classes=CLASSES,
    d_model=8,
    n_layers=2,
    ssm="s5",
    ssm_config=dict(state_size=state_size, blocks=2, bidirectional=bidirectional),
    vocab_size=VOCAB,
    rngs=nnx.Rngs(seed),
  )
  model.train()
  x, lengths = _inputs(seed + 1)
  forward(model, x, lengths)  # non-trivial BatchNorm statistics
  model.eval()
  return model


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, VOCAB, (BATCH, LENGTH)).astype(np.int32)
  return x, np.array([LENGTH, 5, 1], np.int32)


META = dict(
  model_spec=dict(n_classes=CLASSES, vocab_size=VOCAB, in_dim=1, retrieval=False),
  run=dict(events=[dict(epoch=1, ratio=0.5)]),
)


def _reload_all(tmp_path, out_dirs, use_tf):
  """Every artifact folder in ``out_dirs`` run by one fresh interpreter (one start-up)."""
  x, lengths = _inputs(seed=3)
  np.savez(tmp_path / "inputs.npz", inputs=x, lengths=lengths)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  results = [tmp_path / f"result{i}.npz" for i in range(len(out_dirs))]
  args = [str(a) for pair in zip(out_dirs, results) for a in pair]
  proc = subprocess.run(
    [sys.executable, "-c", RELOAD, str(tmp_path / "inputs.npz"), "1" if use_tf else "0", *args],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return x, lengths, [dict(np.load(r)) for r in results]


def _reload(tmp_path, out_dir, use_tf):
  x, lengths, (got,) = _reload_all(tmp_path, [out_dir], use_tf)
  return x, lengths, got


def _streamed(model, x):
  state, logits = model.init_state(x.shape[0]), []
  step = nnx.jit(lambda m, s, x_t: m.step(s, x_t))
  for t in range(x.shape[1]):
    state, out = step(model, state, jnp.asarray(x[:, t]))
    logits.append(np.asarray(out))
  return np.stack(logits, axis=1)


def _export_pruned_run(tmp_path, formats):
  """Masked-pruned checkpoint -> `export_workdir` (the CLI's path)."""
  model = _model()
  pruning.prune(model, 0.5, criterion="last", mode="mask")
  config = dict(
    seed=0,
    model=dict(
      n_layers=2, d_model=8, ssm="s5", ssm_config=dict(state_size=16, blocks=2, bidirectional=False)
    ),
  )
  checkpoint.save_model(str(tmp_path / "run"), model, config, META)
  out = tmp_path / "exported"
  manifest = export.export_workdir(
    str(tmp_path / "run"), str(out), which="latest", seq_len=LENGTH, formats=formats
  )
  on_disk = json.load(open(out / "model.json"))
  assert on_disk["states_total"] == 8 and on_disk["pruning_history"] == META["run"]["events"]
  # Exported compacted: 16 stored states -> 8 kept, split across the layers.
  assert sum(v["state_shape"][0] for v in on_disk["layers"].values()) == 8
  assert [s["shape"] for s in on_disk["step"]["args"][1:3]] == [
    ["b", v["state_shape"][0], 2] for v in on_disk["layers"].values()
  ]
  assert manifest["streaming"]
  return model, out


def _check_reloaded(model, got, x, lengths, prefix):
  expected = np.asarray(forward(model, x, lengths))
  np.testing.assert_allclose(got[f"{prefix}_forward"], expected, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got[f"{prefix}_step"], _streamed(model, x), rtol=1e-5, atol=1e-5)
  return expected


def _selective_model_exported(out_dir):
  """Mamba-2: a masked-pruned model exports compacted; its dict step state (conv window and
  head states per layer) crosses the boundary as named float32 leaves and streams."""
  model = SequenceModel(
    n_classes=CLASSES,
    d_model=8,
    n_layers=2,
    ssm="mamba2",
    ssm_config=dict(state_size=4, head_dim=4, n_groups=2, chunk_size=4, bidirectional=False),
    vocab_size=VOCAB,
    rngs=nnx.Rngs(0),
  )
  model.eval()
  pruning.prune(model, 0.5, criterion="magnitude", mode="mask")
  manifest = export.export_model(model, META, str(out_dir), seq_len=LENGTH, formats=("stablehlo",))
  names = [s["name"] for s in manifest["step"]["args"][1:]]
  assert names[:4] == ["ssm_0_conv", "ssm_0_ssm", "ssm_1_conv", "ssm_1_ssm"]
  # Compacted: every layer's head states have its kept width (N = 4 -> at most 3 live).
  widths = [s["shape"][2] for s in manifest["step"]["args"][1:] if s["name"].endswith("_ssm")]
  assert widths == [v["state_shape"][1] for v in manifest["layers"].values()] and max(widths) < 4
  return model


def test_stablehlo_and_selective_models_reload_without_last_nnx(tmp_path):
  """S5 (through `export_workdir`) and Mamba-2 artifacts, reloaded by one fresh interpreter
  (jax only): forward and streamed step reproduce the library's outputs."""
  model, out = _export_pruned_run(tmp_path, ("stablehlo",))
  assert sorted(os.listdir(out)) == ["forward.jax", "model.json", "step.jax"]
  selective = _selective_model_exported(tmp_path / "selective")
  x, lengths, (got, got_selective) = _reload_all(
    tmp_path, [out, tmp_path / "selective"], use_tf=False
  )
  expected = _check_reloaded(model, got, x, lengths, "jax")
  # The step's logits at step t are the forward's on the prefix of length t + 1.
  np.testing.assert_allclose(
    got["jax_step"][np.arange(BATCH), lengths - 1], expected, rtol=1e-4, atol=1e-5
  )
  _check_reloaded(selective, got_selective, x, lengths, "jax")


@pytest.mark.slow  # ~20-50 s: TensorFlow imported twice (export, reload)
def test_saved_model_reloads_without_last_nnx(tmp_path):
  model, out = _export_pruned_run(tmp_path, export.FORMATS)
  assert sorted(os.listdir(out)) == ["forward.jax", "model.json", "saved_model", "step.jax"]
  x, lengths, got = _reload(tmp_path, out, use_tf=True)
  _check_reloaded(model, got, x, lengths, "jax")
  _check_reloaded(model, got, x, lengths, "tf")


def _param_bytes(model) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def test_compacted_model_exports_smaller(tmp_path):
  dense = _model(state_size=64)
  pruned = nnx.clone(dense)
  pruning.prune(pruned, 0.5, criterion="last", mode="mask")
  sizes = {}
  for name, model, compact in (
    ("dense", dense, True),
    ("pruned", pruned, True),
    ("masked_kept", pruned, False),
  ):
    manifest = export.export_model(
      model,
      META,
      str(tmp_path / name),
      seq_len=LENGTH,
      formats=("stablehlo",),
      platforms=("cpu",),
      compact=compact,
    )
    sizes[name] = (
      manifest["files"]["forward.jax"],
      manifest["files"]["step.jax"],
      sum(np.prod(s["shape"][1:]) for s in manifest["step"]["args"][1:3]),
    )
  # The weights are embedded in the artifacts: removing half the states removes
  # their parameters' bytes from both files.
  removed = _param_bytes(dense) - _param_bytes(export.compact_masked(pruned))
  assert removed > 0
  assert sizes["dense"][0] - sizes["pruned"][0] >= 0.5 * removed
  assert sizes["dense"][1] - sizes["pruned"][1] >= 0.5 * removed
  assert sizes["pruned"][2] == sizes["dense"][2] // 2
  # Without compaction the masked model keeps its dense size.
  assert sizes["masked_kept"][2] == sizes["dense"][2]
  assert sizes["masked_kept"][0] > 0.95 * sizes["dense"][0]


def test_bidirectional_exports_forward_only(tmp_path):
  model = _model(bidirectional=True)
  manifest = export.export_model(
    model, META, str(tmp_path / "bi"), seq_len=LENGTH, formats=("stablehlo",), platforms=("cpu",)
  )
  assert not manifest["streaming"] and "bidirectional" in manifest["step_refused"]
  assert sorted(os.listdir(tmp_path / "bi")) == ["forward.jax", "model.json"]
  # Reloaded in process (test_stablehlo_and_selective_models_reload_without_last_nnx
  # reloads in a fresh interpreter).
  with open(tmp_path / "bi" / "forward.jax", "rb") as f:
    fwd = jax.export.deserialize(bytearray(f.read()))
  x, lengths = _inputs(seed=3)
  np.testing.assert_allclose(
    np.asarray(fwd.call(x, lengths)),
    np.asarray(forward(model, x, lengths)),
    rtol=1e-5,
    atol=1e-5,
  )


def test_symbolic_batch(tmp_path):
  """One artifact serves any batch size."""
  model = _model()
  manifest = export.export_model(
    model, META, str(tmp_path / "e"), seq_len=LENGTH, formats=("stablehlo",), platforms=("cpu",)
  )
  assert manifest["forward"]["args"][0]["shape"] == ["b", LENGTH]
  with open(tmp_path / "e" / "forward.jax", "rb") as f:
    fwd = jax.export.deserialize(bytearray(f.read()))
  for batch in (1, 7):
    x = np.random.default_rng(batch).integers(0, VOCAB, (batch, LENGTH)).astype(np.int32)
    lengths = np.full(batch, LENGTH, np.int32)
    np.testing.assert_allclose(
      np.asarray(fwd.call(x, lengths)),
      np.asarray(forward(model, x, lengths)),
      rtol=1e-5,
      atol=1e-5,
    )


def test_unknown_format_fails(tmp_path):
  with pytest.raises(ValueError, match="unknown export format"):
    export.export_model(_model(), META, str(tmp_path), seq_len=LENGTH, formats=("onnx",))


def test_retrieval_exports_forward_only(tmp_path):
  model = SequenceModel(
    n_classes=2,
    d_model=8,
    n_layers=1,
    ssm="s5",
    ssm_config=dict(state_size=4, bidirectional=False),
    vocab_size=VOCAB,
    retrieval=True,
    rngs=nnx.Rngs(0),
  )
  model.eval()
  meta = dict(model_spec=dict(n_classes=2, vocab_size=VOCAB, in_dim=1, retrieval=True))
  manifest = export.export_model(
    model, meta, str(tmp_path), seq_len=LENGTH, formats=("stablehlo",), platforms=("cpu",)
  )
  assert not manifest["streaming"] and "retrieval" in manifest["step_refused"]
  assert manifest["forward"]["args"][0]["shape"] == ["b", 2, LENGTH]
  with open(tmp_path / "forward.jax", "rb") as f:
    fwd = jax.export.deserialize(bytearray(f.read()))
  x = np.random.default_rng(0).integers(0, VOCAB, (3, 2, LENGTH)).astype(np.int32)
  lengths = np.array([[LENGTH, 3], [1, LENGTH], [5, 5]], np.int32)
  np.testing.assert_allclose(
    np.asarray(fwd.call(x, lengths)),
    np.asarray(forward(model, x, lengths)),
    rtol=1e-5,
    atol=1e-5,
  )


def test_continuous_inputs_export(tmp_path):
  """Feature inputs: forward (b, L, F) and step x_t (b, F), reloaded in process."""
  model = SequenceModel(
    n_classes=3,
    d_model=8,
    n_layers=1,
    ssm="lru",
    ssm_config=dict(state_size=6),
    in_dim=2,
    pooling="last",
    rngs=nnx.Rngs(0),
  )
  model.eval()
  meta = dict(model_spec=dict(n_classes=3, vocab_size=None, in_dim=2, retrieval=False))
  manifest = export.export_model(
    model, meta, str(tmp_path), seq_len=LENGTH, formats=("stablehlo",), platforms=("cpu",)
  )
  assert manifest["input"]["kind"] == "features"
  assert [a["shape"] for a in manifest["step"]["args"]] == [["b", 2], ["b", 6, 2], ["b"]]
  load = lambda name: jax.export.deserialize(bytearray((tmp_path / name).read_bytes()))
  x = np.random.default_rng(0).normal(size=(2, LENGTH, 2)).astype(np.float32)
  lengths = np.full(2, LENGTH, np.int32)
  np.testing.assert_allclose(
    np.asarray(load("forward.jax").call(x, lengths)),
    np.asarray(forward(model, x, lengths)),
    rtol=1e-5,
    atol=1e-5,
  )
  step = load("step.jax")
  state = [np.zeros([2] + a["shape"][1:], a["dtype"]) for a in manifest["step"]["args"][1:]]
  for t in range(LENGTH):
    logits, *state = step.call(x[:, t], *state)
  np.testing.assert_allclose(
    np.asarray(logits),
    np.asarray(forward(model, x, lengths)),
    rtol=1e-4,
    atol=1e-5,
  )
