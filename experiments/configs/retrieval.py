r"""Retrieval (LRA AAN): do two byte-level citations documents match? L = 4000 each.

S5 settings from run_lra_aan.sh; S4D from state-spaces/s4 s4-lra-aan.yaml.

  python -m last_nnx.train --config experiments/configs/retrieval.py:s5,smoke \
      --workdir runs/retrieval-smoke
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("retrieval")

  # Model: 6 layers, H = 128, P = 256 in J = 16 blocks; dual-tower head.
  c.model.n_layers = 6
  c.model.d_model = 128
  c.model.activation = "half_glu1"
  c.model.ssm_config.state_size = 256
  c.model.ssm_config.blocks = 16
  c.model.ssm_config.c_init = "trunc_standard_normal"

  # Optimization: bsz 32, 5 epochs, lr = 2 * 1e-3, wd 0.05, dt_global.
  c.train.batch_size = 32
  c.train.epochs = 5
  c.optim.ssm_lr = 1e-3
  c.optim.lr_factor = 2.0
  c.optim.weight_decay = 0.05
  c.optim.dt_global = True

  if model == "s4d":
    base.set_model_type(c, "s4d")
    # s4-lra-aan.yaml: H 256, d_state 64, bsz 64, 20 epochs, lr 0.01, wd 0.05.
    c.model.d_model = 256
    c.model.activation = "full_glu"
    c.train.batch_size = 64
    c.train.epochs = 20
    c.optim.lr_factor = 10.0
    c.optim.dt_global = False
  elif model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
