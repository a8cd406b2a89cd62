"""Defaults shared by every task config.

A task file's ``get_config(arg)`` starts from ``base_config(task)``, sets the
task's paper settings and applies the presets named in ``arg``, a
comma-separated list: ``s5`` (default), ``s4d``, ``lru`` or ``mamba2`` selects the layer type;
``smoke`` shrinks everything to a seconds-long end-to-end run; ``demo`` is the
minutes-long ListOps run of ``make train``; ``shallow`` (ListOps only) makes the
synthetic expressions shallow and short (depth 3, L = 64), a task the small demo
model learns through its states within a minute (docs/results.md), e.g.
``listops.py:s5,demo,shallow``; ``long`` (language models only) trains the dense LM
that the LM-pruning study prunes.
"""

import difflib

import ml_collections

from last_nnx import data

MODEL_TYPES = ("s5", "s4d", "lru", "mamba2")
PRESETS = ("smoke", "demo", "shallow", "long")


def parse_arg(arg: str | None) -> tuple[str, set[str]]:
  """``'s4d,smoke'`` -> ``('s4d', {'smoke'})``; unknown words fail clearly."""
  words = {w.strip() for w in (arg or "").split(",") if w.strip()}
  unknown = words - set(MODEL_TYPES) - set(PRESETS)
  if unknown:
    close = [
      m for w in sorted(unknown) for m in difflib.get_close_matches(w, MODEL_TYPES + PRESETS, n=1)
    ]
    raise ValueError(
      f"unknown config option(s) {sorted(unknown)}: expected a model type "
      f"{MODEL_TYPES} and/or presets {PRESETS}, e.g. 'listops.py:s4d,smoke'"
      + (f"; did you mean {', '.join(close)}?" if close else "")
    )
  models = words & set(MODEL_TYPES)
  if len(models) > 1:
    raise ValueError(f"choose one model type, got {sorted(models)}")
  return (models.pop() if models else "s5"), words & set(PRESETS)


def base_config(task: str) -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults; task files override them."""
  c = ml_collections.ConfigDict()
  c.task = task
  c.seed = 0

  # Data: data.dir=None runs the task's synthetic generator (and says so).
  c.data = data.default_data_config(task)

  # Model.
  c.model = ml_collections.ConfigDict()
  c.model.ssm = "s5"
  c.model.d_model = 128
  c.model.n_layers = 4
  c.model.norm = "batch"
  c.model.prenorm = True
  c.model.activation = "half_glu1"
  c.model.dropout = 0.0
  c.model.bn_momentum = 0.95
  c.model.pooling = "mean"
  c.model.remat = False
  # Compute dtype of encoder, norms, GLUs and head ('bfloat16' on accelerators); the SSM
  # recurrence and every parameter stay float32 / complex64.
  c.model.dtype = "float32"
  c.model.ssm_config = ml_collections.ConfigDict()
  c.model.ssm_config.state_size = 64
  c.model.ssm_config.blocks = 1
  c.model.ssm_config.conj_sym = True
  c.model.ssm_config.bidirectional = True
  c.model.ssm_config.discretization = "zoh"
  c.model.ssm_config.dt_min = 1e-3
  c.model.ssm_config.dt_max = 1e-1
  c.model.ssm_config.c_init = "trunc_standard_normal"
  c.model.ssm_config.clip_eigs = False

  # Optimizer: global lr = lr_factor * ssm_lr; warmup then cosine.
  c.optim = ml_collections.ConfigDict()
  c.optim.ssm_lr = 1e-3
  c.optim.lr_factor = 4.0
  c.optim.weight_decay = 0.05
  c.optim.opt_config = "standard"
  c.optim.dt_global = False
  c.optim.warmup_epochs = 1.0
  c.optim.lr_min = 0.0
  c.optim.schedule = "cosine"
  c.optim.grad_clip = 0.0
  c.optim.grad_accum = 1

  # Training loop.
  c.train = ml_collections.ConfigDict()
  c.train.epochs = 10
  c.train.batch_size = 32
  c.train.eval_batch_size = 64
  c.train.max_steps_per_epoch = 0  # 0: the whole epoch.
  c.train.log_every_steps = 50
  c.train.checkpoint_every_steps = 0  # 0: at epoch ends and pruning events only.
  c.train.keep_checkpoints = 2
  c.train.nan_retries = 1  # after a divergence: roll back, scale lr, retry.
  c.train.nan_lr_scale = 0.5
  c.train.chance_warning_epochs = 5
  c.train.eval_test = True
  c.train.console = "story"  # story: epochs, events, warnings, result | all (also WORKDIR/log.txt)
  c.train.num_devices = 0  # data-parallel over this many devices (0: all visible).
  # The train step must fit in this many GB per device (checked on XLA's compiled memory
  # before the first step): 0: the device's limit (a CPU: the host's available RAM, checked
  # only for steps whose activations come near it); -1: no check.
  c.train.memory_budget_gb = 0.0
  # Multi-host (README "Several devices"): unset ('' / 0 / -1) reads JAX_COORDINATOR_ADDRESS,
  # JAX_NUM_PROCESSES, JAX_PROCESS_ID, else a SLURM / Open MPI launch; else one process.
  c.train.coordinator_address = ""  # host:port of process 0, e.g. '10.0.0.1:1234'
  c.train.num_processes = 0
  c.train.process_id = -1

  # Training for prunability: a penalty on per-state system norms.
  c.regularizer = ml_collections.ConfigDict()
  c.regularizer.kind = "none"  # none | modal_l1 | hankel
  c.regularizer.weight = 0.0
  c.regularizer.schedule = "constant"  # off | constant | ramp
  c.regularizer.ramp_epochs = 1.0
  c.regularizer.norm = "hinf"  # modal_l1: hinf | h2
  c.regularizer.normalize = "layer"  # modal_l1: none | layer
  c.regularizer.horizon = -1  # modal_l1 norms over: -1 the sequence length | 0 infinite | T

  # Pruning (LAST by default). Events fire at the end of a training epoch.
  c.pruning = ml_collections.ConfigDict()
  c.pruning.schedule = "one_shot"  # none | one_shot | iterative | settled
  c.pruning.criterion = "last"
  c.pruning.mode = "compact"  # compact | mask
  c.pruning.target_ratio = 0.3
  c.pruning.start_epoch = -1  # -1: after the last training epoch.
  c.pruning.end_epoch = -1
  c.pruning.every = 1
  c.pruning.ramp = "cubic"
  c.pruning.finetune_epochs = 0
  c.pruning.min_per_layer = 1
  c.pruning.bidirectional = "sum"  # sum | reference
  c.pruning.horizon = 0  # norms over: 0 infinite time (paper) | -1 the sequence length | T steps
  c.pruning.max_acc_drop = -1.0  # < 0: no tolerance check.
  c.pruning.on_violation = "halve"  # halve | rollback
  c.pruning.max_halvings = 3
  c.pruning.min_reduction = 0.0  # skip events removing less than this fraction.
  c.pruning.recalibrate_batches = 0  # re-estimate BatchNorm statistics on N train batches
  # Training batches a calibrated criterion (calibrated, calibrated_balanced) reads per event.
  c.pruning.calibration_batches = 4
  # Also train the same model, unpruned, for as many epochs (summary.json 'dense_baseline').
  c.pruning.dense_baseline = False
  # 'settled': prune once the watched keep set at target_ratio changed by at most
  # settle_tolerance (1 - Jaccard with the previous epoch's) for settle_epochs epochs in
  # a row, from start_epoch on; at end_epoch (the deadline) prune regardless.
  c.pruning.settle_tolerance = 0.05
  c.pruning.settle_epochs = 2
  c.pruning.settle_steps = 1  # events to the target, ramped like 'iterative'

  # Watch (last_nnx/train/watch.py): every epoch end, score the states with a data-free
  # criterion, log score histograms, would-be allocation and keep-set overlap.
  c.watch = ml_collections.ConfigDict()
  c.watch.enabled = True
  c.watch.criterion = ""  # '': pruning.criterion (skipped when it needs data)
  c.watch.histograms = True
  return c


def set_model_type(c: ml_collections.ConfigDict, model: str) -> None:
  """Switches the SSM layer type, keeping only the options that type takes."""
  c.model.ssm = model
  s = c.model.ssm_config
  if model == "s4d":
    c.model.ssm_config = ml_collections.ConfigDict(
      dict(
        state_size=64,
        init="inv",
        bidirectional=s.bidirectional,
        discretization="zoh",
        dt_min=s.dt_min,
        dt_max=s.dt_max,
      )
    )
  elif model == "lru":
    # LRU (last_nnx/ssm/lru.py): state_size = the task's P, stored as P complex states
    # without conjugate pairs (S5 with conj_sym stores P/2 pairs), so an LRU layer has
    # twice as many stored, prunable states as the S5 layer of the same config.
    # Ring initialization: the layer's defaults (r_min 0.9, r_max 0.999, phases on
    # [0, 2 pi]); the LRU paper (Orvieto et al. 2023) tunes r_min/r_max/max_phase
    # per task (radii closer to 1 and a smaller max_phase on the Path tasks), and
    # those per-task values are not transcribed here: set them per task file.
    c.model.ssm_config = ml_collections.ConfigDict(
      dict(
        state_size=s.state_size,
        r_min=0.9,
        r_max=0.999,
        max_phase=6.283185307179586,
        bidirectional=s.bidirectional,
      )
    )
  elif model == "mamba2":
    # Mamba-2 (last_nnx/ssm/mamba2.py): causal only. state_size = N per group; heads of
    # head_dim 16 filling expand * d_model = 2 d_model channels; conv width 4, A in
    # [1, 16] and dt in [1e-3, 0.1] as state-spaces/mamba Mamba2 (chunk 64, not 256: our
    # sequences are short and CPU-bound). Mamba-2 trains with one learning rate: the
    # task's global rate, which A_log, dt_bias and D (no weight decay) then share.
    c.model.ssm_config = ml_collections.ConfigDict(
      dict(
        state_size=s.state_size,
        head_dim=16,
        n_groups=1,
        expand=2,
        conv_width=4,
        chunk_size=64,
        dt_min=s.dt_min,
        dt_max=s.dt_max,
      )
    )
    c.optim.ssm_lr = c.optim.lr_factor * c.optim.ssm_lr
    c.optim.lr_factor = 1.0


def apply_presets(c: ml_collections.ConfigDict, presets: set[str]) -> None:
  """Shrinks a config for the ``smoke`` (seconds) or ``demo`` (minutes) runs;
  ``shallow`` swaps in the shallow synthetic ListOps (after the others)."""
  if "smoke" in presets:
    c.model.d_model = 16
    c.model.n_layers = 2
    c.model.ssm_config.state_size = 8
    if "blocks" in c.model.ssm_config:
      c.model.ssm_config.blocks = 1
    c.model.remat = False
    c.train.epochs = 2
    c.train.batch_size = 16
    c.train.eval_batch_size = 32
    c.train.log_every_steps = 4
    c.train.max_steps_per_epoch = 6
    c.optim.grad_accum = 1
    c.optim.warmup_epochs = 0.5
    c.pruning.schedule = "one_shot"
    c.pruning.target_ratio = 0.5
    c.pruning.start_epoch = 1
    c.pruning.finetune_epochs = 1
    shrink_data(c.data, n_train=128, n_eval=64)
  if "demo" in presets:
    shrink_data(c.data, n_train=3000, n_eval=500)
    c.model.d_model = 64
    c.model.n_layers = 4
    c.model.ssm_config.state_size = 32
    if "blocks" in c.model.ssm_config:
      c.model.ssm_config.blocks = 4
    c.train.epochs = 6
    c.train.batch_size = 32
    c.train.log_every_steps = 20
    c.pruning.schedule = "iterative"
    c.pruning.target_ratio = 0.5
    c.pruning.start_epoch = 4
    c.pruning.end_epoch = 6
    c.pruning.every = 1
    c.pruning.finetune_epochs = 1
    c.pruning.dense_baseline = True  # the demo's result table: pruned beside dense
  if "long" in presets:
    raise ValueError(
      f"the 'long' preset is for the language models (pydocs, text_files), not {c.task!r}"
    )
  if "shallow" in presets:
    if c.task != "listops":
      raise ValueError(f"the 'shallow' preset is ListOps-only (this config is {c.task!r})")
    # Depth <= 3 and L = 64: a small S5 beats a bag of tokens by 12 points here (41 vs 29%).
    c.data.synthetic.max_depth = 3
    c.data.synthetic.min_length = 8
    c.data.synthetic.max_length = 64
    c.data.synthetic.seq_len = 64


def shrink_data(d: ml_collections.ConfigDict, *, n_train: int, n_eval: int) -> None:
  """Small synthetic splits with short sequences; real data (``data.dir``) keeps its
  sizes and its L, as ``data.synthetic.seq_len`` applies to synthetic data only.
  Tasks without a generator (digits, arrays) are left as they are."""
  if "synthetic" not in d:
    return
  d.synthetic.n_train = n_train
  d.synthetic.n_val = n_eval
  d.synthetic.n_test = n_eval
  if "resolution" in d:
    d.synthetic.seq_len = 16 * 16
  elif d.task == "speech":
    d.synthetic.seq_len = 1000
  elif d.task == "image":
    d.synthetic.seq_len = 1024
  else:
    d.synthetic.seq_len = min(d.seq_len, 256)
  if "max_length" in d.synthetic:
    d.synthetic.max_length = min(d.synthetic.max_length, d.synthetic.seq_len)
