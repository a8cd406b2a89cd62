"""Mamba-2 LM checkpoints: golden logits from transformers, round trips, bad inputs.

The fixture (tests/fixtures/mamba2_golden, written by scripts/make_mamba2_golden.py from
transformers' own Mamba2ForCausalLM on CPU torch): two tiny models (one group and tied;
two groups, untied, with a binding dt clamp), each saved in both key layouts.
"""

import json
import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from last_nnx import pruning
from last_nnx.lm import generate, hub
from last_nnx.lm.convert import CheckpointError
from tests.compiled import forward

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "mamba2_golden"
CASES = [(name, fmt) for name in ("g1_tied", "g2_untied") for fmt in ("mamba_ssm", "transformers")]


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(FIXTURE / "golden.npz"))


@pytest.fixture(scope="module")
def loaded():
  return {case: hub.load_pretrained(FIXTURE / f"{case[0]}_{case[1]}") for case in CASES}


def _logits(model, tokens):
  # Jitted: an eager forward compiles op by op; models of one layout share one program.
  return np.asarray(forward(model, jnp.asarray(tokens)))


@pytest.mark.parametrize("name,fmt", CASES, ids=[f"{n}-{f}" for n, f in CASES])
def test_golden_logits_and_greedy_generation(loaded, golden, name, fmt):
  model = loaded[(name, fmt)]
  assert model.config.tie_embeddings == (name == "g1_tied")
  assert model.config.n_groups == (1 if name == "g1_tied" else 2)
  tokens, ref = golden[f"{name}/tokens"], golden[f"{name}/logits"]
  assert tokens.shape[1] > model.config.chunk_size
  err = np.abs(_logits(model, tokens) - ref).max() / np.abs(ref).max()
  assert err < 1e-4, err
  greedy = golden[f"{name}/greedy"]
  np.testing.assert_array_equal(generate(model, tokens[:, :12], greedy.shape[1]), greedy)


def test_prefill_and_steps_equal_the_forward_on_a_loaded_model(loaded, golden):
  model = loaded[("g2_untied", "transformers")]  # two groups and a binding dt clamp
  tokens = jnp.asarray(golden["g2_untied/tokens"])

  @nnx.jit
  def decode(model, prompt, rest):
    state, last = model.prefill(prompt)
    _, logits = jax.lax.scan(lambda s, t: model.step(s, t), state, rest.T)
    return jnp.concatenate([last[:, None], jnp.moveaxis(logits, 0, 1)], axis=1)

  np.testing.assert_allclose(
    np.asarray(decode(model, tokens[:, :33], tokens[:, 33:])),
    golden["g2_untied/logits"][:, 32:],
    rtol=1e-4,
    atol=1e-4,
  )


def _calibration(tokens):
  return [(jnp.asarray(tokens), jnp.full((tokens.shape[0],), tokens.shape[1]))]


@pytest.mark.parametrize("fmt,mode", [("mamba_ssm", "mask"), ("transformers", "compact")])
def test_round_trips_dense_and_pruned_uniformly(golden, tmp_path, fmt, mode):
  model = hub.load_pretrained(FIXTURE / f"g1_tied_{fmt}")  # one group: N = the kept count
  tokens = golden["g1_tied/tokens"]
  hub.save_pretrained(model, tmp_path / "dense", format=fmt)
  np.testing.assert_array_equal(
    _logits(hub.load_pretrained(tmp_path / "dense"), tokens), _logits(model, tokens)
  )
  pruning.prune(model, 0.5, criterion="uniform", calibration=_calibration(tokens), mode=mode)
  assert model.state_sizes() == ((8, 8) if mode == "mask" else (4, 4))  # masked: shapes kept
  hub.save_pretrained(model, tmp_path / "uniform", format=fmt, layout="native")
  raw = json.loads((tmp_path / "uniform" / "config.json").read_text())
  assert "last_nnx" not in raw  # a standard config with the smaller N
  assert (raw["ssm_cfg"]["d_state"] if fmt == "mamba_ssm" else raw["state_size"]) == 4
  back = hub.load_pretrained(tmp_path / "uniform")
  assert back.state_sizes() == (4, 4)
  np.testing.assert_allclose(_logits(back, tokens), _logits(model, tokens), rtol=1e-6, atol=1e-6)


def test_round_trips_pruned_layer_adaptively_padded_and_native(golden, tmp_path):
  model = hub.load_pretrained(FIXTURE / "g2_untied_transformers")  # groups ragged, too
  tokens = golden["g2_untied/tokens"]
  pruning.prune(model, 0.6, criterion="calibrated", calibration=_calibration(tokens))
  sizes = model.state_sizes()
  assert len(set(sizes)) == 2, sizes  # layer-adaptive: the layers keep different counts
  pruned = _logits(model, tokens)
  hub.save_pretrained(model, tmp_path / "padded", format="transformers", layout="padded")
  hub.save_pretrained(model, tmp_path / "native", format="mamba_ssm", layout="native")
  raw = json.loads((tmp_path / "padded" / "config.json").read_text())
  assert raw["state_size"] == max(sizes) and "last_nnx" not in raw
  raw = json.loads((tmp_path / "native" / "config.json").read_text())
  assert raw["last_nnx"] == {"layer_state_sizes": list(sizes)}
  # The padded file at the largest N gives the pruned model's outputs as stored (what a
  # stock loader runs), and compacts back to the per-layer sizes on load.
  stored = hub.load_pretrained(tmp_path / "padded", compact=False)
  assert stored.state_sizes() == (max(sizes),) * 2
  np.testing.assert_allclose(_logits(stored, tokens), pruned, rtol=1e-6, atol=1e-6)
  for kind in ("padded", "native"):
    back = hub.load_pretrained(tmp_path / kind)
    assert back.state_sizes() == sizes, kind
    np.testing.assert_allclose(_logits(back, tokens), pruned, rtol=1e-6, atol=1e-6)


def _refused(directory, match):
  before = sorted(p.name for p in pathlib.Path(directory).iterdir()) if directory.exists() else None
  with pytest.raises(CheckpointError, match=match) as info:
    hub.load_pretrained(directory)
  message = str(info.value)
  assert "\n" not in message, message
  after = sorted(p.name for p in pathlib.Path(directory).iterdir()) if directory.exists() else None
  assert before == after  # nothing written
  return message


def test_bad_checkpoints_end_in_one_line(tmp_path):
  source = FIXTURE / "g1_tied_mamba_ssm"
  _refused(tmp_path / "absent", "no config.json.*huggingface-cli download")
  (tmp_path / "no_weights").mkdir()
  shutil.copy(source / "config.json", tmp_path / "no_weights")
  _refused(tmp_path / "no_weights", "has no weights")
  (tmp_path / "bin").mkdir()
  shutil.copy(source / "config.json", tmp_path / "bin")
  (tmp_path / "bin" / "pytorch_model.bin").write_bytes(b"not read")
  try:
    import torch  # noqa: F401
  except ImportError:
    _refused(tmp_path / "bin", "torch is not installed: convert it.*safetensors")
  others = {
    "llama": {"model_type": "llama", "hidden_size": 16},
    "mamba1": {"d_model": 16, "n_layer": 2, "vocab_size": 48, "ssm_cfg": {}},
  }
  for name, raw in others.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(json.dumps(raw))
    shutil.copy(source / "model.safetensors", tmp_path / name)
    _refused(tmp_path / name, "Mamba-2 LMs? only|not a Mamba-2 LM")
  (tmp_path / "shape").mkdir()
  raw = json.loads((source / "config.json").read_text())
  raw["ssm_cfg"]["d_state"] = 16
  (tmp_path / "shape" / "config.json").write_text(json.dumps(raw))
  shutil.copy(source / "model.safetensors", tmp_path / "shape")
  _refused(tmp_path / "shape", r"in_proj.weight .* has shape \(82, 16\), expected \(98, 16\)")
  (tmp_path / "cut").mkdir()
  shutil.copy(source / "config.json", tmp_path / "cut")
  data = (source / "model.safetensors").read_bytes()
  (tmp_path / "cut" / "model.safetensors").write_bytes(data[: len(data) * 2 // 3])
  _refused(tmp_path / "cut", "truncated or corrupt.*again")


def test_save_refuses_a_bad_format_before_writing(tmp_path, loaded):
  with pytest.raises(CheckpointError, match="format="):
    hub.save_pretrained(loaded[("g1_tied", "mamba_ssm")], tmp_path / "x", format="gguf")
  assert not (tmp_path / "x").exists()
