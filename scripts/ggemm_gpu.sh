#!/usr/bin/env bash
# GPU machine: build every grouped-GEMM config in parallel, run its GPU
# tests, then its benchmark; logs under $OUT.
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
python3 - <<'PY' 2>&1 | tee "$OUT/ggemm_build.log"
import os
from cudadent42 import families
from cudadent42.jit import build
cfgs = [c for c in families.get("grouped-gemm").default_configs() if c.dtype == "bf16"]
res = build(cfgs, jobs=os.cpu_count(), progress=False)
print(sum(r.ok for r in res), "of", len(res), "built;", [r.error for r in res if not r.ok][:2])
PY
CUDADENT42_INSTAFAIL=1 timeout ${TEST_TIMEOUT:-300} python3 -m pytest -q --maxfail=10 -rs -p no:cacheprovider tests/test_grouped_gemm_gpu.py "$@" 2>&1 | tee "$OUT/ggemm_tests.log"
if [ -n "${MOE:-}" ]; then
  timeout ${MOE_TIMEOUT:-200} python3 -m pytest -q -rs -p no:cacheprovider tests/test_moe_gpu.py 2>&1 | tee "$OUT/moe_tests.log"
fi
if [ -z "${SKIP_BENCH:-}" ]; then
timeout ${BENCH_TIMEOUT:-240} python3 -c "
import json, sys
from cudadent42.bench.grouped_gemm import run_grouped_gemm_bench
rows = run_grouped_gemm_bench(quick=${QUICK:-True})
json.dump(rows, open('$OUT/ggemm_bench.json', 'w'), indent=1)
" 2>&1 | tee "$OUT/ggemm_bench.log"
fi
