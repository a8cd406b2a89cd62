r"""Pathfinder (LRA, 32 x 32): are the two dots connected? L = 1024.

S5 settings from run_lra_pathfinder.sh; S4D from state-spaces/s4
s4-lra-pathfinder.yaml.

  python -m last_nnx.train --config experiments/configs/pathfinder.py:s5,smoke \
      --workdir runs/pathfinder-smoke
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("pathfinder")

  # Model: 6 layers, H = 192, P = 256 in J = 8 blocks.
  c.model.n_layers = 6
  c.model.d_model = 192
  c.model.activation = "half_glu1"
  c.model.dropout = 0.05
  c.model.bn_momentum = 0.9
  c.model.ssm_config.state_size = 256
  c.model.ssm_config.blocks = 8

  # Optimization: bsz 64, 200 epochs, lr = 5 * 9e-4, wd 0.03.
  c.train.batch_size = 64
  c.train.epochs = 200
  c.optim.ssm_lr = 9e-4
  c.optim.lr_factor = 5.0
  c.optim.weight_decay = 0.03

  if model == "s4d":
    base.set_model_type(c, "s4d")
    # s4-lra-pathfinder.yaml: H 256, d_state 64, last pooling, lr 0.004, wd 0.03.
    c.model.d_model = 256
    c.model.dropout = 0.0
    c.model.activation = "full_glu"
    c.model.pooling = "last"
    c.optim.ssm_lr = 1e-3
    c.optim.lr_factor = 4.0
  elif model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
