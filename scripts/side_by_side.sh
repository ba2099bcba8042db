#!/usr/bin/env bash
# Issue 16's before/after check on one card: the GEMM / attention forward /
# backward benchmark of an older checkout (carried as .old_tree/, e.g.
#   rm -rf .old_tree && mkdir .old_tree && git archive pre-session-11 | tar -x -C .old_tree
# with carry [".whl", ".old_tree", ...]) and of this tree, run back to back,
# A B A B, each with its own kernel cache. JSON per run under $OUT.
#   BENCH_ARGS (default "--only gemm,fwd,bwd --quick --rounds 2"), REPS (default 2)
set -uo pipefail
source "$(dirname "$0")/gpu_env.sh"
ARGS=${BENCH_ARGS:---only gemm,fwd,bwd --quick --rounds 2}
NEW_PATH=$PYTHONPATH
OLD_PATH=${PYTHONPATH/$PWD\/python/$PWD\/.old_tree\/python}
if [ -f .prebuilt-old.tar.xz ]; then
  mkdir -p /tmp/cd42-cache-old && python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
    .prebuilt-old.tar.xz /tmp/cd42-cache-old
fi
for rep in $(seq 1 ${REPS:-2}); do
  for which in old new; do
    if [ $which = old ]; then pp=$OLD_PATH; cache=/tmp/cd42-cache-old; else pp=$NEW_PATH; cache=$CUDADENT42_CACHE_DIR; fi
    echo "=== $which tree, rep $rep ==="
    PYTHONPATH=$pp CUDADENT42_CACHE_DIR=$cache timeout ${BENCH_TIMEOUT:-280} \
      python3 -m cudadent42 bench $ARGS --json "$OUT/bench_${which}_$rep.json" 2>&1 | tee "$OUT/bench_${which}_$rep.log"
  done
done
