r"""Speech Commands v2 (35 classes, 16 kHz raw audio): L = 16000.

S5 settings from run_speech35.sh. S4D: the same shape with d_state 64 (the S4
repository has no LRA-style S4D speech config; numbers follow the S5 script).

  python -m last_nnx.train --config experiments/configs/speech.py:s5,smoke \
      --workdir runs/speech-smoke
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("speech")

  # Model: 6 layers, H = 96, P = 128 in J = 16 blocks.
  c.model.n_layers = 6
  c.model.d_model = 96
  c.model.activation = "half_glu1"
  c.model.dropout = 0.1
  c.model.ssm_config.state_size = 128
  c.model.ssm_config.blocks = 16
  c.model.ssm_config.c_init = "lecun_normal"

  # Optimization: bsz 16, 40 epochs, lr = 4 * 2e-3, wd 0.04, noBCdecay.
  c.train.batch_size = 16
  c.train.epochs = 40
  c.optim.ssm_lr = 2e-3
  c.optim.lr_factor = 4.0
  c.optim.weight_decay = 0.04
  c.optim.opt_config = "noBCdecay"

  if model != "s5":
    base.set_model_type(c, model)
  base.apply_presets(c, presets)
  return c
