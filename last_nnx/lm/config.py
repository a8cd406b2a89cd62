"""The typed configuration of a Mamba-2 causal language model (`Mamba2LMConfig`).

One frozen dataclass holds what both checkpoint formats describe (mamba_ssm's
``MambaLMHeadModel`` and transformers' ``Mamba2ForCausalLM``, see `last_nnx.lm.hub`)
plus what last-nnx adds: per-layer state sizes after layer-adaptive pruning.
Defaults are Mamba-2's (mamba_ssm ``Mamba2``): N 128, head_dim 64, one group, conv
width 4, chunks of 256, expand 2, no dt clamp, RMS norms with eps 1e-5.
"""

import dataclasses
import math

GATED_NORMS = ("group", "full")


@dataclasses.dataclass(frozen=True)
class Mamba2LMConfig:
  """Shapes and options of `last_nnx.lm.Mamba2LM`.

  Attributes:
    vocab_size: rows of the embedding and the LM head (padded, as stored).
    d_model: residual width D.
    n_layers: number of (RMSNorm -> Mamba-2 mixer -> residual) blocks.
    state_size: N, states per group of every layer (the largest N with
      ``layer_state_sizes``).
    layer_state_sizes: per-layer N after layer-adaptive pruning, or None (all N).
    head_dim: P, channels per head.
    n_heads: heads per layer; None: ``expand * d_model / head_dim``.
    n_groups: G, groups of heads sharing B and C.
    expand: ``d_inner / d_model`` when ``n_heads`` is None.
    conv_width: W of the causal depthwise conv.
    chunk_size: the checkpoint's chunk length (written back when saving).
    scan_chunk: T of our chunked SSD scan (prefill, forward); None: ``min(chunk_size,
      128)``. Any T gives the same outputs up to float32 rounding; at the mamba2-130m
      shape on this CPU, T = 128 ran the scan ~3x and the whole prefill 1.2-1.4x faster
      than 256 (fewer ``T x T`` decay terms; `last_nnx.bench.lm`'s docstring).
    dt_limit: ``(lo, hi)`` clamp of dt after the softplus; ``(0, inf)``: none.
    gated_norm: ``'group'``: the mixer's gated RMSNorm normalizes each group's
      ``d_inner / G`` channels (mamba_ssm); ``'full'``: the whole ``d_inner``
      (transformers). They agree when ``n_groups == 1``.
    norm_eps: epsilon of every RMS norm (block, final, gated).
    tie_embeddings: the LM head is the embedding matrix.
    pad_vocab_size_multiple: written back to mamba_ssm configs (the stored
      vocab is already a multiple of it).
  """

  vocab_size: int = 50288
  d_model: int = 768
  n_layers: int = 24
  state_size: int = 128
  layer_state_sizes: tuple[int, ...] | None = None
  head_dim: int = 64
  n_heads: int | None = None
  n_groups: int = 1
  expand: int = 2
  conv_width: int = 4
  chunk_size: int = 256
  scan_chunk: int | None = None
  dt_limit: tuple[float, float] = (0.0, math.inf)
  gated_norm: str = "group"
  norm_eps: float = 1e-5
  tie_embeddings: bool = True
  pad_vocab_size_multiple: int = 16

  def __post_init__(self):
    if self.gated_norm not in GATED_NORMS:
      raise ValueError(
        f"Mamba2LMConfig.gated_norm = {self.gated_norm!r}; expected one of {GATED_NORMS}"
      )
    if self.layer_state_sizes is not None:
      sizes = tuple(int(n) for n in self.layer_state_sizes)
      if len(sizes) != self.n_layers or min(sizes) < 1:
        raise ValueError(
          f"Mamba2LMConfig.layer_state_sizes has {len(sizes)} entries "
          f"{sizes}; expected n_layers = {self.n_layers} sizes >= 1"
        )
      object.__setattr__(self, "layer_state_sizes", sizes)
    if self.heads * self.head_dim != self.d_inner or self.heads % self.n_groups:
      raise ValueError(
        f"Mamba2LMConfig: {self.heads} heads of {self.head_dim} must fill "
        f"d_inner = {self.d_inner} and be a multiple of n_groups = "
        f"{self.n_groups}"
      )
    object.__setattr__(self, "dt_limit", (float(self.dt_limit[0]), float(self.dt_limit[1])))

  @classmethod
  def tiny(cls, **overrides) -> "Mamba2LMConfig":
    """A model for tests: vocab 64, D 32, 2 layers, N 8, 4 heads of 16, chunks of 16."""
    fields = dict(
      vocab_size=64,
      d_model=32,
      n_layers=2,
      state_size=8,
      head_dim=16,
      chunk_size=16,
      pad_vocab_size_multiple=8,
    )
    return cls(**{**fields, **overrides})

  @classmethod
  def mamba2_130m(cls, **overrides) -> "Mamba2LMConfig":
    """state-spaces/mamba2-130m's shape (random weights: for speed, not text)."""
    return cls(**overrides)

  @property
  def d_inner(self) -> int:
    return self.heads * self.head_dim if self.n_heads is not None else self.expand * self.d_model

  @property
  def heads(self) -> int:
    return self.n_heads if self.n_heads is not None else self.expand * self.d_model // self.head_dim

  def layer_state_size(self, i: int) -> int:
    """N of layer ``i``."""
    return self.state_size if self.layer_state_sizes is None else self.layer_state_sizes[i]

  def mixer_options(self, i: int) -> dict:
    """Keyword options of layer ``i``'s `last_nnx.ssm.Mamba2`."""
    return dict(
      state_size=self.layer_state_size(i),
      n_heads=self.heads,
      head_dim=self.head_dim,
      n_groups=self.n_groups,
      conv_width=self.conv_width,
      chunk_size=self.scan_chunk or min(self.chunk_size, 128),
      dt_limit=self.dt_limit,
      norm_groups=self.n_groups if self.gated_norm == "group" else 1,
      norm_eps=self.norm_eps,
    )
