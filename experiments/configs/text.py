r"""Text (LRA IMDB, byte level): binary sentiment, L = 4096.

S5 settings from run_lra_imdb.sh; S4D from state-spaces/s4 s4-lra-imdb.yaml.

  python -m last_nnx.train --config experiments/configs/text.py:s5,smoke \
      --workdir runs/text-smoke
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("text")

  # Model: 6 layers, H = 256, P = 192 in J = 12 blocks.
  c.model.n_layers = 6
  c.model.d_model = 256
  c.model.activation = "half_glu2"
  c.model.dropout = 0.1
  c.model.ssm_config.state_size = 192
  c.model.ssm_config.blocks = 12

  # Optimization: bsz 50, 35 epochs, lr = 4 * 1e-3, wd 0.07, dt_global, no warmup.
  c.train.batch_size = 50
  c.train.epochs = 35
  c.optim.ssm_lr = 1e-3
  c.optim.lr_factor = 4.0
  c.optim.weight_decay = 0.07
  c.optim.dt_global = True
  c.optim.warmup_epochs = 0.0

  if model == "s4d":
    base.set_model_type(c, "s4d")
    # s4-lra-imdb.yaml: prenorm BN, d_state 64, bsz 16, 32 epochs, lr 0.01, wd 0.05.
    c.model.dropout = 0.0
    c.model.activation = "full_glu"
    c.train.batch_size = 16
    c.train.epochs = 32
    c.optim.lr_factor = 10.0
    c.optim.weight_decay = 0.05
    c.optim.dt_global = False
    c.optim.warmup_epochs = 1.0
  elif model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
