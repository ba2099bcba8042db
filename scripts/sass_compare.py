"""Compare the SASS of every kernel in two JIT cache folders, config by
config (for a refactor that must not change the kernels): addresses and
encodings are stripped, so identical code compares equal.

  CUDADENT42_CACHE_DIR=/tmp/before python scripts/prebuild_cache.py ...   (old checkout)
  CUDADENT42_CACHE_DIR=/tmp/after  python scripts/prebuild_cache.py ...   (new checkout)
  python scripts/sass_compare.py /tmp/before /tmp/after [-v]
"""
import difflib
import glob
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
from cudadent42.jit.toolchain import find_cuobjdump  # noqa: E402

CUOBJ = find_cuobjdump() or sys.exit("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
a_dir, b_dir = sys.argv[1], sys.argv[2]
def entries(d):
    return {os.path.basename(p.rstrip("/")).rsplit(".", 1)[0]: p for p in glob.glob(d + "/*/") if os.path.exists(p + "kernel.so")}
def sass(so):
    out = subprocess.run([CUOBJ, "-sass", so], capture_output=True, text=True, check=True).stdout
    funcs, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            cur = m.group(1); funcs[cur] = []; continue
        if cur is None: continue
        line = re.sub(r"/\*[0-9a-f]{4,}\*/", "", line)          # address
        line = re.sub(r"/\* 0x[0-9a-f]+ \*/", "", line)          # encoding
        line = line.strip()
        if not line or line.startswith(".") or line.startswith("-"): continue
        funcs[cur].append(line)
    return funcs
A, B = entries(a_dir), entries(b_dir)
for name in sorted(set(A) | set(B)):
    if name not in A or name not in B:
        print(f"{name}: missing in {'before' if name not in A else 'after'}"); continue
    fa, fb = sass(A[name] + "kernel.so"), sass(B[name] + "kernel.so")
    ma = json.load(open(A[name] + "meta.json")); mb = json.load(open(B[name] + "meta.json"))
    print(f"== {name}: {len(fa)} kernels")
    for fn in sorted(set(fa) | set(fb)):
        short = fn[:90]
        if fn not in fa or fn not in fb:
            print(f"   {short}: only in {'after' if fn not in fa else 'before'}"); continue
        if fa[fn] == fb[fn]:
            print(f"   identical ({len(fa[fn])} instr) {short}")
        else:
            d = list(difflib.unified_diff(fa[fn], fb[fn], lineterm="", n=0))
            print(f"   DIFFERS ({len(fa[fn])} vs {len(fb[fn])} instr, {len(d)} diff lines) {short}")
            if "-v" in sys.argv: print("\n".join(d[:80]))
    summ = lambda m: (m["registers"], m["spill_stores"], m["spill_loads"], m["c7510"], m["serialized"], m["warnings"], m["unclean"])
    print("   ptxas (regs, spill st, spill ld, C7510, serialized, warnings, unclean): before", summ(ma), "after", summ(mb))
