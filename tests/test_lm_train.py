"""Language-model training through the ordinary loop: the LM objective's figures,
a calibrated pruning event fed token windows, checkpoints and resume, summary.json,
and the bad inputs that stop a run before it writes anything."""

import json
import math
import os

import numpy as np
import pytest

from experiments.configs import pydocs as pydocs_config
from experiments.configs import text_files
from last_nnx.sweeps import saved_lm
from last_nnx.train import objectives
from last_nnx.train.loop import train_and_evaluate

_TEXT = (
  "a diagonal state space layer is a sum of one state systems . pruning removes the "
  "states whose share of the layer energy is smallest , and the model reads on . "
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp("lm_corpus")
  rng = np.random.default_rng(0)
  words = _TEXT.split()
  docs = [" ".join(words[int(rng.integers(len(words))) :] + words) for _ in range(30)]
  (root / "docs.txt").write_text("\n\n".join(docs))
  return root


def _config(corpus, **data_fields):
  c = text_files.get_config("mamba2,smoke")
  c.data.update(
    {"path": str(corpus), "seq_len": 16, "val_fraction": 0.15, "test_fraction": 0.15, **data_fields}
  )
  c.model.d_model = 16
  c.model.n_layers = 2
  c.model.ssm_config.update(state_size=4, head_dim=8, chunk_size=8)
  c.train.update(
    epochs=2, batch_size=4, eval_batch_size=64, max_steps_per_epoch=3, log_every_steps=3
  )
  c.pruning.update(
    schedule="one_shot", start_epoch=1, end_epoch=1, finetune_epochs=0, calibration_batches=2
  )
  return c


def test_lm_objective_figures():
  lm = objectives.LanguageModel(bytes_per_token=(("test", 4.0), ("train", 1.0)))
  metrics = lm.empty_metrics().merge(
    lm.batch_metrics(np.log(np.full((2, 3, 5), 0.2, np.float32)), np.zeros((2, 3), np.int32))
  )
  out = lm.scalars(metrics, "test")
  assert out["loss"] == pytest.approx(math.log(5), rel=1e-6)
  assert out["perplexity"] == pytest.approx(5.0, rel=1e-5)
  assert out["bits_per_byte"] == pytest.approx(math.log2(5) / 4.0, rel=1e-6)
  assert lm.score(out) == -out["bits_per_byte"] and lm.chance_level(None) is None
  assert "bpb 0.5805" in lm.describe(out)
  assert objectives.by_name("lm").short_name == "bpb"


def test_lm_run_prunes_on_token_windows_checkpoints_and_resumes(corpus, tmp_path):
  config = _config(corpus)
  workdir = str(tmp_path / "run")
  summary = train_and_evaluate(config, workdir)
  assert summary["objective"] == "lm" and summary["score"] == "bits_per_byte"
  for result in (summary["before_first_event"], summary["final"]):
    for split in ("val", "test"):
      m = result[split]
      assert m["perplexity"] == pytest.approx(math.exp(m["loss"]), rel=1e-6)
      assert m["bits_per_byte"] == pytest.approx(m["loss"] / math.log(2), rel=1e-6)  # bytes
  # Learned something in 6 steps: below the uniform 8 bits per byte.
  assert summary["final"]["test"]["bits_per_byte"] < 8.0
  base = summary["data"]["baselines_bits_per_byte"]
  assert 0 < base["bigram"]["test"] < base["unigram"]["test"] < 8.0
  (event,) = summary["pruning_events"]
  assert event["status"] == "applied"
  assert sum(summary["states_initial"].values()) == 8
  assert sum(summary["states_final"].values()) == 4  # half, calibrated on token windows
  with open(os.path.join(workdir, "summary.json")) as f:
    assert json.load(f)["final"] == summary["final"]
  # A rerun of the same command resumes from the last checkpoint (the end of the plan):
  # the pruned model comes back at its per-layer sizes, with the same figures.
  again = train_and_evaluate(config, workdir)
  assert again["final"] == summary["final"]
  assert again["states_final"] == summary["states_final"]
  # `prune`/`sweep` tell an LM run by its summary, else by its checkpoints' metadata.
  assert saved_lm.is_lm_workdir(workdir) and not saved_lm.is_lm_workdir(str(tmp_path))
  os.remove(os.path.join(workdir, "summary.json"))
  assert saved_lm.is_lm_workdir(workdir)


def test_bad_inputs_stop_before_anything_is_written(corpus, tmp_path):
  config = _config(corpus)
  config.model.vocab_size = 50288  # a GPT-NeoX-sized model read with the bytes tokenizer
  workdir = tmp_path / "mismatch"
  with pytest.raises(
    ValueError,
    match=r"^the tokenizer has 256 tokens but the model's "
    r"vocabulary has 50288: use the tokenizer.json",
  ):
    train_and_evaluate(config, str(workdir))
  assert not workdir.exists() or not os.listdir(workdir)
  short = _config(corpus, seq_len=100000)
  workdir = tmp_path / "short"
  with pytest.raises(ValueError, match=r"split has \d+ tokens .* fewer than one window"):
    train_and_evaluate(short, str(workdir))
  assert not workdir.exists() or not os.listdir(workdir)
  with pytest.raises(
    ValueError,
    match=r"pydocs trains a Mamba-2 language model, not s5: use "
    r"pydocs.py:mamba2",
  ):
    pydocs_config.get_config("s5")
