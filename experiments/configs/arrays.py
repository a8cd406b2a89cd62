r"""Your own sequences: one .npz per split, or one .npz with named splits.

Tokens ``(N, L)`` int or features ``(N, L, F)`` float, labels ``(N,)``, optional
lengths ``(N,)``; L, the vocabulary or F, and the classes are inferred from the
arrays (last_nnx/data/arrays.py, docs/data.md).

  python -m last_nnx.train --config experiments/configs/arrays.py:s5 \
      --config.data.path=/data/mine.npz --workdir runs/mine

The model is a small general-purpose one (the digits setting, bidirectional):
4 layers, H = 64, 32 states, 20 epochs of AdamW (lr 4e-3, cosine), then one
LAST event to 30% (norms over the sequence length) and one fine-tuning epoch.
Scale it to your data on the command line (``--config.model.d_model=128``).
"""

from experiments.configs import base


def get_config(arg: str | None = None):
  model, presets = base.parse_arg(arg)
  c = base.base_config("arrays")

  # Model: 4 layers, H = 64, P = 32 in J = 4 blocks, bidirectional (whole sequences).
  c.model.n_layers = 4
  c.model.d_model = 64
  c.model.ssm_config.state_size = 32
  c.model.ssm_config.blocks = 4

  # Optimization: global lr 4e-3 (= 4 x the SSM lr 1e-3), wd 0.05, cosine.
  c.train.epochs = 20
  c.train.batch_size = 32
  c.optim.ssm_lr = 1e-3
  c.optim.lr_factor = 4.0
  c.optim.weight_decay = 0.05

  # Pruning: one LAST event to 30% after training, norms over L, one fine-tuning epoch.
  c.pruning.schedule = "one_shot"
  c.pruning.criterion = "last"
  c.pruning.horizon = -1
  c.pruning.target_ratio = 0.3
  c.pruning.finetune_epochs = 1

  if model != "s5":
    base.set_model_type(c, model)
    c.model.ssm_config.state_size = 32
  base.apply_presets(c, presets)
  return c
