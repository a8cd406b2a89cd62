r"""Language model (Mamba-2, bytes) on English that ships with CPython: no download.

The corpus (`last_nnx.data.pydocs`): the reference manual's topics and the standard
library's docstrings, ~2.3M characters on Python 3.11, split by document (5% val,
5% test), read as UTF-8 bytes (vocab 256) in windows of L = 128. The run trains a
small Mamba-2 LM (4 layers, D = 128, N = 32: 128 states), prunes half of its states
with the calibrated output energy (on token windows of the train split) in two events,
fine-tunes after each, then trains the same model unpruned for as many steps (the
dense baseline), and ends with dense vs pruned bits per byte beside a unigram and a
bigram model of the train split.

  make train TASK=pydocs MODEL=mamba2
  python -m last_nnx.train --config experiments/configs/pydocs.py:mamba2 \
      --workdir runs/pydocs-mamba2

Presets: ``smoke`` (seconds: a tiny model, a few steps), ``demo`` (the default run
shortened), ``long`` (the same model trained dense for 3000 steps, no pruning events:
the LM whose states docs/results.md prunes with ``make sweep``, ~30 min on 2 cores).
Only ``mamba2``: the language model is a Mamba-2 LM (`last_nnx.lm`).
"""

import ml_collections

from experiments.configs import base

MODEL_TYPES = ("mamba2",)  # the layer types this task takes (a Mamba-2 LM)


def lm_model_config() -> ml_collections.ConfigDict:
  """The ``model`` section of a Mamba-2 LM (`last_nnx.train.objectives.lm_config`).

  mamba_ssm's Mamba2 block shape at a small width: expand 2, conv width 4, one
  group, tied embeddings (mamba2-130m ties them); head_dim 32, N = 32 and chunks of
  32 instead of 64 / 128 / 256 to fit 2 CPU cores (ours: on this CPU a train step at
  L = 256 ran ~4x faster with chunks of 32 than of 64).
  """
  m = ml_collections.ConfigDict()
  m.ssm = "mamba2"
  m.d_model = 128
  m.n_layers = 4
  m.tie_embeddings = True
  m.ssm_config = ml_collections.ConfigDict(
    dict(state_size=32, head_dim=32, n_groups=1, expand=2, conv_width=4, chunk_size=32)
  )
  return m


def get_config(arg: str | None = None):
  return lm_config("pydocs", arg)


def lm_config(task: str, arg: str | None):
  """The run of this file for the text task ``task`` (``pydocs`` or ``text_files``)."""
  words = {w.strip() for w in (arg or "").split(",") if w.strip()}
  others = sorted(words & set(base.MODEL_TYPES) - set(MODEL_TYPES))
  if others:
    raise ValueError(
      f"{task} trains a Mamba-2 language model, not {others[0]}: use "
      f"{task}.py:mamba2 (MODEL=mamba2)"
    )
  _, presets = base.parse_arg(arg)
  c = base.base_config(task)
  c.model = lm_model_config()
  c.data.seq_len = 128

  # Optimization (ours; the usual small-LM recipe: AdamW, peak lr 3e-3 with a short
  # warmup and cosine decay, weight decay 0.1, gradients clipped at 1). Mamba-2 has one
  # learning rate (lr_factor 1). An "epoch" is 50 batches of 16 windows (102k bytes,
  # 5% of the train split): evaluation, the watch and pruning events happen per epoch.
  c.optim.ssm_lr = 3e-3
  c.optim.lr_factor = 1.0
  c.optim.weight_decay = 0.1
  c.optim.grad_clip = 1.0
  c.optim.warmup_epochs = 0.5
  c.train.epochs = 4
  c.train.batch_size = 16
  c.train.eval_batch_size = 128
  c.train.max_steps_per_epoch = 50
  c.train.log_every_steps = 25

  # Pruning: half of the states in two events (after epochs 3 and 4), one fine-tuning
  # epoch after each, scored by the calibrated output energy on 4 batches of train
  # windows (the Mamba-2 criterion of docs/pruning.md; data-free magnitude is worse
  # than random there). The watch scores the data-free magnitude criterion.
  c.pruning.schedule = "iterative"
  c.pruning.criterion = "calibrated"
  c.pruning.horizon = 0
  c.pruning.target_ratio = 0.5
  c.pruning.start_epoch = 3
  c.pruning.end_epoch = 4
  c.pruning.every = 1
  c.pruning.finetune_epochs = 1
  c.pruning.dense_baseline = True  # the same model, unpruned, as many steps
  c.watch.criterion = "magnitude"
  c.watch.histograms = False

  if "smoke" in presets:
    c.model.d_model = 32
    c.model.n_layers = 2
    c.model.ssm_config.update(state_size=8, head_dim=16, chunk_size=16)
    c.data.seq_len = 32
    c.train.epochs = 2
    c.train.batch_size = 8
    c.train.eval_batch_size = 256
    c.train.max_steps_per_epoch = 6
    c.train.log_every_steps = 3
    c.pruning.schedule = "one_shot"
    c.pruning.start_epoch = 1
    c.pruning.end_epoch = 1
    c.pruning.dense_baseline = False
  if "demo" in presets:  # the default run without its dense baseline (half the time)
    c.pruning.dense_baseline = False
  if "long" in presets:  # dense, long enough that the states matter; pruned afterwards
    c.train.epochs = 30
    c.train.max_steps_per_epoch = 100
    c.train.log_every_steps = 50
    c.optim.warmup_epochs = 0.5
    c.pruning.schedule = "none"
    c.pruning.dense_baseline = False
  if "shallow" in presets:
    raise ValueError(f"the 'shallow' preset is ListOps-only (this config is {task!r})")
  return c
