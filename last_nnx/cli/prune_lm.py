r"""The LM side of the `prune` and `sweep` programs: their text flags and printed lines.

The library is `last_nnx.sweeps.saved_lm` (what is pruned, the text, the programs' work).
"""

from typing import TYPE_CHECKING

from absl import flags

if TYPE_CHECKING:  # the library imports jax, orbax and the text pipeline: not before flags parse
  from last_nnx.sweeps.saved_lm import Recovery, TextOptions

FLAGS = flags.FLAGS


def define_flags(prune: bool) -> None:
  """The LM flags of `prune` (``prune=True``) or `sweep`, beside their own."""
  flags.DEFINE_string(
    "text",
    "pydocs",
    "LM checkpoint directories: the text to calibrate and "
    "evaluate on: 'pydocs' (CPython's prose) or .txt/.jsonl files (a path, "
    "folder or glob).",
  )
  flags.DEFINE_integer("seq_len", 128, "LM checkpoint directories: window length of the text.")
  flags.DEFINE_integer("calibration_windows", 128, "LM: calibration windows (GHOST: 128).")
  flags.DEFINE_integer("calibration_length", 128, "LM: tokens per calibration window.")
  flags.DEFINE_integer(
    "eval_windows", 0, "LM: evaluate on the first this many windows of a split (0: all)."
  )
  if prune:
    flags.DEFINE_enum(
      "allocation",
      None,
      ["global", "uniform", "measured"],
      "LM: global (LAST's one threshold), uniform (same fraction per layer) or measured "
      "(counts from each layer's measured loss cost); default global.",
    )
    flags.DEFINE_bool(
      "sequential",
      False,
      "LM: re-score each layer on the model with the earlier layers pruned (GHOST).",
    )
    flags.DEFINE_enum(
      "format",
      "transformers",
      ["transformers", "mamba_ssm"],
      "LM: checkpoint format of the pruned model.",
    )
    flags.DEFINE_integer(
      "finetune_steps",
      0,
      "LM: fine-tune the pruned model this many steps before writing it (0: no fine-tuning).",
    )
    flags.DEFINE_enum(
      "finetune_target",
      "logits",
      ["logits", "text"],
      "LM: fine-tune on the dense model's logits (distillation, KL) or on the train text.",
    )
    flags.DEFINE_float("finetune_lr", 3e-4, "LM: fine-tuning learning rate (AdamW, constant).")
    flags.DEFINE_enum(
      "layout",
      "padded",
      ["padded", "native"],
      "LM: layer-adaptive sizes zero-padded (stock loaders) or native (per-layer N, last-nnx).",
    )


def prune_lines(summary: dict) -> list[str]:
  lines = []
  for r in summary["results"]:
    head = f"{r['method']}: {100 * r['ratio_achieved']:.1f}% of states pruned"
    if "max_drop" in r:
      m = r["max_drop"]
      head += (
        f" (largest within {m['tolerance']:g}% of dense val perplexity "
        f"{m['dense']:.3f}: {m['perplexity']:.3f})"
      )
    lines.append(head)
    lines.append(
      f"  states per layer {r['per_layer']}; state bytes per stream "
      f"{r['state_bytes_per_stream'][0]} -> {r['state_bytes_per_stream'][1]}"
    )
    for split, m in r["splits"].items():
      b, a = m["before"], m["after"]
      extra = (
        f", bits per byte {b['bits_per_byte']:.4f} -> {a['bits_per_byte']:.4f}"
        if "bits_per_byte" in b
        else ""
      )
      lines.append(f"  {split}: perplexity {b['perplexity']:.4f} -> {a['perplexity']:.4f}" + extra)
      if "finetune" in r:
        f = r["finetune"]["splits"][split]
        lines.append(
          f"    after {r['finetune']['steps']} steps of fine-tuning on the "
          f"{'dense logits' if r['finetune']['target'] == 'logits' else 'text'}: perplexity "
          f"{f['perplexity']:.4f}"
          + (f", bits per byte {f['bits_per_byte']:.4f}" if "bits_per_byte" in f else "")
        )
    lines.append(f"  written to {r['out_dir']}")
  return lines


def recovery() -> "Recovery":
  """The fine-tuning flags as `last_nnx.sweeps.saved_lm.Recovery`."""
  from last_nnx.sweeps.saved_lm import Recovery

  return Recovery(FLAGS.finetune_steps, FLAGS.finetune_target, FLAGS.finetune_lr)


def text_options() -> "TextOptions":
  """The text flags as `last_nnx.sweeps.saved_lm.TextOptions`."""
  from last_nnx.sweeps.saved_lm import TextOptions

  return TextOptions(
    FLAGS.text,
    FLAGS.seq_len,
    FLAGS.calibration_windows,
    FLAGS.calibration_length,
    FLAGS.eval_windows,
  )
