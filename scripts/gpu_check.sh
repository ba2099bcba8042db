#!/usr/bin/env bash
# On the GPU machine (see README "GPU machine"): install from carried wheels,
# build the default configs on all cores, run every test (GPU ones included),
# run the benchmark (SKIP_BENCH=1: not), and leave logs + results JSON under $OUT.
#   device run: carry [".whl"], command: bash scripts/gpu_check.sh [pytest args]
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
step() { echo; echo "=== $* ==="; }

step info
python3 -m cudadent42 info 2>&1 | tee "$OUT/info.log"

if [ -z "${SKIP_COLD:-}" ]; then
step "cold compile of one config, then warm load in a fresh process"
python3 - <<'PY' 2>&1 | tee "$OUT/compile_times.log"
import time, subprocess, sys
from cudadent42.configs.defaults import default_configs
from cudadent42.jit import build
cfg = default_configs("gemm")[0]
t = time.time(); r = build([cfg], jobs=1, progress=False)[0]; cold = time.time() - t
print(f"cold build {cfg.name}: {cold:.1f} s (cached={r.cached}, ok={r.ok})")
code = ("import time; from cudadent42.jit import load; from cudadent42.configs.defaults import default_configs; "
        "cfg = default_configs('gemm')[0]; t = time.perf_counter(); k = load(cfg); t1 = time.perf_counter(); load(cfg); "
        "t2 = time.perf_counter(); print(f'warm load in a fresh process (digest + disk cache + dlopen): {(t1-t)*1e3:.1f} ms; "
        "in-process repeat: {(t2-t1)*1e6:.1f} us')")
subprocess.run([sys.executable, "-c", code], check=True)
PY
fi

step "build the configs the tests need (${PREBUILD:-gemm,fwd,bwd}; $(nproc) jobs)"
python3 scripts/prebuild_cache.py "$CUDADENT42_CACHE_DIR" "${PREBUILD:-gemm,fwd,bwd}" 2>&1 | tee "$OUT/build.log"

if [ -n "${SMOKE:-}" ]; then
  step "smoke: $SMOKE"
  timeout ${SMOKE_TIMEOUT:-90} python3 $SMOKE 2>&1 | tee "$OUT/smoke.log"
fi

step "tests"
# Default: every GPU-capable test; the compile-smoke tests (nvcc into fresh
# caches, no GPU needed) are left to CI unless pytest args are given.
if [ $# -eq 0 ]; then set -- tests -m "not compile"; fi
CUDADENT42_INSTAFAIL=1 timeout ${TEST_TIMEOUT:-400} python3 -m pytest -q -rs -p no:cacheprovider "$@" 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}

if [ -z "${SKIP_BENCH:-}" ]; then
  step "benchmark"
  timeout ${BENCH_TIMEOUT:-400} python3 -m cudadent42 bench --json "$OUT/bench.json" --png "$OUT/attn_fwd.png" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
fi

if [ -n "${TRAIN:-}" ]; then
  step "training run (benchmarks/train_gpt.py ${TRAIN_ARGS:-})"
  timeout ${TRAIN_TIMEOUT:-300} python3 benchmarks/train_gpt.py --out "$OUT" ${TRAIN_ARGS:-} 2>&1 | tee "$OUT/train.log"
fi

if [ -n "${SWEEPS:-}" ]; then
  step "sweeps: $SWEEPS"
  for s in $SWEEPS; do timeout ${SWEEP_TIMEOUT:-300} bash scripts/gpu_sweeps.sh "$s"; done
fi

for d in "$CUDADENT42_CACHE_DIR"/gemm_* "$CUDADENT42_CACHE_DIR"/attn_*; do
  [ -f "$d/meta.json" ] && python3 -c "import json; m=json.load(open('$d/meta.json')); print(m['name'], 'regs', m['registers'], 'dyn_smem', m.get('dynamic_smem_bytes', 0), 'static_smem', m.get('smem_bytes', 0), 'spills', m['spill_stores'], m['spill_loads'], 'serialized', m['serialized'])"
done 2>&1 | tee "$OUT/ptxas_summary.log"
# The device hands back a limited number of files: keep the two summaries
# and pack everything else (logs, sweep CSV/JSON/PNG, training curves).
(cd "$OUT" && tar czf all_logs.tgz --exclude=all_logs.tgz . \
  && find . -type f ! -name all_logs.tgz ! -name bench.json ! -name tests.log -delete && find . -type d -empty -delete)
echo "tests exit code: $tests_rc"
exit $tests_rc
