#!/usr/bin/env bash
# One prepared pass over what only a GPU can check, for a short device lease (about 5-6 minutes on an
# H200): the cuDNN attention parity tests, then the train-step MFU rows with the device-time profile.
# Runs under the machine's own python3 (jax, flax, optax already there), from the repository root:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]          # rows, log and pytest output land in OUT_DIR
#
# Each part has its own time limit so that one slow part cannot eat the lease; a part that runs out
# prints "timed out" and the next one starts.
set -u
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD JAX_PLATFORMS=cuda
common=(--gen-batches --ceiling-n 0 --attn-impl cudnn)

part() {  # part SECONDS NAME COMMAND...: run it, tee its output to OUT/NAME.log, report a time-out
    local limit=$1 name=$2
    shift 2
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" 2>&1 | grep -v -i "warning" | tee "$out/$name.log"
    [ "${PIPESTATUS[0]}" = 124 ] && echo "== $name timed out"
}

{ nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv,noheader
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__)"
} 2>&1 | tee "$out/device.log"
part 150 pytest python3 -m pytest -q -p no:cacheprovider -W ignore -rs tests/model/test_attention_cudnn.py
part 120 train_270m python3 benchmarks/mfu.py --presets gemma3_270m "${common[@]}" --profile /tmp/gpu_check_trace \
    --json "$out/train_270m.json"
part 120 train_1b python3 benchmarks/mfu.py --presets gemma3_1b "${common[@]}" --steps 5 --json "$out/train_1b.json"
