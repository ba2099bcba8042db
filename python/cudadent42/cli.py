"""`python -m cudadent42 {info,build,bench,sweep,tune,profile,cache}` (also the `cudadent42` script)."""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

from . import families
from .bench import attention as attn_bench
from .bench import attention_bwd as bwd_bench
from .bench import gemm as gemm_bench
from .bench import grouped_gemm as ggemm_bench
from .bench import host_time
from .bench import moe as moe_bench
from .bench import targets as bench_targets
from .bench import timing as bench_timing
from .configs.base import ConfigError
from .configs.defaults import default_configs
from .jit import build, cache, load, toolchain
from .runtime import hopper_available
from .tune import profile as tune_profile
from .tune import sweep as tune_sweep


class UsageError(Exception):
    """A bad command-line argument: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): the argument, what was given, what is accepted."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi not available)"


def _info(args) -> int:
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
    probe("cache", lambda: f"{toolchain.cache_dir()} ({cache.cache_size_bytes() / 2**20:.1f} MiB, "
                           f"{len(cache.list_entries())} entries)")
    print("\nenvironment variables:")
    for var, desc in toolchain.ENV_VARS.items():
        print(f"  {var:<26} {os.environ.get(var, '(unset)'):<20} {desc}")
    if missing:
        print(f"\nmissing: {', '.join(missing)}")
    return 0


def _build(args) -> int:
    if args.all == (args.family is not None):
        raise UsageError(f"give --family NAME (one of {', '.join(families.names())}) or --all, not "
                         f"{'both' if args.all else 'neither'}")
    configs = default_configs(None if args.all else _family(args.family, "--family").name)
    t0 = time.time()
    results = build(configs, jobs=args.jobs)
    failed = [r for r in results if not r.ok]
    print(f"built {len(results) - len(failed)}/{len(results)} configs in {time.time() - t0:.1f} s")
    for r in failed:
        print(f"FAILED {r.name}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _bench(args) -> int:
    parts = set(args.only.split(",")) if args.only else set(BENCH_PARTS)
    if not parts or parts - set(BENCH_PARTS):
        raise UsageError(f"--only takes a comma list of {', '.join(BENCH_PARTS)}; got {args.only!r}")

    if not hopper_available():
        where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
        print(f"cudadent42 bench: no Hopper (sm_90) GPU here ({where}); showing the JIT build path only.")
        cfg = default_configs()[0]
        t0 = time.time()
        res = build([cfg], jobs=1)[0]
        if not res.ok:
            print(f"JIT build of {cfg.name} FAILED: {res.error}")
            return 2
        k = load(cfg)
        m = k.meta
        print(f"JIT build ok: {cfg.name} ({'cached' if res.cached else 'compiled'} in {time.time() - t0:.1f} s), "
              f"{m.get('registers')} registers, {m.get('spill_stores', 0)}+{m.get('spill_loads', 0)} spill bytes, "
              f"at {k.dir}")
        return 1

    HEADER, run_gemm_bench = gemm_bench.HEADER, gemm_bench.run_gemm_bench
    check_targets, format_targets = bench_targets.check_targets, bench_targets.format_targets
    card = torch.cuda.get_device_name(0)
    print(f"card: {card}; torch {torch.__version__}")
    bench_timing.warm_up_gpu()
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
        print("\nAttention backward (bf16, TFLOP/s = 2.5 x forward FLOPs / time) vs SDPA cuDNN / FLASH_ATTENTION:")
        print(attn_bench.HEADER)
        results["attn_bwd"] = bwd_bench.run_attention_bwd_bench(seqlens=seqlens, rounds=args.rounds)
        print("\nAttention backward targets (issue: backward and training integration):")
        print(format_targets(check_targets(results["attn_bwd"], bench_targets.BWD_TARGETS)))
        results["training_call"] = bwd_bench.training_call_ms(rounds=args.rounds)
        results["deterministic"] = bwd_bench.deterministic_cost(rounds=args.rounds)
    if "fwd" in parts or "bwd" in parts:
        print("\nHost time per eager call (tiny shapes: the host is the step time) vs SDPA:")
        results["host_time"] = host_time.measure()
    if "grouped_gemm" in parts:
        print("\nGrouped GEMM (bf16, MoE expert projections) vs torch._grouped_mm and dense cuBLAS of equal FLOPs:")
        results["grouped_gemm"] = ggemm_bench.run_grouped_gemm_bench(quick=args.quick)
        print("\nGrouped GEMM targets:")
        print(_format_checks(ggemm_bench.check_targets(results["grouped_gemm"])))
    if "moe" in parts:
        print("\nMoE layer (bf16, SonicMoE's FLOP convention, router included) vs a torch _grouped_mm layer:")
        results["moe"] = moe_bench.run_moe_bench(quick=args.quick)
        print("\nMoE targets:")
        print(_format_checks(moe_bench.check_targets(results["moe"])))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.png:
        _plots(results, args.png)
    return 0


BENCH_PARTS = ("gemm", "fwd", "bwd", "grouped_gemm", "moe")


def _format_checks(checks) -> str:
    return "\n".join(f"  {'PASS' if ok else 'MISS'}  {what}: {detail}" for what, ok, detail in checks)


def _plots(results, png: str) -> None:
    """The attention forward plot at `png`; the grouped-GEMM and MoE plots beside it (<stem>_<part>.png)."""
    stem = png[:-4] if png.endswith(".png") else png
    if "attn_fwd" in results:
        attn_bench.plot(results["attn_fwd"], png)
    for part, plot in (("grouped_gemm", ggemm_bench.plot), ("moe", moe_bench.plot)):
        if results.get(part):
            plot(results[part], f"{stem}_{part}.png" if "attn_fwd" in results else png)


def _cache(args) -> int:
    if args.name is not None and args.pattern is not None:
        raise UsageError(f"cache {args.action}: give NAME or --pattern, not both (got {args.name!r} and "
                         f"{args.pattern!r})")
    pattern = args.name if args.name is not None else args.pattern
    if args.action == "list":
        if pattern is not None:
            raise UsageError(f"cache list takes no NAME or --pattern (got {pattern!r}); "
                             "`cache clear NAME` removes matching entries")
        entries = cache.list_entries()
        for e in entries:
            print(f"{e['name']}.{e['digest']}  {e['size'] / 2**20:6.1f} MiB  regs={e.get('registers')} "
                  f"dynamic_smem={e.get('dynamic_smem_bytes')} spills={e.get('spills')} "
                  f"{'ok' if e.get('valid') else 'INVALID'}")
        print(f"{len(entries)} entries, {cache.cache_size_bytes() / 2**20:.1f} MiB")
    else:
        if pattern is not None and not pattern.strip():
            raise UsageError("cache clear: NAME/--pattern is empty; leave it out to clear every entry")
        print(f"removed {cache.clear(pattern)} entries")
    return 0


def _family(name: str, arg: str = "family") -> families.Family:
    try:
        return families.get(name)
    except ValueError:
        raise UsageError(f"argument {arg}: {name!r} is not a kernel family (known: {', '.join(families.names())})") \
            from None


# Problem flags -> problem fields (a family takes the fields it has; --problem FIELD=VALUE sets any field).
_FLAG_FIELDS = {"dtype": "dtype", "m": "M", "n": "N", "k": "K", "b_major": "b_major", "hdim": "head_dim",
                "seqlen": "seqlen", "batch": "batch", "heads": "heads", "softcap": "softcap",
                "deterministic": "deterministic"}


def _typed(field: str, text: str, like, arg: str):
    """`text` converted to the type of the default `like`; UsageError naming the argument otherwise."""
    t = text.strip()
    if isinstance(like, bool):
        if t.lower() in ("true", "false", "1", "0"):
            return t.lower() in ("true", "1")
        raise UsageError(f"argument {arg}: {field}={text!r} is not a boolean (accepted: true, false)")
    if isinstance(like, int):
        try:
            return int(t)
        except ValueError:
            raise UsageError(f"argument {arg}: {field}={text!r} is not an integer (e.g. {field}={like})") from None
    return t


def _problem(args) -> dict:
    """The sweep problem of args.family: its defaults, then the flags it has, then --problem."""
    fam = _family(args.family)
    problem = dict(fam.problem_defaults)
    given = {flag: getattr(args, flag, None) for flag in (*_FLAG_FIELDS, "causal")}
    for flag, value in given.items():
        field = _FLAG_FIELDS.get(flag, "mask")
        if value in (None, False):
            continue
        if field not in problem:
            raise UsageError(f"argument --{flag.replace('_', '-')}: {fam.name} has no {field} "
                             f"(its problem fields: {', '.join(problem)})")
        problem[field] = "causal" if flag == "causal" else value
    for item in args.problem or []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in problem:
            raise UsageError(f"argument --problem: {item!r} is not FIELD=VALUE with a {fam.name} field "
                             f"(fields: {', '.join(problem)})")
        problem[key] = _typed(key, value, fam.problem_defaults[key], "--problem")
    for field, value in problem.items():
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise UsageError(f"{fam.name} problem: {field}={value} must be >= 1")
    try:
        fam.heuristic(problem).validate()
    except (ConfigError, ValueError) as e:
        fixed = ", ".join(f"{f}={problem[f]}" for f in fam.fixed_fields)
        raise UsageError(f"no {fam.name} kernel serves {fixed}: {e}") from None
    return problem


def _space(items, family: str = None) -> dict:
    """--space stages=2,3 --space block_n=64,128 --space softmax_under_pv=false
    -> {"stages": (2, 3), "block_n": (64, 128), "softmax_under_pv": (False,)}, checked
    against the family's tunable fields and their value types."""
    out = {}
    space = _family(family).space if family is not None else None
    for item in items or []:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq or not key or not values.strip():
            raise UsageError(f"argument --space: {item!r} is not FIELD=V1,V2,...")
        if space is not None and key not in space:
            raise UsageError(f"argument --space: {key!r} is not a tunable field of {family} "
                             f"(tunable: {', '.join(space)})")
        like = space[key][0] if space is not None else 0
        out[key] = tuple(_typed(key, v, like, "--space") for v in values.split(","))
    return out


def _runner(fam: families.Family):
    """The op layer's run(config, case) for `fam`: the CLI sits above the ops and hands it to the tuner."""
    return families.resolve(fam.runner)


def _sweep(args) -> int:
    fam = _family(args.family)
    problem, space = _problem(args), _space(args.space, fam.name)
    fn = tune_sweep.tune if args.cmd == "tune" else tune_sweep.sweep
    deadline = time.time() + args.budget_s if args.budget_s else None
    rows = fn(fam.name, problem, run=_runner(fam), space=space, jobs=args.jobs, out_dir=args.out, limit=args.limit,
              prune_by_profile=args.prune_by_profile, deadline=deadline)
    return 0 if rows else 1


def _profile(args) -> int:
    fam = _family(args.family)
    problem, space = _problem(args), _space(args.space, fam.name)
    for name in args.config or []:
        try:
            fam.config_from_name(name)
        except ConfigError as e:
            raise UsageError(f"argument --config: {e}") from None
    try:
        tune_profile.find_ncu()  # before a sweep for --top spends minutes on nvcc
        configs = list(args.config or [])
        if args.top:
            configs += tune_sweep.top_configs(fam.name, problem, args.top, out_dir=args.out, space=space,
                                              jobs=args.jobs, limit=args.limit, run=_runner(fam))
        rows = tune_profile.profile(fam.name, problem, configs or None, out_dir=args.out, timeout=args.timeout)
    except tune_profile.ProfileError as e:
        print(f"cudadent42 profile: {e}", file=sys.stderr)
        return 2
    return 0 if all(r["status"] == "profiled" for r in rows) else 1


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{v} must be >= {low}")
        return v
    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return v


def _add_problem_args(p) -> None:
    p.add_argument("family", choices=families.names())
    p.add_argument("--dtype", default=None, choices=["bf16", "fp16"])
    p.add_argument("--m", type=_positive_int, default=None, help="gemm M (default 8192)")
    p.add_argument("--n", type=_positive_int, default=None, help="gemm N (default 8192)")
    p.add_argument("--k", type=_positive_int, default=None, help="gemm K (default 8192)")
    p.add_argument("--b-major", default=None, choices=["k", "n"], help="gemm B layout (default k)")
    p.add_argument("--hdim", type=_positive_int, default=None, help="attention head dim (default 128)")
    p.add_argument("--seqlen", type=_positive_int, default=None, help="attention (default 8192)")
    p.add_argument("--batch", type=_positive_int, default=None, help="attention (default 2)")
    p.add_argument("--heads", type=_positive_int, default=None, help="attention (default 16)")
    p.add_argument("--causal", action="store_true")
    p.add_argument("--softcap", action="store_true")
    p.add_argument("--deterministic", action="store_true", help="attn-bwd: deterministic dQ accumulation")
    p.add_argument("--problem", action="append", metavar="FIELD=VALUE",
                   help="set any problem field of the family, e.g. --problem seqlen=4096 (repeatable)")
    p.add_argument("--space", action="append", help="restrict a parameter, e.g. --space stages=2,3 (repeatable)")
    p.add_argument("--limit", type=_positive_int, default=None, help="at most this many points")
    p.add_argument("--jobs", type=_positive_int, default=None, help="parallel nvcc builds (default: all cores)")
    p.add_argument("--budget-s", type=_positive_float, default=None,
                   help="stop timing new points this many seconds after the start (the default config is always "
                        "timed; skipped points are listed as such)")
    p.add_argument("--out", default=None, help="write sweep.csv / sweep.json / sweep.png here")


def main(argv=None) -> int:
    p = _Parser(prog="cudadent42", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="GPU, nvcc, CUTLASS, cache, environment")
    b = sub.add_parser("build", help="pre-build default configs into the cache")
    b.add_argument("--family", default=None, help=f"one of {', '.join(families.names())}")
    b.add_argument("--all", action="store_true", help="every family's default configs")
    b.add_argument("--jobs", type=_positive_int, default=None)
    be = sub.add_parser("bench", help="benchmark against the anchors (needs a Hopper GPU)")
    be.add_argument("--json", default=None, help="also write the results here")
    be.add_argument("--png", default=None, help="plot the attention results here")
    be.add_argument("--quick", action="store_true", help="attention at S = 4096 and 16384 only; grouped GEMM at T = 16384; MoE on two rows")
    be.add_argument("--rounds", type=_positive_int, default=3,
                    help="attention: interleaved timing rounds per cell (ours, cuDNN, FA2 alternating); median reported")
    be.add_argument("--only", default=None, help=f"comma list of parts: {', '.join(BENCH_PARTS)} (default: all)")
    for name, desc in (("sweep", "build and time a config space on one problem"),
                       ("tune", "sweep, then record the winner in the tuned table")):
        sp = sub.add_parser(name, help=desc)
        _add_problem_args(sp)
        sp.add_argument("--prune-by-profile", type=_positive_int, nargs="?", const=3, default=0, metavar="K",
                        help="profile the K (default 3) fastest with ncu; within 3%% of the best, rank "
                             "spilling or non-compute-bound configs last")
    pr = sub.add_parser("profile", help="Nsight Compute counters and the limiter of chosen configs (needs ncu)")
    _add_problem_args(pr)
    pr.add_argument("--config", action="append", help="a config name to profile (repeatable)")
    pr.add_argument("--top", type=_non_negative_int, default=0,
                    help="also the K fastest of --out/sweep.json (or of a new sweep)")
    pr.add_argument("--timeout", type=_positive_int, default=300, help="seconds per ncu run")
    c = sub.add_parser("cache", help="list or clear the kernel cache")
    c.add_argument("action", choices=["list", "clear"])
    c.add_argument("name", nargs="?", default=None,
                   help="clear: only entries whose config name matches (a glob, or a substring without glob "
                        "characters)")
    c.add_argument("--pattern", default=None, help="same as NAME")
    args = p.parse_args(argv)
    try:
        return {"info": _info, "build": _build, "bench": _bench, "cache": _cache, "sweep": _sweep,
                "tune": _sweep, "profile": _profile}[args.cmd](args)
    except UsageError as e:
        print(f"cudadent42 {args.cmd}: error: {e}", file=sys.stderr)
        return 2
