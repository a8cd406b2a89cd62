#!/usr/bin/env bash
# The accelerator check of issue 18, as one prepared script:
#   1. the paper's own train step (msgwak/LAST) beside ours at the ListOps and Path-X shapes
#      and the paper's batch sizes (bench/reference_step.py; step time, compiled memory; ours
#      through the bound step, steps.bound_train_step, as the training loop calls it), then
#      XLA's cost figures of both compiled steps and forwards on the device (--cost:
#      flops, bytes accessed, fusions; ours on the associative scan, what auto picks there);
#   2. the largest Path-X batch whose train step fits, with and without donation and remat;
#   3. `make bench`'s sections that need no TensorFlow (train step, pruning event, forward,
#      memory, streaming/export, the loop's feeding habits) at a GPU-sized batch;
#   4. (part `mamba2`, not in the default set) Mamba-2's train step and token streaming
#      against its state size N (issue 27): what pruning a selective layer's states buys.
#   5. (part `lm`, not in the default set) the Mamba-2 LM at the mamba2-130m shape: prefill
#      and decode tokens/s beside the independent mamba2-jax on the same weights.
#
#   bench/fetch_reference.sh REPO --deps   # here, once: exports the reference into .ref/ (not ours),
#                                       # and clu/wrapt into .ref/site (the GPU image lacks clu)
#   make bench-gpu                      # = bash bench/gpu.sh bench/gpu-out
#   bash bench/gpu.sh OUT_DIR [--quick | PARTS] # --quick: tiny shapes, for a check on the CPU;
#                                       # PARTS: e.g. reference,capacity (default: the first
#                                       # three), mamba2 or lm
#
# On an H200 each Path-X program takes ~20 s to compile: all three parts need about 12
# minutes, more than one 10-minute device call; give each call one or two parts.
#
# Wheels in .whl/ (clu, ml_collections, optax: pure Python, for an image that lacks them;
# NOT flax: the image's own flax matches its jax, flax 0.12.8 fails on jax 0.11) are
# installed into a fresh /tmp/site first. Each part has its own time limit and writes its
# results as soon as it ends, so one failing part leaves the others' figures.
set -uo pipefail
out="${1:-bench/gpu-out}"
quick=0; parts="${2:-reference,capacity,bench}"
[[ "$parts" == "--quick" ]] && quick=1
want() { [[ ",$parts," == *",$1,"* ]]; }
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
if compgen -G ".whl/*.whl" >/dev/null; then
  rm -rf /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
py=python3; [[ -x .venv/bin/python ]] && [[ $quick == 1 ]] && py=.venv/bin/python

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  $py -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} > "$out/device.txt" 2>&1
cat "$out/device.txt"

part() {  # part NAME SECONDS COMMAND...: runs one part under its own limit, logs it
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s (limit $limit s)" | tee -a "$out/device.txt"
  grep -v '^[IW][0-9]\{4\} ' "$out/$name.log" | tail -n 25
}

if [[ $quick == 1 ]]; then
  part reference 300 $py bench/reference_step.py --out "$out" --quick
  part reference_cost 300 $py bench/reference_step.py --out "$out" --quick --cost \
    --tasks listops --methods associative
  part bench 600 $py -m last_nnx.bench --out "$out" --batch 2 --repeats 1 --tasks listops \
    --lengths 1024 --sections loop,train,forward
else
  want reference && [[ ! -d .ref/LAST ]] && \
    echo "no .ref/LAST: run bench/fetch_reference.sh REPO first (reference skipped)"
  want reference && [[ -d .ref/LAST ]] && part reference 270 $py bench/reference_step.py \
    --out "$out" --tasks listops,pathx --repeats 10
  want reference && [[ -d .ref/LAST ]] && part reference_cost 210 $py bench/reference_step.py \
    --out "$out" --cost --tasks listops,pathx --methods associative
  want capacity && part capacity 300 $py -m last_nnx.bench --out "$out" --sections capacity
  want bench && part bench 300 $py -m last_nnx.bench --out "$out" --batch 32 --repeats 10 \
    --tasks listops,pathx --sections loop,train,forward,memory,pruning
  want mamba2 && part mamba2 300 $py -m last_nnx.bench --out "$out" --repeats 10 \
    --sections mamba2
  # The Mamba-2 LM at the mamba2-130m shape beside mamba2-jax (when .ref/m2j holds it:
  # pip install --no-deps --target .ref/m2j mamba2-jax, then carry .ref).
  want lm && PYTHONPATH="$PYTHONPATH:$PWD/.ref/m2j" part lm 420 $py -m last_nnx.bench \
    --out "$out" --repeats 5 --sections lm
fi
