"""``python -m last_nnx.bench --out bench [--sections a,b]``: run benchmark sections.

Each section is a `Section` in `SECTIONS`: its name on the command line, its key in
results.json, how to run it from the flags, and how it reads in results.md. A new
benchmark is one module with those two functions and one line here.
"""

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from absl import app, flags

from last_nnx.bench.shapes import TASK_SHAPES


@dataclasses.dataclass(frozen=True)
class Section:
  """One benchmark: ``run(flags) -> result`` (JSON-able), ``markdown(result) -> lines``.

  Both are given as ``"module:function"`` of `last_nnx.bench` so that listing the
  sections (and a bad-flag error) imports no JAX.
  """

  name: str
  key: str
  run: Callable[[Any], Any]
  markdown: str


def _call(ref: str, *args, **kwargs):
  import importlib

  module, fn = ref.split(":")
  return getattr(importlib.import_module(f"last_nnx.bench.{module}"), fn)(*args, **kwargs)


# In results.md order.
SECTIONS = (
  Section(
    "train",
    "train_step",
    lambda f: _call("steps:bench_train_steps", f.tasks, f.batch, f.repeats),
    "steps:train_step_markdown",
  ),
  Section(
    "pruning",
    "pruning_event",
    lambda f: _call("steps:bench_pruning_event", f.repeats),
    "steps:pruning_event_markdown",
  ),
  Section(
    "forward",
    "forward_latency",
    lambda f: _call("steps:bench_forward", f.repeats),
    "steps:forward_markdown",
  ),
  Section(
    "memory",
    "memory",
    lambda f: _call("steps:bench_memory", [int(l) for l in f.lengths], f.repeats),
    "steps:memory_markdown",
  ),
  Section(
    "loop",
    "loop",
    lambda f: _call("loop:bench_loop_section", f.batch, f.repeats),
    "loop:loop_markdown",
  ),
  Section(
    "capacity",
    "capacity",
    lambda f: _call("capacity:bench_capacity", f.capacity_gib),
    "capacity:capacity_markdown",
  ),
  Section(
    "streaming",
    "streaming",
    lambda f: _call("deploy:bench_streaming", max(f.repeats, 5)),
    "deploy:markdown",
  ),
  Section("mamba2", "mamba2", lambda f: _call("mamba2:bench_mamba2", f.repeats), "mamba2:markdown"),
  Section("cost", "cost", lambda f: _call("cost:bench_cost", f.tasks), "cost:markdown"),
  Section("lm", "lm", lambda f: _call("lm:bench_lm", min(f.repeats, 2)), "lm:markdown"),
  Section(
    "lm_pruned",
    "lm_pruned",
    lambda f: _call(
      "lm_pruned:bench_lm_pruned",
      min(f.repeats, 2),
      steps=f.decode_steps,
      checkpoints=f.lm_checkpoints or None,
    ),
    "lm_pruned:markdown",
  ),
)
NAMES = tuple(s.name for s in SECTIONS)
# Minutes each on a CPU (the mamba2-130m shape, the reference beside it): run when named.
OPT_IN = ("lm", "lm_pruned")
DEFAULT_SECTIONS = tuple(n for n in NAMES if n not in OPT_IN)


def markdown(results: dict) -> str:
  lines = [f"# last-nnx benchmarks ({results['machine']})", ""]
  for section in SECTIONS:
    if section.key in results:
      lines += _call(section.markdown, results[section.key])
  return "\n".join(lines).rstrip() + "\n"


def _define_flags() -> None:
  flags.DEFINE_string("out", "bench", "Output directory.")
  flags.DEFINE_list("tasks", list(TASK_SHAPES), "Tasks for the train-step benchmark.")
  flags.DEFINE_integer("batch", 2, "Batch size of the train-step benchmark.")
  flags.DEFINE_integer("repeats", 3, "Timed repetitions (median).")
  flags.DEFINE_list("lengths", ["1024", "2048", "4096", "8192", "16384"], "Memory benchmark L.")
  flags.DEFINE_list(
    "sections",
    list(DEFAULT_SECTIONS),
    "Sections to run; the others keep their figures from an existing results.json. "
    f"{', '.join(OPT_IN)} (minutes on a CPU) run only when named.",
  )
  flags.DEFINE_list(
    "lm_checkpoints",
    [],
    "lm_pruned: saved LMs to time, checkpoint directories or LM training runs (the first the "
    "reference, e.g. the dense model, then pruned ones), instead of random weights at the "
    "mamba2-130m shape; give another --out to keep bench/'s figures.",
  )
  flags.DEFINE_integer(
    "decode_steps", 8, "lm_pruned: greedy decode steps timed in one compiled scan."
  )
  flags.DEFINE_float(
    "capacity_gib",
    16.0,
    "Memory assumed by the capacity section where the device does not report its limit (CPU).",
  )


def _validate_flags() -> None:
  """Unknown tasks, sections or bad lengths fail in one line, before minutes of benchmarks."""
  from last_nnx.cli import errors

  FLAGS = flags.FLAGS
  errors.check_choices("sections", FLAGS.sections, list(NAMES))
  errors.check_choices("tasks", FLAGS.tasks, list(TASK_SHAPES))
  errors.parse_numbers("lengths", FLAGS.lengths, int, low=1)
  errors.parse_numbers("batch", [FLAGS.batch], int, low=1)
  errors.parse_numbers("repeats", [FLAGS.repeats], int, low=1)
  errors.parse_numbers("decode_steps", [FLAGS.decode_steps], int, low=1)
  if FLAGS.lm_checkpoints and "lm_pruned" not in FLAGS.sections:
    raise app.UsageError(
      "--lm_checkpoints is read by the lm_pruned section: add --sections lm_pruned"
    )
  for path in FLAGS.lm_checkpoints:
    if not os.path.isdir(path):
      raise app.UsageError(
        f"--lm_checkpoints: {path} is not a directory; pass LM checkpoint directories (written "
        "by `python -m last_nnx.cli.prune` or `hub.save_pretrained`) or LM training runs"
      )


def main(argv):
  del argv
  import jax

  FLAGS = flags.FLAGS
  os.makedirs(FLAGS.out, exist_ok=True)
  t0 = time.time()
  chosen = set(FLAGS.sections)
  results = {}
  path = os.path.join(FLAGS.out, "results.json")
  if chosen != set(NAMES) and os.path.exists(path):
    with open(path) as f:
      results = json.load(f)  # a partial run replaces its own sections only
  results["machine"] = (
    f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__} ({jax.default_backend()})"
  )
  for section in SECTIONS:
    if section.name in chosen:
      results[section.key] = section.run(FLAGS)
  results["wall_time_s" if chosen == set(NAMES) else "last_partial_run_s"] = time.time() - t0
  with open(path, "w") as f:
    json.dump(results, f, indent=2)
  text = markdown(results)
  with open(os.path.join(FLAGS.out, "results.md"), "w") as f:
    f.write(text)
  sys.stdout.write(text)


if __name__ == "__main__":
  sys.path.insert(0, os.getcwd())
  _define_flags()
  from last_nnx.cli import errors

  app.run(main, flags_parser=errors.flags_parser(validate=_validate_flags))
