r"""Prune, search and sweep a saved Mamba-2 language model's states (the LM side of the
`prune` and `sweep` programs, whose flags `last_nnx.cli.prune_lm` defines).

  python -m last_nnx.cli.prune --workdir runs/pydocs --ratio 0.5 --criterion calibrated \
      --allocation global --sequential [--format transformers --layout padded]
  python -m last_nnx.cli.prune --workdir ckpt/mamba2-130m --text corpus/ --ratio 0.5 \
      --criterion calibrated/uniform/seq                      # GHOST's procedure
  python -m last_nnx.cli.prune --workdir runs/pydocs --max_drop 5 --criterion calibrated,gramian
  python -m last_nnx.cli.sweep --workdir runs/pydocs      # perplexity / bits-per-byte curves

``--workdir`` is an LM training run (its data config gives the text) or a checkpoint
directory (``config.json`` + weights, `last_nnx.lm.hub`; its text is ``--text``:
``pydocs`` or your .txt/.jsonl files, tokenized with the checkpoint's tokenizer.json, or
bytes for a vocab of 256). Calibration: ``--calibration_windows`` windows of
``--calibration_length`` tokens from the train split (GHOST's 128 x 128 by default).

A method is ``criterion[/allocation][/seq]`` (`last_nnx.sweeps.lm.parse_method`), or
``--criterion`` with ``--allocation`` and ``--sequential``. ``--max_drop D`` reads D as a
relative perplexity tolerance in percent on val. The pruned model is compacted (ragged
per-layer N) and written with `last_nnx.lm.hub.save_pretrained` (``--format``,
``--layout``), with ``prune_report.json``. ``--finetune_steps S`` fine-tunes it first
(`last_nnx.lm.distill.finetune`): on the dense model's logits (``--finetune_target logits``,
distillation) or on the train text (``text``), at ``--finetune_lr``; the report gives val/test
before pruning, after pruning and after fine-tuning.
"""

import dataclasses
import json
import os
import time

import numpy as np
from absl import logging

from last_nnx.data import text as text_lib
from last_nnx.lm import Mamba2LM, distill, hub
from last_nnx.lm.prune import calibration_windows
from last_nnx.sweeps import lm as lm_sweep
from last_nnx.train import checkpoint

TEXT_TASKS = ("pydocs", "text_files")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
EVAL_BATCH = 16  # windows per evaluation batch


def is_checkpoint_dir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "config.json")) and any(
    os.path.exists(os.path.join(path, f)) for f in WEIGHT_FILES
  )


def is_lm_workdir(path: str) -> bool:
  """Whether ``path`` is a training run of a text task: its ``summary.json``, else the
  `CheckpointMeta` of its newest readable checkpoint (nothing is restored)."""
  try:
    with open(os.path.join(path, "summary.json")) as f:
      return json.load(f).get("task") in TEXT_TASKS
  except (OSError, ValueError, AttributeError):
    pass
  for which in checkpoint.WHICH:
    meta = checkpoint.read_meta(path, which=which)
    if meta is not None:
      return meta.config.get("data", {}).get("task") in TEXT_TASKS
  return False


def is_lm_target(path: str | None) -> bool:
  """Whether ``path`` is an LM checkpoint directory or an LM training run."""
  return path is not None and (is_checkpoint_dir(path) or is_lm_workdir(path))


def load(path: str, *, which: str = "latest", text: str = "pydocs", seq_len: int = 128):
  """``(model, data config)`` of an LM workdir or checkpoint directory (module docstring)."""
  if is_checkpoint_dir(path):
    model = hub.load_pretrained(path)
    c = text_lib.default_config("pydocs" if text == "pydocs" else "text_files")
    if text != "pydocs":
      c.path = text
    vocab = model.config.vocab_size
    if vocab > 256:
      if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        raise ValueError(
          f"{path} has a vocab of {vocab} but no tokenizer.json: put the "
          "checkpoint's tokenizer.json beside its config.json"
        )
      c.tokenizer = path
    c.seq_len = seq_len
    return model, c
  model, config, _ = checkpoint.load_model(path, which=which)
  if not isinstance(model, Mamba2LM):
    raise ValueError(f"{path} holds a {type(model).__name__}, not a Mamba-2 LM")
  return model, config.data


def text_splits(c) -> tuple[dict, dict]:
  """``({split: (n, L + 1) int32 windows}, {split: bytes per token})`` of data config ``c``."""
  splits, per_token, _, _ = text_lib.load_splits(c)
  return {k: np.asarray(s.inputs, np.int32) for k, s in splits.items()}, per_token


def method_of(criterion: str | None, allocation: str | None, sequential: bool):
  spec = criterion or "calibrated"
  if "/" not in spec:
    spec = f"{spec}/{allocation or 'global'}" + ("/seq" if sequential else "")
  return lm_sweep.parse_method(spec)


@dataclasses.dataclass(frozen=True)
class TextOptions:
  """Where the text comes from and how much of it is read (the LM flags)."""

  text: str = "pydocs"
  seq_len: int = 128
  calibration_windows: int = 128
  calibration_length: int = 128
  eval_windows: int = 0


@dataclasses.dataclass(frozen=True)
class Recovery:
  """Fine-tuning of the pruned LM before it is written (``steps`` 0: none). ``target``:
  ``logits`` distils the dense model's next-token distribution (KL), ``text`` is the
  next-token cross-entropy on the train windows."""

  steps: int = 0
  target: str = "logits"
  lr: float = 3e-4
  batch_size: int = 16

  def __post_init__(self):
    if self.target not in ("logits", "text"):
      raise ValueError(f"finetune target {self.target!r}: use logits (distillation) or text")
    if self.steps < 0 or not self.lr > 0:
      raise ValueError(
        f"finetune steps {self.steps}, lr {self.lr}: pass steps >= 0 (0: none) and lr > 0"
      )


def prepare(path: str, which: str, opts: TextOptions, seed: int = 0):
  """``(model, rows, bytes per token, calibration windows)`` of the LM at ``path``."""
  model, c = load(path, which=which, text=opts.text, seq_len=opts.seq_len)
  rows, per_token = text_splits(c)
  if opts.eval_windows:
    rows = {k: (v if k == "train" else v[: opts.eval_windows]) for k, v in rows.items()}
  calib = calibration_windows(
    rows["train"],
    opts.calibration_windows,
    min(opts.calibration_length, rows["train"].shape[1]),
    seed=seed,
  )
  return model, rows, per_token, calib


def prune_saved_lm(
  path: str,
  *,
  ratio: float,
  criterion: str | None,
  allocation,
  sequential,
  out: str | None,
  which: str,
  seed: int,
  fmt: str,
  layout: str,
  eval_splits,
  max_drop: float = -1.0,
  opts: TextOptions = TextOptions(),
  recovery: Recovery = Recovery(),
) -> dict:
  """Prunes (or, with ``max_drop >= 0``, searches) the LM at ``path``, fine-tunes it as
  ``recovery`` says; writes and returns the summary (``prune_report.json`` beside the pruned
  checkpoint)."""

  methods = [method_of(s, allocation, sequential) for s in (criterion or "calibrated").split(",")]
  model, rows, per_token, calib = prepare(path, which, opts, seed)
  before = {s: lm_sweep.text_metrics(model, rows[s], per_token[s], EVAL_BATCH) for s in eval_splits}
  results = []
  for method in methods:
    t0 = time.time()
    r = ratio
    found = None
    if max_drop >= 0:
      found = lm_sweep.max_drop(model, method, calib, rows["val"], max_drop, seed=seed)
      r = found["ratio"]
    pruned, report = lm_sweep.prune_point(model, method, r, calib, seed=seed, mode="compact")
    after = {
      s: lm_sweep.text_metrics(pruned, rows[s], per_token[s], EVAL_BATCH) for s in eval_splits
    }
    finetuned = None
    if recovery.steps:
      t1 = time.time()
      history = distill.finetune(
        pruned,
        rows["train"],
        teacher=model if recovery.target == "logits" else None,
        steps=recovery.steps,
        lr=recovery.lr,
        batch_size=recovery.batch_size,
        seed=seed,
        log=lambda step, loss: logging.info(
          "fine-tuning on the %s: step %d/%d, loss %.4f",
          recovery.target,
          step,
          recovery.steps,
          loss,
        ),
      )
      finetuned = {
        **dataclasses.asdict(recovery),
        "history": history,
        "wall_s": time.time() - t1,
        "splits": {
          s: lm_sweep.text_metrics(pruned, rows[s], per_token[s], EVAL_BATCH) for s in eval_splits
        },
      }
    target = out or os.path.join(
      path if not is_checkpoint_dir(path) else os.path.dirname(os.path.abspath(path)),
      f"pruned-{method.name.replace('/', '-')}-{r:g}",
    )
    if max_drop >= 0 and len(methods) > 1 and out:
      target = os.path.join(out, method.name.replace("/", "-"))
    hub.save_pretrained(pruned, target, format=fmt, layout=layout)
    summary = {
      "source": path,
      "method": method.name,
      "ratio": r,
      "ratio_achieved": report.ratio_achieved,
      "per_layer": report.per_layer(),
      "states": [report.states_before, report.states_after],
      "state_bytes_per_stream": [model.state_bytes(1), pruned.state_bytes(1)],
      "splits": {s: {"before": before[s], "after": after[s]} for s in eval_splits},
      "calibration": [int(calib.shape[0]), int(calib.shape[1])],
      "format": fmt,
      "layout": layout,
      "out_dir": target,
      "wall_s": time.time() - t0,
    }
    if found is not None:
      summary["max_drop"] = found
    if finetuned is not None:
      summary["finetune"] = finetuned
    with open(os.path.join(target, "prune_report.json"), "w") as f:
      json.dump(summary, f, indent=1)
    logging.info("%s", report.table())
    results.append(summary)
  return {"results": results}


def sweep_saved_lm(
  path: str,
  *,
  out: str | None,
  which: str,
  ratios,
  methods,
  seeds: int,
  opts: TextOptions = TextOptions(),
) -> str:
  """Perplexity (and bits per byte) curves of the LM at ``path`` into ``out``; the report."""

  model, rows, per_token, calib = prepare(path, which, opts)
  val = rows["val"]
  out = out or os.path.join(path, "sweep-lm")
  os.makedirs(out, exist_ok=True)
  t0 = time.time()
  points = lm_sweep.curves(
    model,
    calib,
    val,
    ratios=ratios,
    methods=methods or lm_sweep.DEFAULT_METHODS,
    seeds=seeds,
    bytes_per_token=per_token["val"],
    log=lambda r: logging.info("%s %.2f: ppl %.4f", r["method"], r["ratio"], r["perplexity"]),
  )
  with open(os.path.join(out, "points.json"), "w") as f:
    json.dump(
      {
        "source": path,
        "calibration": list(calib.shape),
        "val_windows": list(val.shape),
        "wall_s": time.time() - t0,
        "points": points,
      },
      f,
      indent=1,
    )
  key = "bits_per_byte"
  text = "\n\n".join(
    [
      f"One-shot state pruning of {path} (no fine-tuning), val split, "
      f"{len(val)} windows of {val.shape[1] - 1} predicted tokens; calibration "
      f"{calib.shape[0]} x {calib.shape[1]} train tokens.",
      lm_sweep.table(points, key, "{:.4f}"),
      lm_sweep.table(points, "perplexity", "{:.3f}"),
      "States kept per layer:\n\n" + lm_sweep.allocation_table(points),
      "States pruned as achieved, where it differs from the ratio asked (uniform keeps "
      "floor(N (1 - ratio)) per layer):\n\n" + lm_sweep.achieved_table(points),
    ]
  )
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write(text + "\n")
  lm_sweep.plot(points, os.path.join(out, "bits_per_byte.png"), key=key)
  lm_sweep.plot(points, os.path.join(out, "bits_per_byte_over_dense.png"), key=key, over_dense=True)
  lm_sweep.plot(points, os.path.join(out, "perplexity.png"), key="perplexity", log_scale=True)
  return text
