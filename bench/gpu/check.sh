#!/usr/bin/env bash
# Correctness of the GPU kernels on a machine with an NVIDIA GPU and no LLVM:
# the end-to-end groups of test/Integration/e2e-gpu.test that need no
# FileCheck (run_case.py against the float64 reference), the non-finite
# input contract (nonfinite.py, as nonfinite-inputs-gpu.test runs it), the
# strided-O and queued-run checks, and the Python package's tests (torch
# on CUDA where PyTorch is installed). Use the portable build (-DATTNC_STATIC_TOOLS=ON):
#
#   bench/gpu/check.sh path/to/attnc path/to/libattn.so [quick]
#
# Prints one line per group and a summary; exits non-zero if any failed.
set -uo pipefail
ATTNC=$(realpath "$1"); LIB=$(realpath "$2"); MODE=${3:-full}
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
RC="$PY test/Integration/run_case.py --attnc $ATTNC --target nvptx"
export ATTN_CACHE_DIR=$(mktemp -d)
LOGS=$(mktemp -d)
names=()
# Each group runs in the background (the groups are independent processes
# sharing the GPU); results are collected in order at the end.
run() {
  local name=$1; shift
  names+=("$name")
  ( t0=$SECONDS; "$@" > "$LOGS/$name.log" 2>&1; echo "$? $((SECONDS - t0))" > "$LOGS/$name.rc" ) &
}
run f16-groups $RC --dtype float16 softmax prelude norm shape param lang
run f16-shapes $RC shape-f16 shape-f16-gqa-causal shape-f16-d256 shape-f16-mla-decode shape-f16-sigmoid shape-f16-sink
NF="$PY test/Integration/lib/nonfinite.py --attnc $ATTNC --target nvptx"
run nonfinite-f32 $NF
run nonfinite-f16 $NF --dtype float16 --tensor-core
if [ "$MODE" = full ]; then
  run f32-groups $RC softmax prelude norm shape param lang
  run f16-d64-scalar-o env ATTN_GPU_SCALAR_O=1 $RC --dtype float16 --head-dim 64 prelude param shape
  run f16-d128-persistent $RC --dtype float16 --head-dim 128 --gpu-persistent on param
  run f16-d128-no-marks $RC --dtype float16 --head-dim 128 --gpu-mark-kernel off param
  run f16-d128-mma $RC --dtype float16 --head-dim 128 --gpu-kernel mma param
  run nonfinite-f32-d24 $NF --head-dim 24
  run nonfinite-f16-d64 $NF --dtype float16 --head-dim 64 --tensor-core
  run nonfinite-f16-d128 $NF --dtype float16 --head-dim 128 --tensor-core
fi
if $PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  run o-views $PY test/Integration/lib/o_views.py "$LIB"
  run async-runs $PY test/Integration/lib/async_runs.py "$LIB"
  if $PY -c "import pytest" 2>/dev/null; then
    run python-tests env ATTNC_LIBRARY="$LIB" $PY -m pytest -q -p no:cacheprovider python/tests
  fi
fi
wait
fails=0
for name in "${names[@]}"; do
  read -r rc secs < "$LOGS/$name.rc"
  if [ "$rc" -eq 0 ]; then
    echo "PASS $name ($secs s): $(tail -1 "$LOGS/$name.log")"
  else
    echo "FAIL $name ($secs s):"; tail -20 "$LOGS/$name.log"
    fails=$((fails + 1))
  fi
done
rm -rf "$ATTN_CACHE_DIR" "$LOGS"
echo "check.sh: $fails group(s) failed"
[ "$fails" -eq 0 ]
