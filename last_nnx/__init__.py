"""last-nnx: Layer-Adaptive STate pruning (LAST) for deep state space models in Flax NNX.

Packages: `last_nnx.ssm` (S5, S4D, LRU behind the `PrunableSSM` protocol),
`last_nnx.model`, `last_nnx.pruning`, `last_nnx.train`, `last_nnx.data`.
"""

__version__ = "0.1.0"
