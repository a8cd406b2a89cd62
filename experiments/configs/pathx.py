r"""Path-X (LRA, Pathfinder at 128 x 128): L = 16384.

S5 settings from run_lra_pathx.sh; S4D from state-spaces/s4 s4-lra-pathx.yaml.
On a CPU one epoch of the full configuration takes hours: the log shows the
ETA at once. Gradient accumulation and rematerialization keep memory bounded.

  python -m last_nnx.train --config experiments/configs/pathx.py:s5 \
      --workdir runs/pathx --config.data.dir=/data/lra_release
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("pathx")

  # Model: 6 layers, H = 128, P = 256 in J = 16 blocks, dt_min 1e-4.
  c.model.n_layers = 6
  c.model.d_model = 128
  c.model.activation = "half_glu1"
  c.model.bn_momentum = 0.9
  c.model.remat = True
  c.model.ssm_config.state_size = 256
  c.model.ssm_config.blocks = 16
  c.model.ssm_config.dt_min = 1e-4
  c.model.ssm_config.c_init = "complex_normal"

  # Optimization: bsz 32, 75 epochs, lr = 3 * 6e-4, wd 0.06, BandCdecay.
  c.train.batch_size = 32
  c.train.epochs = 75
  c.train.log_every_steps = 10
  # 32 sequences of 16k steps need ~37 GB even with remat; 8 micro-batches of 4 fit in ~5 GB.
  c.optim.grad_accum = 8
  c.optim.ssm_lr = 6e-4
  c.optim.lr_factor = 3.0
  c.optim.weight_decay = 0.06
  c.optim.opt_config = "BandCdecay"

  if model == "s4d":
    base.set_model_type(c, "s4d")
    # s4-lra-pathx.yaml: H 256, d_state 64, bsz 16, 50 epochs, lr 1e-3 (SSM 5e-4), wd 0.05.
    c.model.d_model = 256
    c.model.activation = "full_glu"
    c.train.batch_size = 16
    c.optim.grad_accum = 4
    c.train.epochs = 50
    c.optim.ssm_lr = 5e-4
    c.optim.lr_factor = 2.0
    c.optim.weight_decay = 0.05
    c.optim.opt_config = "standard"
    c.optim.warmup_epochs = 5.0
  elif model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
