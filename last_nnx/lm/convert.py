"""Checkpoint configs and tensors <-> `Mamba2LMConfig` and `Mamba2LM` parameters.

Two formats (``FORMATS``), the same tensor names except the embedding:

* ``'mamba_ssm'`` (state-spaces/mamba2-*, ``MambaLMHeadModel``): ``config.json`` with
  ``d_model``, ``n_layer``, ``vocab_size`` (padded up to ``pad_vocab_size_multiple``),
  ``ssm_cfg`` (``layer: Mamba2``; every other mixer field at Mamba-2's default),
  ``tie_embeddings``; ``backbone.embedding.weight``;
* ``'transformers'`` (``Mamba2ForCausalLM``): ``hidden_size``, ``num_hidden_layers``,
  ``state_size``, ``n_groups``, ``head_dim``, ``num_heads``, ``time_step_limit``,
  ``tie_word_embeddings`` (default False), ``layer_norm_epsilon``;
  ``backbone.embeddings.weight``.

Per layer ``i`` (PyTorch layouts): ``in_proj.weight (2e + 2GN + nh, D)`` with rows
``[z, x, B, C, dt]`` (B and C laid out ``(g n)``), ``conv1d.weight (e + 2GN, 1, W)`` and
``conv1d.bias`` over channels ``[x, B, C]``, ``dt_bias, A_log, D (nh,)``, ``norm.weight
(e,)`` (the gated norm), ``out_proj.weight (D, e)``, and the block's ``norm.weight (D,)``.
Our `last_nnx.ssm.Mamba2` keeps each block as its own parameter (``in_z (D, e)``, ``in_B
(D, G, N)``, ``conv_B (W, G, N)``, ...): loading is a split and a transpose, saving the
concatenation. The conv is the same function: PyTorch's padded cross-correlation is
``y[t] = b + sum_k w[k] x[t - W + 1 + k]``, our ``causal_conv``.

A model pruned layer-adaptively carries its per-layer state sizes in the extra config
field ``last_nnx: {layer_state_sizes: [...]}`` (read back here; stock loaders ignore it
in transformers' format and refuse the shapes in mamba_ssm's). Pruned and padding slots
are written with zero B and C paths (in_proj rows, conv weights and biases): their
``B_t = C_t = silu(0) = 0``, so they contribute exactly nothing.
"""

import math

import numpy as np

from last_nnx.lm.config import Mamba2LMConfig

FORMATS = ("mamba_ssm", "transformers")
EMBEDDING_KEY = {
  "mamba_ssm": "backbone.embedding.weight",
  "transformers": "backbone.embeddings.weight",
}
EXTRA_FIELD = "last_nnx"
SUPPORTED = (
  "mamba_ssm's MambaLMHeadModel with ssm_cfg.layer = 'Mamba2' (state-spaces/mamba2-*) "
  "or transformers' Mamba2ForCausalLM"
)


class CheckpointError(ValueError):
  """A checkpoint that cannot be read or written; the message says what to do."""


# ---- configs ---------------------------------------------------------------------------


def detect_format(raw: dict) -> str:
  """``'mamba_ssm'`` or ``'transformers'`` from a parsed config.json, else CheckpointError."""
  archs = raw.get("architectures") or []
  if raw.get("model_type") == "mamba2" or "Mamba2ForCausalLM" in archs:
    return "transformers"
  if "d_model" in raw and "n_layer" in raw and "model_type" not in raw:
    layer = (raw.get("ssm_cfg") or {}).get("layer", "Mamba1")
    if layer != "Mamba2":
      raise CheckpointError(
        f"config.json describes a mamba_ssm model with ssm_cfg.layer = "
        f"{layer!r} (Mamba-1 when unset); last-nnx loads Mamba-2 LMs only: "
        f"{SUPPORTED}"
      )
    return "mamba_ssm"
  kind = raw.get("model_type") or ", ".join(archs) or "unknown"
  raise CheckpointError(
    f"config.json describes a {kind!r} model, not a Mamba-2 LM; last-nnx loads {SUPPORTED}"
  )


def _refuse_unless(ok: bool, what: str) -> None:
  if not ok:
    raise CheckpointError(
      f"config.json sets {what}, which last-nnx's Mamba-2 LM does not "
      "implement (pure Mamba-2 blocks with RMS norms and no biases only)"
    )


def _layer_sizes(raw: dict):
  sizes = (raw.get(EXTRA_FIELD) or {}).get("layer_state_sizes")
  return None if sizes is None else tuple(int(n) for n in sizes)


def _dt_limit(value) -> tuple[float, float]:
  """A ``(lo, hi)`` clamp as configs spell it; a non-number bound means none.

  transformers 5 writes ``float('inf')`` as ``{}`` in config.json; others write
  ``Infinity`` or null.
  """
  value = list(value or (0.0, math.inf))
  number = lambda v, default: float(v) if isinstance(v, (int, float, str)) else default
  return number(value[0], 0.0), number(value[1], math.inf)


def config_from_dict(raw: dict) -> tuple[Mamba2LMConfig, str]:
  """``(config, format)`` of a parsed config.json (module docstring)."""
  fmt = detect_format(raw)
  if fmt == "mamba_ssm":
    ssm = dict(raw.get("ssm_cfg") or {})
    _refuse_unless(not raw.get("d_intermediate"), "d_intermediate > 0 (MLP blocks)")
    _refuse_unless(not raw.get("attn_layer_idx"), "attn_layer_idx (attention layers)")
    _refuse_unless(raw.get("rms_norm", True), "rms_norm = false (LayerNorm blocks)")
    _refuse_unless(ssm.get("rmsnorm", True), "ssm_cfg.rmsnorm = false (no gated norm)")
    _refuse_unless(not ssm.get("norm_before_gate", False), "ssm_cfg.norm_before_gate = true")
    _refuse_unless(not ssm.get("bias", False), "ssm_cfg.bias = true")
    _refuse_unless(not ssm.get("D_has_hdim", False), "ssm_cfg.D_has_hdim = true")
    d_model, expand = int(raw["d_model"]), int(ssm.get("expand", 2))
    _refuse_unless(ssm.get("d_ssm") in (None, expand * d_model), "ssm_cfg.d_ssm < d_inner")
    pad = int(raw.get("pad_vocab_size_multiple", 8))
    vocab = int(raw["vocab_size"])
    config = Mamba2LMConfig(
      vocab_size=vocab + (-vocab) % pad,
      d_model=d_model,
      n_layers=int(raw["n_layer"]),
      state_size=int(ssm.get("d_state", 128)),
      layer_state_sizes=_layer_sizes(raw),
      head_dim=int(ssm.get("headdim", 64)),
      n_groups=int(ssm.get("ngroups", 1)),
      expand=expand,
      conv_width=int(ssm.get("d_conv", 4)),
      chunk_size=int(ssm.get("chunk_size", 256)),
      dt_limit=_dt_limit(ssm.get("dt_limit")),
      gated_norm="group",
      norm_eps=float(raw.get("norm_epsilon", 1e-5)),
      tie_embeddings=bool(raw.get("tie_embeddings", True)),
      pad_vocab_size_multiple=pad,
    )
    return config, fmt
  _refuse_unless(not raw.get("use_bias", False), "use_bias = true")
  _refuse_unless(raw.get("hidden_act", "silu") == "silu", f"hidden_act = {raw.get('hidden_act')!r}")
  _refuse_unless(raw.get("rms_norm", True), "rms_norm = false")
  hidden, heads = int(raw.get("hidden_size", 4096)), int(raw.get("num_heads", 128))
  config = Mamba2LMConfig(
    vocab_size=int(raw.get("vocab_size", 32768)),
    d_model=hidden,
    n_layers=int(raw.get("num_hidden_layers", 64)),
    state_size=int(raw.get("state_size", 128)),
    layer_state_sizes=_layer_sizes(raw),
    head_dim=int(raw.get("head_dim", 64)),
    n_heads=heads,
    n_groups=int(raw.get("n_groups", 8)),
    expand=int(raw.get("expand", 2)),
    conv_width=int(raw.get("conv_kernel", 4)),
    chunk_size=int(raw.get("chunk_size", 256)),
    dt_limit=_dt_limit(raw.get("time_step_limit")),
    gated_norm="group",
    norm_eps=float(raw.get("layer_norm_epsilon", 1e-5)),
    tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
    pad_vocab_size_multiple=1,
  )
  return config, fmt


def config_to_dict(
  config: Mamba2LMConfig, fmt: str, state_size: int, layer_state_sizes: tuple[int, ...] | None
) -> dict:
  """The config.json of ``config`` in ``fmt`` with N = ``state_size`` in every layer.

  ``layer_state_sizes`` (native layer-adaptive files) goes into the extra field.
  """
  if config.gated_norm != "group" and config.n_groups > 1:
    raise CheckpointError(
      "this model's gated norm spans the whole width with n_groups > 1; "
      "both formats normalize per group: it cannot be saved exactly"
    )
  if fmt == "mamba_ssm":
    if config.heads * config.head_dim != config.expand * config.d_model:
      raise CheckpointError(
        f"mamba_ssm's format derives the heads from expand * d_model / "
        f"headdim; this model has {config.heads} heads: save "
        "format='transformers'"
      )
    ssm = {
      "layer": "Mamba2",
      "d_state": state_size,
      "d_conv": config.conv_width,
      "expand": config.expand,
      "headdim": config.head_dim,
      "ngroups": config.n_groups,
      "chunk_size": config.chunk_size,
    }
    if config.dt_limit != (0.0, math.inf):
      ssm["dt_limit"] = list(config.dt_limit)
    pad = config.pad_vocab_size_multiple
    raw = {
      "d_model": config.d_model,
      "d_intermediate": 0,
      "n_layer": config.n_layers,
      "vocab_size": config.vocab_size,
      "ssm_cfg": ssm,
      "attn_layer_idx": [],
      "attn_cfg": {},
      "rms_norm": True,
      "residual_in_fp32": True,
      "fused_add_norm": True,
      "pad_vocab_size_multiple": pad if config.vocab_size % pad == 0 else 1,
      "tie_embeddings": config.tie_embeddings,
      "norm_epsilon": config.norm_eps,
    }
  else:
    raw = {
      "architectures": ["Mamba2ForCausalLM"],
      "model_type": "mamba2",
      "vocab_size": config.vocab_size,
      "hidden_size": config.d_model,
      "num_hidden_layers": config.n_layers,
      "state_size": state_size,
      "n_groups": config.n_groups,
      "head_dim": config.head_dim,
      "num_heads": config.heads,
      "expand": config.d_inner // config.d_model,
      "conv_kernel": config.conv_width,
      "chunk_size": config.chunk_size,
      "time_step_limit": list(config.dt_limit),
      "layer_norm_epsilon": config.norm_eps,
      "tie_word_embeddings": config.tie_embeddings,
      "use_bias": False,
      "use_conv_bias": True,
      "hidden_act": "silu",
      "residual_in_fp32": True,
      "rms_norm": True,
    }
    if config.d_inner != raw["expand"] * config.d_model:
      raise CheckpointError(
        f"transformers' format needs num_heads * head_dim = expand * "
        f"hidden_size; this model has d_inner {config.d_inner} and "
        f"d_model {config.d_model}"
      )
  if layer_state_sizes is not None:
    raw[EXTRA_FIELD] = {"layer_state_sizes": list(layer_state_sizes)}
  return raw


# ---- tensors ---------------------------------------------------------------------------


def expected_shapes(config: Mamba2LMConfig, fmt: str) -> dict[str, tuple[int, ...]]:
  """Every tensor a checkpoint of ``config`` holds, with its PyTorch shape."""
  d, e, nh, g, w = (
    config.d_model,
    config.d_inner,
    config.heads,
    config.n_groups,
    config.conv_width,
  )
  shapes = {EMBEDDING_KEY[fmt]: (config.vocab_size, d), "backbone.norm_f.weight": (d,)}
  for i in range(config.n_layers):
    n = config.layer_state_size(i)
    p = f"backbone.layers.{i}."
    shapes.update(
      {
        p + "norm.weight": (d,),
        p + "mixer.in_proj.weight": (2 * e + 2 * g * n + nh, d),
        p + "mixer.conv1d.weight": (e + 2 * g * n, 1, w),
        p + "mixer.conv1d.bias": (e + 2 * g * n,),
        p + "mixer.dt_bias": (nh,),
        p + "mixer.A_log": (nh,),
        p + "mixer.D": (nh,),
        p + "mixer.norm.weight": (e,),
        p + "mixer.out_proj.weight": (d, e),
      }
    )
  if not config.tie_embeddings:
    shapes["lm_head.weight"] = (config.vocab_size, d)
  return shapes


def mixer_params(tensors: dict, prefix: str, config: Mamba2LMConfig, n: int) -> dict:
  """Our `Mamba2` parameter arrays of one layer from its checkpoint tensors."""
  d, e, g = config.d_model, config.d_inner, config.n_groups
  w_in = tensors[prefix + "in_proj.weight"].T  # (D, 2e + 2GN + nh)
  kernel = tensors[prefix + "conv1d.weight"][:, 0, :].T  # (W, e + 2GN)
  bias = tensors.get(prefix + "conv1d.bias")
  bias = np.zeros(kernel.shape[1], np.float32) if bias is None else bias
  gn, wd = g * n, kernel.shape[0]
  return {
    "in_z": w_in[:, :e],
    "in_x": w_in[:, e : 2 * e],
    "in_B": w_in[:, 2 * e : 2 * e + gn].reshape(d, g, n),
    "in_C": w_in[:, 2 * e + gn : 2 * e + 2 * gn].reshape(d, g, n),
    "in_dt": w_in[:, 2 * e + 2 * gn :],
    "conv_x": kernel[:, :e],
    "conv_x_bias": bias[:e],
    "conv_B": kernel[:, e : e + gn].reshape(wd, g, n),
    "conv_B_bias": bias[e : e + gn].reshape(g, n),
    "conv_C": kernel[:, e + gn :].reshape(wd, g, n),
    "conv_C_bias": bias[e + gn :].reshape(g, n),
    "dt_bias": tensors[prefix + "dt_bias"],
    "A_log": tensors[prefix + "A_log"],
    "D": tensors[prefix + "D"],
    "norm_scale": tensors[prefix + "norm.weight"],
    "out": tensors[prefix + "out_proj.weight"].T,
  }


def mixer_tensors(params: dict, mask: np.ndarray, prefix: str, n: int) -> dict:
  """One layer's checkpoint tensors from our parameters, its states padded to ``n``.

  Slots where ``mask (G, N_layer)`` is 0, and the padding up to ``n``, get zero B and
  C paths (module docstring).
  """
  live = mask > 0  # (G, N_layer)
  pad = n - live.shape[1]

  def states(a, axis):  # zero dead slots, pad the state axis to n: (..., G, N) -> (..., G, n)
    a = np.where(np.expand_dims(live, tuple(range(axis))), a, 0.0)
    widths = [(0, 0)] * a.ndim
    widths[axis + 1] = (0, pad)
    return np.pad(a, widths)

  d = params["in_z"].shape[0]
  wd = params["conv_x"].shape[0]
  w_in = np.concatenate(
    [
      params["in_z"],
      params["in_x"],
      states(params["in_B"], 1).reshape(d, -1),
      states(params["in_C"], 1).reshape(d, -1),
      params["in_dt"],
    ],
    axis=1,
  )
  kernel = np.concatenate(
    [
      params["conv_x"],
      states(params["conv_B"], 1).reshape(wd, -1),
      states(params["conv_C"], 1).reshape(wd, -1),
    ],
    axis=1,
  )
  bias = np.concatenate(
    [
      params["conv_x_bias"],
      states(params["conv_B_bias"], 0).reshape(-1),
      states(params["conv_C_bias"], 0).reshape(-1),
    ]
  )
  return {
    prefix + "in_proj.weight": w_in.T,
    prefix + "conv1d.weight": kernel.T[:, None, :],
    prefix + "conv1d.bias": bias,
    prefix + "dt_bias": params["dt_bias"],
    prefix + "A_log": params["A_log"],
    prefix + "D": params["D"],
    prefix + "norm.weight": params["norm_scale"],
    prefix + "out_proj.weight": params["out"].T,
  }


def dead_states(params: dict) -> np.ndarray:
  """``(G, N)`` bool: slots whose C path is exactly zero (in_proj column, conv, bias).

  Such a state is never read (``C_t[n] = silu(0) = 0``): a pruned or padding slot.
  """
  return (
    (params["in_C"] == 0).all(axis=0)
    & (params["conv_C"] == 0).all(axis=0)
    & (params["conv_C_bias"] == 0)
  )
