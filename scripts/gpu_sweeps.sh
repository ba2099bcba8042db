#!/usr/bin/env bash
# On the GPU machine: the sweeps and the ncu profile that issue 5's closing
# note reports, each timed, logs and results under $OUT.
#   device run: carry [".whl"], command: bash scripts/gpu_sweeps.sh [attn|bwd|bwd64|gemm|all]
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
what=${1:-all}
budget=${SWEEP_BUDGET_S:+--budget-s $SWEEP_BUDGET_S}  # optional cap on each sweep's timing phase
timed() {  # timed NAME cmd...: runs cmd, tees its log, records the wall time
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$(date +%s)
  "$@" 2>&1 | tee "$OUT/$name.log"
  echo "=== $name took $(( $(date +%s) - t0 )) s" | tee -a "$OUT/$name.log"
}
attn="--seqlen 8192 --batch 2"
if [ "$what" = attn ] || [ "$what" = all ]; then
  timed sweep_attn_hd128 python3 -m cudadent42 sweep attn-fwd --hdim 128 --heads 16 $attn --out "$OUT/sweep_attn_hd128"
  timed sweep_attn_hd128_causal python3 -m cudadent42 sweep attn-fwd --hdim 128 --heads 16 $attn --causal \
    --out "$OUT/sweep_attn_hd128_causal"
  timed profile_attn_hd128 python3 -m cudadent42 profile attn-fwd --hdim 128 --heads 16 $attn --top 3 \
    --out "$OUT/sweep_attn_hd128"
  timed sweep_attn_hd256 python3 -m cudadent42 sweep attn-fwd --hdim 256 --heads 8 $attn --space block_n=48,64,80 \
    --out "$OUT/sweep_attn_hd256"
fi
if [ "$what" = bwd ] || [ "$what" = all ]; then
  timed sweep_attn_bwd_hd128_causal python3 -m cudadent42 sweep attn-bwd --hdim 128 --heads 16 --seqlen 4096 \
    --batch 1 --causal --out "$OUT/sweep_attn_bwd_hd128_causal"
fi
if [ "$what" = bwd64 ]; then  # query rows per step at D=64, side by side (both pre-built by prebuild_cache.py)
  timed sweep_attn_bwd_hd64 python3 -m cudadent42 sweep attn-bwd --hdim 64 --heads 32 --seqlen 4096 --batch 1 \
    --space stages=2 --space block_m=64,128 --out "$OUT/sweep_attn_bwd_hd64"
  timed sweep_attn_bwd_hd64_causal python3 -m cudadent42 sweep attn-bwd --hdim 64 --heads 32 --seqlen 4096 \
    --batch 1 --causal --space stages=2 --space block_m=64,128 --out "$OUT/sweep_attn_bwd_hd64_causal"
fi
if [ "$what" = gemm ] || [ "$what" = all ]; then
  timed sweep_gemm python3 -m cudadent42 sweep gemm --m 8192 --n 8192 --k 8192 $budget --out "$OUT/sweep_gemm"
fi
