"""``python -m last_nnx.export --workdir W --out DIR``: a trained (pruned) model to files
that load without this library (what is written: `last_nnx.export`)."""

import json
import os
import sys

from absl import app, flags, logging

from last_nnx.export import FORMATS, WHICH, export_workdir


def _define_flags() -> None:
  flags.DEFINE_string("workdir", None, "Training workdir (holds best/ and checkpoints/).")
  flags.DEFINE_enum("which", "best", sorted(WHICH), "Checkpoint to export.")
  flags.DEFINE_string("out", None, "Output directory.")
  flags.DEFINE_list("formats", list(FORMATS), "Artifacts to write.")
  flags.DEFINE_list("platforms", ["cpu", "cuda"], "jax.export lowering platforms.")
  flags.DEFINE_integer(
    "seq_len", None, "Sequence length of the exported forward (default: the training data's)."
  )
  flags.DEFINE_bool("compact", True, "Remove masked (pruned) state slots before exporting.")
  flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  FLAGS = flags.FLAGS
  logging.set_verbosity(logging.WARNING)  # orbax logs dozens of INFO lines per restore
  try:
    manifest = export_workdir(
      FLAGS.workdir,
      FLAGS.out,
      which=FLAGS.which,
      seq_len=FLAGS.seq_len,
      formats=FLAGS.formats,
      platforms=FLAGS.platforms,
      compact=FLAGS.compact,
    )
  except (ValueError, FileNotFoundError) as e:
    logging.error("%s", e)
    sys.exit(f"error: {e}")
  if manifest["step_refused"]:
    logging.warning("no step.jax: %s", manifest["step_refused"])
  summary = dict(
    out=os.path.abspath(FLAGS.out),
    files=manifest["files"],
    states_total=manifest["states_total"],
    streaming=manifest["streaming"],
    layers={k: v["state_shape"] for k, v in manifest["layers"].items()},
  )
  print(json.dumps(summary, indent=2))


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  app.run(main)
