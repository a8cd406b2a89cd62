"""Mamba-2 causal language models: the model, generation, perplexity, checkpoint io."""

from last_nnx.lm.config import Mamba2LMConfig
from last_nnx.lm.generate import evaluate, generate, sample_token, token_nll
from last_nnx.lm.model import Mamba2Block, Mamba2LM, RMSNorm

__all__ = [
  "Mamba2Block",
  "Mamba2LM",
  "Mamba2LMConfig",
  "RMSNorm",
  "evaluate",
  "generate",
  "sample_token",
  "token_nll",
]
