# Sourced by the GPU-machine scripts: $OUT, the kernel cache, and the Python
# path (wheels carried in .whl/ installed to /tmp/site, then this checkout).
OUT=${OUT:-$PWD/.out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export CUDADENT42_CACHE_DIR=${CUDADENT42_CACHE_DIR:-/tmp/cd42-cache}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
# Kernels compiled on the CPU machine (scripts/prebuild_cache.py), carried
# as .prebuilt/: seed the cache so the device does not compile them again.
if [ -d .prebuilt ]; then mkdir -p "$CUDADENT42_CACHE_DIR" && cp -r --update=none .prebuilt/. "$CUDADENT42_CACHE_DIR"/; fi
# The same packed (~12x smaller: a carry holds at most 64 MiB):
#   tar -cJf .prebuilt.tar.xz -C .prebuilt .
if [ -f .prebuilt.tar.xz ]; then
  mkdir -p "$CUDADENT42_CACHE_DIR" && python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
    .prebuilt.tar.xz "$CUDADENT42_CACHE_DIR"
fi
