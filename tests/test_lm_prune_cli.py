"""The prune and sweep programs on a Mamba-2 LM checkpoint directory (text from .txt files)."""

import json

import numpy as np
import pytest
from flax import nnx

from last_nnx.lm import Mamba2LM, Mamba2LMConfig, hub

pytest.importorskip("last_nnx.data.text")
from last_nnx.cli import prune_lm  # noqa: E402
from last_nnx.sweeps import lm as lm_sweep  # noqa: E402
from last_nnx.sweeps import saved_lm  # noqa: E402

WORDS = (
  "the state of a layer is pruned when its energy is small and the model keeps the "
  "rest of its states so that the perplexity stays close to the dense one"
).split()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  root = tmp_path_factory.mktemp("lm")
  rng = np.random.default_rng(0)
  for i in range(6):  # documents: paragraphs of random words
    text = "\n\n".join(" ".join(rng.choice(WORDS, 60)) for _ in range(4))
    (root / f"doc{i}.txt").write_text(text)
  model = Mamba2LM(Mamba2LMConfig.tiny(vocab_size=256, n_layers=2, chunk_size=16), rngs=nnx.Rngs(0))
  hub.save_pretrained(model, root / "ckpt", format="transformers")
  return root


def test_prune_and_max_drop_on_a_checkpoint_directory(checkpoint):
  opts = saved_lm.TextOptions(
    text=str(checkpoint / "doc*.txt"), seq_len=32, calibration_windows=8, calibration_length=32
  )
  path = str(checkpoint / "ckpt")
  assert saved_lm.is_lm_target(path) and not saved_lm.is_lm_target(str(checkpoint))
  summary = saved_lm.prune_saved_lm(
    path,
    ratio=0.5,
    criterion="calibrated",
    allocation="global",
    sequential=True,
    out=str(checkpoint / "pruned"),
    which="latest",
    seed=0,
    fmt="mamba_ssm",
    layout="native",
    eval_splits=["val"],
    opts=opts,
  )
  (r,) = summary["results"]
  assert r["method"] == "calibrated/global/seq" and sum(r["per_layer"]) == 8
  reloaded = hub.load_pretrained(checkpoint / "pruned")
  assert list(reloaded.state_sizes()) == r["per_layer"]
  report = json.loads((checkpoint / "pruned" / "prune_report.json").read_text())
  assert report["splits"]["val"]["after"]["bits_per_byte"] > 0
  assert any("bits per byte" in line for line in prune_lm.prune_lines(summary))
  found = saved_lm.prune_saved_lm(
    path,
    ratio=0.0,
    criterion="calibrated/uniform/seq",
    allocation=None,
    sequential=False,
    out=str(checkpoint / "found"),
    which="latest",
    seed=0,
    fmt="transformers",
    layout="padded",
    eval_splits=["val"],
    max_drop=1.0,
    opts=opts,
  )["results"][0]
  m = found["max_drop"]
  assert m["perplexity"] <= m["limit"] and found["ratio"] == m["ratio"]


def test_sweep_program_writes_tables_and_plots(checkpoint):
  opts = saved_lm.TextOptions(
    text=str(checkpoint / "doc*.txt"), seq_len=32, calibration_windows=8, calibration_length=32
  )
  out = checkpoint / "sweep"
  text = saved_lm.sweep_saved_lm(
    str(checkpoint / "ckpt"),
    out=str(out),
    which="latest",
    ratios=[0.5],
    methods=["calibrated/uniform/seq", "random"],
    seeds=2,
    opts=opts,
  )
  assert "calibrated/uniform/seq" in text and "random/global" in text
  points = json.loads((out / "points.json").read_text())["points"]
  assert len(points) == 1 + 1 + 2
  assert (out / "bits_per_byte.png").exists() and (out / "report.md").exists()


def test_prune_fine_tunes_before_writing(checkpoint):
  """``Recovery``: the written model is the fine-tuned one (its perplexity is the report's
  ``finetune`` figure, not the one-shot ``after``), with the pruned sizes. That distillation
  moves a pruned student towards its teacher: tests/test_lm_pruning.py."""
  opts = saved_lm.TextOptions(
    text=str(checkpoint / "doc*.txt"), seq_len=32, calibration_windows=8, calibration_length=32
  )
  path = str(checkpoint / "ckpt")
  (r,) = saved_lm.prune_saved_lm(
    path,
    ratio=0.75,
    criterion="magnitude/uniform",
    allocation=None,
    sequential=False,
    out=str(checkpoint / "distilled"),
    which="latest",
    seed=0,
    fmt="transformers",
    layout="native",
    eval_splits=["val"],
    opts=opts,
    recovery=saved_lm.Recovery(steps=3, target="logits", lr=1e-2),
  )["results"]
  assert r["finetune"]["target"] == "logits" and r["finetune"]["history"][-1][0] == 3
  written = hub.load_pretrained(checkpoint / "distilled")
  assert list(written.state_sizes()) == r["per_layer"] == [2, 2]
  rows, per_token = saved_lm.text_splits(saved_lm.load(path, text=opts.text, seq_len=32)[1])
  val = lm_sweep.text_metrics(written, rows["val"], per_token["val"])
  tuned, one_shot = r["finetune"]["splits"]["val"], r["splits"]["val"]["after"]
  assert val["perplexity"] == pytest.approx(tuned["perplexity"], rel=1e-5)
  assert abs(tuned["perplexity"] - one_shot["perplexity"]) > 1e-4
  lines = prune_lm.prune_lines({"results": [r]})
  assert any("3 steps of fine-tuning on the dense logits" in line for line in lines)
  with pytest.raises(ValueError, match="use logits"):
    saved_lm.Recovery(steps=1, target="teacher")


def test_decode_bench_times_saved_models_against_the_first(checkpoint):
  from last_nnx.bench import lm_pruned
  from last_nnx.lm.prune import prune_lm

  dense = hub.load_pretrained(checkpoint / "ckpt")
  windows = np.random.default_rng(0).integers(0, 256, (4, 17)).astype(np.int32)
  prune_lm(dense, 0.5, criterion="magnitude", allocation="global", calibration=windows)
  hub.save_pretrained(dense, checkpoint / "bench" / "half", format="transformers", layout="native")
  r = lm_pruned.bench_lm_pruned(
    1,
    batches=(2,),
    steps=2,
    prefill_len=0,
    checkpoints=[str(checkpoint / "ckpt"), str(checkpoint / "bench" / "half")],
  )
  assert list(r["variants"]) == ["ckpt", "half"] and r["weights"] == "saved"
  assert r["variants"]["half"]["state_sizes"] == list(dense.state_sizes())
  assert (
    r["variants"]["half"]["state_bytes_per_stream"]
    < r["variants"]["ckpt"]["state_bytes_per_stream"]
  )
  assert r["variants"]["half"]["decode"]["2"]["tokens_per_s"] > 0
  text = "\n".join(lm_pruned.markdown(r))
  assert "saved models" in text and "vs ckpt" in text
