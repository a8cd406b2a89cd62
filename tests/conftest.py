"""Shared test set-up: quiet TF, CPU JAX compiling fast, and one compilation cache.

Many tests compile the same programs (the smoke model's train and eval steps,
the same layer's scan, subprocess runs of the CLIs): JAX's persistent cache
lets every test after the first, in this process, in the other xdist worker,
and in the subprocesses (which inherit the environment), load them instead.
The cache lives in ``.cache/jax`` (ignored by git; `make clean` deletes it) and
survives between runs; point ``JAX_COMPILATION_CACHE_DIR`` elsewhere (a fresh
folder) to time a cold run.
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Tests check behaviour, not speed: without XLA's backend optimizations the CPU compiles
# much faster (an S4D forward 8.6 -> 1.5 s), and most of a test's time is compiling
# (measured: tests/test_balanced.py 50 -> 38 s, tests/test_export.py 27 -> 20 s).
# XLA's newer CPU fusion emitters compile more slowly than the classic elemental emitters;
# switching them off halves a compile (measured: 200 eager ops of new shapes 9.7 -> 4.9 s, a
# tiny Mamba-2 LM's gradient 1.6 -> 0.8 s; test_pruning_apply + test_mamba2 side by side,
# cold: 49.6 -> 34.3 s). Every eager op and every test's program is a compile. Their float32
# results differ from the default emitters' by up to ~3e-4 relative (a small S5 model's
# gradients), within what the tests' tolerances allow for compiled-path differences.
for flag in ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"):
  if flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(ROOT, ".cache", "jax"))
# Cache programs that took over 0.2 s to compile (the default, 1 s, skips most of ours).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
