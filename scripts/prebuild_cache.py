"""Build the kernel configs a set of tests / benchmarks needs into a cache
directory, all cores in parallel. On the CPU machine it fills `.prebuilt/`,
which a GPU-machine call carries so device time is not spent compiling (the
cache key does not depend on the checkout's location, jit/cache.py); on the
GPU machine scripts/gpu_check.sh uses it for whatever is still missing.

  python scripts/prebuild_cache.py OUT_DIR SET[,SET...]   (sets: bwd, bwd-narrow, fwd, gemm, bwd-bench, fwd-bench, wide, extra)
"""
import os
import sys
import time

out, sets = sys.argv[1], sys.argv[2].split(",")
os.environ["CUDADENT42_CACHE_DIR"] = os.path.abspath(out)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from cudadent42.configs.heuristics_sm90 import attn_bwd_config, attn_fwd_config  # noqa: E402
from cudadent42.jit import build  # noqa: E402

cfgs = []
if "bwd" in sets:  # everything tests/test_attention_bwd_gpu.py runs
    from test_attention_bwd_gpu import PREBUILD
    cfgs += PREBUILD
if "bwd-narrow" in sets:  # the head dim 64/96/128 part of the backward tests (~50 MB)
    from test_attention_bwd_gpu import PREBUILD
    cfgs += [c for c in PREBUILD if c.head_dim <= 128]
if "fwd" in sets:  # everything tests/test_attention_fwd_gpu.py runs (~70 MB: carry with little else)
    from test_attention_fwd_gpu import PREBUILD as FWD_PREBUILD
    cfgs += FWD_PREBUILD
if "gemm" in sets:  # the GEMM defaults and tests/test_gemm_gpu.py's explicit configs
    from cudadent42.configs.defaults import default_configs
    from test_gemm_gpu import EXPLICIT_CONFIGS
    cfgs += default_configs("gemm") + EXPLICIT_CONFIGS
if "fwd-bench" in sets:
    cfgs += [attn_fwd_config("bf16", d, m, False, False) for d in (64, 128, 256) for m in ("none", "causal")]
if "bwd-bench" in sets:
    cfgs += [attn_bwd_config("bf16", d, m) for d in (64, 128, 256) for m in ("none", "causal")]
if "wide" in sets:  # the head dim 192/256 part of the backward tests and bench
    from test_attention_bwd_gpu import PREBUILD
    cfgs += [c for c in PREBUILD if c.head_dim in (192, 256)]
    cfgs += [attn_bwd_config("bf16", 256, m) for m in ("none", "causal")]
    cfgs += [attn_fwd_config("bf16", 256, m, False, False) for m in ("none", "causal")]
if "extra" in sets:  # what the few other GPU tests of a backward-focused call build
    from cudadent42.configs.attention_bwd import AttnBwdConfig
    cfgs += [attn_fwd_config("bf16", 64, "none", True, False),
             AttnBwdConfig(head_dim=64, mask="causal", stages=3)]
cfgs = list(dict.fromkeys(cfgs))
t = time.time()
res = build(cfgs, progress=False)
for r in res:
    print(("ok    " if r.ok else "FAIL  ") + r.name, "" if r.ok else r.error[-800:])
print(f"{sum(r.ok for r in res)}/{len(res)} built in {time.time() - t:.0f} s")
