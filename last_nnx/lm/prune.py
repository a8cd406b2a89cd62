"""Pruning a Mamba-2 LM's states: calibration on token windows, perplexity before and after.

    from last_nnx.lm import prune as lm_prune
    calib = lm_prune.calibration_windows(train_tokens, count=128, length=128)
    report = lm_prune.prune_lm(model, 0.5, criterion="calibrated", allocation="global",
                               sequential=True, calibration=calib)
    lm_prune.state_counts(model)          # (N_0, N_1, ...) after compaction

Calibration follows GHOST (arXiv 2602.11408): ``count`` windows of ``length`` tokens
(default 128 x 128) drawn from the training text. The scores, allocations and the
sequential option are `last_nnx.pruning.sequential`'s. A compacted model keeps its own
N in every layer; its config (`pruned_config`) records them, so it saves and reloads
with those sizes.
"""

import dataclasses

import numpy as np
from flax import nnx

from last_nnx.lm.config import Mamba2LMConfig
from last_nnx.lm.generate import evaluate
from last_nnx.pruning.sequential import SequentialReport, prune_selective

CALIBRATION_COUNT = 128
CALIBRATION_LENGTH = 128
CALIBRATION_BATCH = 16


def calibration_windows(
  tokens, count: int = CALIBRATION_COUNT, length: int = CALIBRATION_LENGTH, seed: int = 0
) -> np.ndarray:
  """``count`` windows ``(count, length)`` int32 drawn from ``tokens``.

  ``tokens``: a 1-D token stream, or windows ``(n, L)`` with ``L >= length`` (each
  sample is the first ``length`` tokens of a random row, rows without repeats while
  there are enough). A stream gives windows at random offsets.
  """
  tokens = np.asarray(tokens)
  rng = np.random.default_rng(seed)
  if count < 1 or length < 2:
    raise ValueError(
      f"calibration needs count >= 1 windows of length >= 2 tokens; got {count} x {length}"
    )
  if tokens.ndim == 1:
    if tokens.size < length:
      raise ValueError(
        f"calibration text has {tokens.size} tokens, fewer than one window of "
        f"{length}: pass more text or a smaller --calibration_length"
      )
    starts = rng.integers(0, tokens.size - length + 1, size=count)
    return np.stack([tokens[s : s + length] for s in starts]).astype(np.int32)
  if tokens.ndim != 2 or tokens.shape[1] < length:
    raise ValueError(
      f"calibration windows have shape {tokens.shape}; pass a token stream or "
      f"(n, L >= {length}) windows"
    )
  rows = rng.choice(len(tokens), size=count, replace=count > len(tokens))
  return np.asarray(tokens[rows, :length], np.int32)


def as_batches(windows: np.ndarray, batch_size: int = CALIBRATION_BATCH) -> list:
  """``[(tokens (b, L) int32, lengths (b,) int32), ...]``: what calibration reads."""
  windows = np.asarray(windows, np.int32)
  return [
    (
      windows[i : i + batch_size],
      np.full(len(windows[i : i + batch_size]), windows.shape[1], np.int32),
    )
    for i in range(0, len(windows), batch_size)
  ]


def state_counts(model: nnx.Module) -> tuple[int, ...]:
  """Live states per layer (all groups together)."""
  return tuple(int((np.asarray(b.mixer.state_mask[...]) > 0).sum()) for b in model.layers)


def pruned_config(model: nnx.Module) -> Mamba2LMConfig:
  """``model.config`` with the compacted per-layer state sizes (None when all equal N)."""
  sizes = tuple(int(b.mixer.state_shape[1]) for b in model.layers)
  config = model.config
  if len(set(sizes)) == 1:
    return dataclasses.replace(config, state_size=sizes[0], layer_state_sizes=None)
  return dataclasses.replace(config, state_size=max(sizes), layer_state_sizes=sizes)


def prune_lm(
  model: nnx.Module,
  ratio: float,
  *,
  criterion: str = "calibrated",
  allocation: str | None = None,
  sequential: bool = False,
  calibration=None,
  batch_size: int = CALIBRATION_BATCH,
  seed=None,
  mode: str = "compact",
  min_per_layer: int = 1,
  layer_costs: dict | None = None,
) -> SequentialReport:
  """Prunes ``ratio`` of ``model``'s states in place; ``calibration``: windows ``(n, L)``.

  See `last_nnx.pruning.sequential.prune_selective` for the options. With
  ``allocation='measured'`` a layer's cost is the rise of the next-token loss on the
  calibration windows when that layer alone is cut. With ``mode='compact'`` the
  model's config is updated to its new state sizes.
  """
  batches = as_batches(calibration, batch_size) if calibration is not None else None

  def calibration_loss(m: nnx.Module) -> float:
    return evaluate(m, calibration, batch_size)["loss"]

  report = prune_selective(
    model,
    ratio,
    criterion=criterion,
    allocation=allocation,
    sequential=sequential,
    calibration=batches,
    calibration_batches=len(batches or ()),
    seed=seed,
    mode=mode,
    min_per_layer=min_per_layer,
    loss_fn=calibration_loss if calibration is not None else None,
    layer_costs=layer_costs,
  )
  if mode == "compact":
    model.config = pruned_config(model)
  return report
