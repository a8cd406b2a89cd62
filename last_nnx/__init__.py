"""last-nnx: Layer-Adaptive STate pruning (LAST) for deep state space models in Flax NNX.

Packages: `last_nnx.ssm` (S5, S4D, LRU and Mamba-2 behind the `PrunableSSM`
protocol), `last_nnx.model`, `last_nnx.pruning`, `last_nnx.data`, `last_nnx.train`,
`last_nnx.sweeps`, `last_nnx.lm`; the programs are in `last_nnx.cli`.
"""

__version__ = "0.1.0"
