r"""ListOps (LRA): hierarchical MAX/MIN/MED/SM expressions, 10 classes, L = 2000.

S5 settings from the LAST/S5 reference script run_lra_listops.sh; S4D settings
from state-spaces/s4 configs/experiment/lra/s4-lra-listops.yaml.

  python -m last_nnx.train --config experiments/configs/listops.py:s5,smoke \
      --workdir runs/listops-smoke
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("listops")

  # Model: 8 layers, H = 128, P = 16 in J = 8 blocks.
  c.model.n_layers = 8
  c.model.d_model = 128
  c.model.activation = "half_glu2"
  c.model.ssm_config.state_size = 16
  c.model.ssm_config.blocks = 8
  c.model.ssm_config.c_init = "lecun_normal"

  # Optimization: bsz 50, 40 epochs, lr = 3 * 1e-3, wd 0.04, BfastandCdecay.
  c.train.batch_size = 50
  c.train.epochs = 40
  c.optim.ssm_lr = 1e-3
  c.optim.lr_factor = 3.0
  c.optim.weight_decay = 0.04
  c.optim.opt_config = "BfastandCdecay"

  if model == "s4d":
    base.set_model_type(c, "s4d")
    # s4-lra-listops.yaml: post-norm BN, d_state 64, lr 0.01 (SSM 1e-3), wd 0.05.
    c.model.prenorm = False
    c.model.activation = "full_glu"
    c.optim.lr_factor = 10.0
    c.optim.weight_decay = 0.05
    c.optim.opt_config = "standard"
  elif model == "mamba2":
    # Mamba-2 (ours, no published LRA ListOps setting): N = 16 per group (the S5 run's P;
    # Mamba-1's default d_state), 16 heads x 16 over expand 2, chunk 64; one rate for
    # every parameter, the S5 run's global 3e-3. Causal (Mamba-2 has no backward scan).
    base.set_model_type(c, "mamba2")
    c.pruning.criterion = "calibrated"
  elif model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
