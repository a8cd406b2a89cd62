r"""Image (LRA sCIFAR, grayscale): 10 classes, L = 1024 pixels.

S5 settings from run_lra_cifar.sh; S4D from state-spaces/s4 s4-lra-cifar.yaml.

  python -m last_nnx.train --config experiments/configs/image.py:s5,smoke \
      --workdir runs/image-smoke
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("image")

  # Model: 6 layers, H = 512, P = 384 in J = 3 blocks.
  c.model.n_layers = 6
  c.model.d_model = 512
  c.model.activation = "half_glu1"
  c.model.dropout = 0.1
  c.model.ssm_config.state_size = 384
  c.model.ssm_config.blocks = 3
  c.model.ssm_config.c_init = "lecun_normal"
  c.model.ssm_config.clip_eigs = True

  # Optimization: bsz 50, 250 epochs, lr = 4.5 * 1e-3, wd 0.07, BfastandCdecay.
  c.train.batch_size = 50
  c.train.epochs = 250
  c.optim.ssm_lr = 1e-3
  c.optim.lr_factor = 4.5
  c.optim.weight_decay = 0.07
  c.optim.opt_config = "BfastandCdecay"

  if model == "s4d":
    base.set_model_type(c, "s4d")
    # s4-lra-cifar.yaml: post-norm LayerNorm, d_state 64, 200 epochs, lr 0.01, wd 0.05.
    c.model.norm = "layer"
    c.model.prenorm = False
    c.model.activation = "full_glu"
    c.train.epochs = 200
    c.optim.lr_factor = 10.0
    c.optim.weight_decay = 0.05
    c.optim.opt_config = "standard"
  elif model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
