#!/usr/bin/env bash
# On the GPU machine: Nsight Compute's per-instruction view of one kernel
# launch (warp-stall samples per SASS line: where the time goes inside a
# warp-specialized kernel, which the kernel-wide stall averages hide).
#   bash scripts/ncu_source.sh attn-bwd CONFIG_NAME '{"dtype":"bf16",...}' NAME
# Writes $OUT/NAME.ncu-rep, $OUT/NAME_source.csv (SASS lines with samples)
# and $OUT/NAME_details.txt (the full section report).
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
family=$1 config=$2 problem=$3 name=$4
declare -A kernel=([attn-fwd]=attn_fwd_kernel [attn-bwd]=attn_bwd_kernel [gemm]=gemm_kernel)
python3 -c "from cudadent42.jit import build; from cudadent42.tune.profile import _as_configs; \
build(_as_configs('$family', ['$config']), progress=False)"  # nvcc never runs under ncu
ncu --clock-control none --set full --import-source no \
  --nvtx --nvtx-include "cd42_profile/" --kernel-name "regex:${kernel[$family]}" --launch-count 1 \
  -f -o "$OUT/$name" python3 -m cudadent42.tune.profile_target "$family" "$config" "$problem" --warmup 2 \
  > "$OUT/${name}_ncu.log" 2>&1 || { tail -20 "$OUT/${name}_ncu.log"; exit 1; }
ncu --import "$OUT/$name.ncu-rep" --page source --csv --print-source sass > "$OUT/${name}_source.csv"
ncu --import "$OUT/$name.ncu-rep" --page details > "$OUT/${name}_details.txt"
wc -l "$OUT/${name}_source.csv" "$OUT/${name}_details.txt"
