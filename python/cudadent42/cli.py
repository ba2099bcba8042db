"""`python -m cudadent42 {info,build,bench,sweep,tune,profile,cache}` (also the `cudadent42` script)."""
from __future__ import annotations

import argparse
import json
import sys
import time


def _driver_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi not available)"


def _info(args) -> int:
    import platform

    import torch

    from .jit import toolchain

    missing = []

    def probe(label, fn):
        try:
            value = fn()
        except Exception as e:  # report every missing piece, do not stop at the first
            missing.append(label)
            value = f"MISSING - {e}"
        print(f"{label:<18} {value}")

    print(f"{'python':<18} {platform.python_version()}")
    print(f"{'torch':<18} {torch.__version__} (CUDA {torch.version.cuda})")

    def gpu():
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to torch")
        p = torch.cuda.get_device_properties(0)
        drv = _driver_version()
        note = "" if (p.major, p.minor) == (9, 0) else "  (not sm_90: kernels will not run here)"
        return f"{p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, driver {drv}{note}"

    probe("gpu", gpu)
    probe("nvcc", lambda: f"{toolchain.find_nvcc()} ({toolchain.nvcc_version()})")
    probe("cutlass", lambda: f"{toolchain.cutlass_version()} at {toolchain.cutlass_include_dirs()[0]}")
    probe("cuobjdump", lambda: toolchain.find_cuobjdump() or (_ for _ in ()).throw(
        RuntimeError("pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")))
    from .jit import cache

    probe("cache", lambda: f"{toolchain.cache_dir()} ({cache.cache_size_bytes() / 2**20:.1f} MiB, "
                           f"{len(cache.list_entries())} entries)")
    print("\nenvironment variables:")
    import os

    for var, desc in toolchain.ENV_VARS.items():
        print(f"  {var:<26} {os.environ.get(var, '(unset)'):<20} {desc}")
    if missing:
        print(f"\nmissing: {', '.join(missing)}")
    return 0


def _build(args) -> int:
    from .configs.defaults import default_configs
    from .jit import build

    configs = default_configs(None if args.all else args.family)
    t0 = time.time()
    results = build(configs, jobs=args.jobs)
    failed = [r for r in results if not r.ok]
    print(f"built {len(results) - len(failed)}/{len(results)} configs in {time.time() - t0:.1f} s")
    for r in failed:
        print(f"FAILED {r.name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _bench(args) -> int:
    from .runtime import hopper_available

    parts = set(args.only.split(",")) if args.only else {"gemm", "fwd", "bwd"}
    if parts - {"gemm", "fwd", "bwd"}:
        print(f"cudadent42 bench: --only takes gemm, fwd, bwd; got {args.only!r}", file=sys.stderr)
        return 2

    if not hopper_available():
        import torch

        from .configs.defaults import default_configs
        from .jit import build

        where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
        print(f"cudadent42 bench: no Hopper (sm_90) GPU here ({where}); showing the JIT build path only.")
        cfg = default_configs("gemm")[0]
        t0 = time.time()
        res = build([cfg], jobs=1)[0]
        if not res.ok:
            print(f"JIT build of {cfg.name} FAILED: {res.error}")
            return 2
        from .jit import load

        k = load(cfg)
        m = k.meta
        print(f"JIT build ok: {cfg.name} ({'cached' if res.cached else 'compiled'} in {time.time() - t0:.1f} s), "
              f"{m.get('registers')} registers, {m.get('spill_stores', 0)}+{m.get('spill_loads', 0)} spill bytes, "
              f"at {k.dir}")
        return 1

    import torch

    from .bench import attention as attn_bench
    from .bench.gemm import HEADER, run_gemm_bench

    from .bench.timing import warm_up_gpu

    card = torch.cuda.get_device_name(0)
    print(f"card: {card}; torch {torch.__version__}")
    warm_up_gpu()
    from .bench.targets import BWD_TARGETS, check_targets, format_targets

    results = {"card": card}
    seqlens = (4096, 16384) if args.quick else attn_bench.SEQLENS
    if "gemm" in parts:
        print("GEMM (bf16, fp32 accumulate) vs torch.matmul (cuBLAS), same run:")
        print(HEADER)
        results["gemm"] = run_gemm_bench()
    if "fwd" in parts:
        print("\nAttention forward (bf16, B*S=16384, H*D=2048) vs SDPA cuDNN / FLASH_ATTENTION, same run:")
        print(attn_bench.HEADER)
        results["attn_fwd"] = attn_bench.run_attention_bench(seqlens=seqlens, rounds=args.rounds)
        print("\nAttention forward targets (issue: FA3-class forward):")
        print(format_targets(check_targets(results["attn_fwd"])))
    if "bwd" in parts:
        from .bench import attention_bwd as bwd_bench

        print("\nAttention backward (bf16, TFLOP/s = 2.5 x forward FLOPs / time) vs SDPA cuDNN / FLASH_ATTENTION:")
        print(attn_bench.HEADER)
        results["attn_bwd"] = bwd_bench.run_attention_bwd_bench(seqlens=seqlens, rounds=args.rounds)
        print("\nAttention backward targets (issue: backward and training integration):")
        print(format_targets(check_targets(results["attn_bwd"], BWD_TARGETS)))
        results["training_call"] = bwd_bench.training_call_ms(rounds=args.rounds)
        results["deterministic"] = bwd_bench.deterministic_cost(rounds=args.rounds)
    if "fwd" in parts or "bwd" in parts:
        from .bench import host_time

        print("\nHost time per eager call (tiny shapes: the host is the step time) vs SDPA:")
        results["host_time"] = host_time.measure()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.png and "attn_fwd" in results:
        attn_bench.plot(results["attn_fwd"], args.png)
    return 0


def _cache(args) -> int:
    from .jit import cache

    if args.action == "list":
        entries = cache.list_entries()
        for e in entries:
            print(f"{e['name']}.{e['digest']}  {e['size'] / 2**20:6.1f} MiB  regs={e.get('registers')} "
                  f"dynamic_smem={e.get('dynamic_smem_bytes')} spills={e.get('spills')} "
                  f"{'ok' if e.get('valid') else 'INVALID'}")
        print(f"{len(entries)} entries, {cache.cache_size_bytes() / 2**20:.1f} MiB")
    else:
        print(f"removed {cache.clear(args.pattern)} entries")
    return 0


def _problem(args) -> dict:
    if args.family == "gemm":
        return dict(dtype=args.dtype, b_major=args.b_major, M=args.m, N=args.n, K=args.k)
    if args.family == "attn-bwd":
        return dict(dtype=args.dtype, head_dim=args.hdim, mask="causal" if args.causal else "none",
                    deterministic=args.deterministic, seqlen=args.seqlen, batch=args.batch, heads=args.heads)
    return dict(dtype=args.dtype, head_dim=args.hdim, mask="causal" if args.causal else "none",
                softcap=args.softcap, varlen=False, seqlen=args.seqlen, batch=args.batch, heads=args.heads)


def _space(items) -> dict:
    """--space stages=2,3 --space block_n=64,128 --space softmax_under_pv=false
    -> {"stages": (2, 3), "block_n": (64, 128), "softmax_under_pv": (False,)}"""
    def value(v: str):
        v = v.strip()
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        return int(v)

    out = {}
    for item in items or []:
        key, _, values = item.partition("=")
        out[key.strip()] = tuple(value(v) for v in values.split(","))
    return out


def _sweep(args) -> int:
    from .tune.sweep import sweep, tune

    fn = tune if args.cmd == "tune" else sweep
    deadline = time.time() + args.budget_s if args.budget_s else None
    rows = fn(args.family, _problem(args), space=_space(args.space), jobs=args.jobs, out_dir=args.out,
              limit=args.limit, prune_by_profile=args.prune_by_profile, deadline=deadline)
    return 0 if rows else 1


def _profile(args) -> int:
    from .tune.profile import ProfileError, find_ncu, profile, top_configs

    problem = _problem(args)
    try:
        find_ncu()  # before a sweep for --top spends minutes on nvcc
        configs = list(args.config or [])
        if args.top:
            configs += top_configs(args.family, problem, args.top, out_dir=args.out, space=_space(args.space),
                                   jobs=args.jobs, limit=args.limit)
        rows = profile(args.family, problem, configs or None, out_dir=args.out, timeout=args.timeout)
    except ProfileError as e:
        print(f"cudadent42 profile: {e}", file=sys.stderr)
        return 2
    return 0 if all(r["status"] == "profiled" for r in rows) else 1


def _add_problem_args(p) -> None:
    p.add_argument("family", choices=["gemm", "attn-fwd", "attn-bwd"])
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    p.add_argument("--m", type=int, default=8192, help="gemm M")
    p.add_argument("--n", type=int, default=8192, help="gemm N")
    p.add_argument("--k", type=int, default=8192, help="gemm K")
    p.add_argument("--b-major", default="k", choices=["k", "n"], help="gemm B layout")
    p.add_argument("--hdim", type=int, default=128, help="attention head dim")
    p.add_argument("--seqlen", type=int, default=8192)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--causal", action="store_true")
    p.add_argument("--softcap", action="store_true")
    p.add_argument("--deterministic", action="store_true", help="attn-bwd: deterministic dQ accumulation")
    p.add_argument("--space", action="append", help="restrict a parameter, e.g. --space stages=2,3 (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="at most this many points")
    p.add_argument("--jobs", type=int, default=None, help="parallel nvcc builds (default: all cores)")
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop timing new points this many seconds after the start (the default config is always "
                        "timed; skipped points are listed as such)")
    p.add_argument("--out", default=None, help="write sweep.csv / sweep.json / sweep.png here")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="cudadent42", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="GPU, nvcc, CUTLASS, cache, environment")
    b = sub.add_parser("build", help="pre-build default configs into the cache")
    b.add_argument("--family", default="gemm")
    b.add_argument("--all", action="store_true", help="every family's default configs")
    b.add_argument("--jobs", type=int, default=None)
    be = sub.add_parser("bench", help="benchmark against the anchors (needs a Hopper GPU)")
    be.add_argument("--json", default=None, help="also write the results here")
    be.add_argument("--png", default=None, help="plot the attention results here")
    be.add_argument("--quick", action="store_true", help="attention at S = 4096 and 16384 only")
    be.add_argument("--rounds", type=int, default=3,
                    help="attention: interleaved timing rounds per cell (ours, cuDNN, FA2 alternating); median reported")
    be.add_argument("--only", default=None, help="comma list of parts: gemm, fwd, bwd (default: all three)")
    for name, desc in (("sweep", "build and time a config space on one problem"),
                       ("tune", "sweep, then record the winner in the tuned table")):
        sp = sub.add_parser(name, help=desc)
        _add_problem_args(sp)
        sp.add_argument("--prune-by-profile", type=int, nargs="?", const=3, default=0, metavar="K",
                        help="profile the K (default 3) fastest with ncu; within 3%% of the best, rank "
                             "spilling or non-compute-bound configs last")
    pr = sub.add_parser("profile", help="Nsight Compute counters and the limiter of chosen configs (needs ncu)")
    _add_problem_args(pr)
    pr.add_argument("--config", action="append", help="a config name to profile (repeatable)")
    pr.add_argument("--top", type=int, default=0, help="also the K fastest of --out/sweep.json (or of a new sweep)")
    pr.add_argument("--timeout", type=int, default=300, help="seconds per ncu run")
    c = sub.add_parser("cache", help="list or clear the kernel cache")
    c.add_argument("action", choices=["list", "clear"])
    c.add_argument("--pattern", default=None, help="only entries whose name contains this")
    args = p.parse_args(argv)
    return {"info": _info, "build": _build, "bench": _bench, "cache": _cache, "sweep": _sweep,
            "tune": _sweep, "profile": _profile}[args.cmd](args)
