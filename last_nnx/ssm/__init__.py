"""SSM layers: S5, S4D, the LRU (LTI) and Mamba-2 (selective), each implementing
`PrunableSSM` on the `SSMLayer` base (see `base.py`)."""

from last_nnx.ssm.base import (
  DiagonalSSM,
  PrunableSSM,
  SSMLayer,
  StateMask,
  StateModes,
  find_prunable_layers,
)
from last_nnx.ssm.lru import LRU
from last_nnx.ssm.mamba2 import Mamba2  # registers model.ssm=mamba2
from last_nnx.ssm.registry import make_ssm, register_ssm, registered_ssms, ssm_kind
from last_nnx.ssm.s4d import S4D
from last_nnx.ssm.s5 import S5

register_ssm("s5")(S5)
register_ssm("s4d")(S4D)
register_ssm("lru")(LRU)

__all__ = [
  "DiagonalSSM",
  "LRU",
  "Mamba2",
  "PrunableSSM",
  "S4D",
  "S5",
  "SSMLayer",
  "StateMask",
  "StateModes",
  "find_prunable_layers",
  "make_ssm",
  "register_ssm",
  "registered_ssms",
  "ssm_kind",
]
