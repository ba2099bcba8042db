"""Profiler-guided tuning: Nsight Compute counters for a few configs.

A sweep says which config is fastest; this says *why*, so a close race can be
decided on evidence (spills, memory- or barrier-bound) and the next kernel
change has a named target. For each config, `ncu` runs profile_target.py (one
process per config: the counters of one kernel, nothing else), its raw CSV is
parsed and reduced to a few numbers and a plain-language limiter.

ncu runs with `--clock-control none`: the clocks float exactly as in
bench_ms() and in the matmul ceiling measured here, so durations and
"% of ceiling" compare like with like (ncu's default, clocks locked to base,
would make every kernel look slower than it runs in a sweep). Its default `--cache-control all`
flushes caches before each replay pass, as bench_ms() flushes L2.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from .. import families
from ..bench.timing import bench_ms, tflops, warm_up_gpu
from ..jit import build, load
from ..runtime import hopper_available

NVTX_RANGE = "cd42_profile"  # profile_target.py wraps the profiled launch in this range
TARGET_MODULE = "cudadent42.tune.profile_target"
TARGET_ERROR = "cd42-profile-target:"  # profile_target.py prefixes its own failures with this

DURATION = "gpu__time_duration.sum"
TENSOR = ("sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",  # every tensor pipe
          "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active")  # sm90: HMMA + GMMA
TENSOR_GMMA = "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active"  # unverified name
DRAM = "dram__throughput.avg.pct_of_peak_sustained_elapsed"
L2 = "lts__throughput.avg.pct_of_peak_sustained_elapsed"
# ld/st.shared through the LSU only: TMA writes and wgmma reads of smem are not counted,
# so these measure the softmax / epilogue traffic, which is where conflicts come from.
BANK_CONFLICTS = ("l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum",
                  "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum")
OCCUPANCY = "sm__warps_active.avg.pct_of_peak_sustained_active"
THEORETICAL_OCCUPANCY = "sm__maximum_warps_per_active_cycle_pct"
REGISTERS = "launch__registers_per_thread"
DYNAMIC_SMEM = "launch__shared_mem_per_block_dynamic"
# smsp__average_warps_issue_stalled_<reason>_per_issue_active.ratio: average warps stalled on
# <reason> per issue-active cycle; the reasons share one scale, so their shares rank them.
# "selected" / "not_selected" are not stalls (issued / eligible) and are left out of the ranking.
STALL_REASONS = ("barrier", "long_scoreboard", "short_scoreboard", "wait", "gmma", "math_pipe_throttle",
                 "mio_throttle", "lg_throttle", "tex_throttle", "dispatch_stall", "no_instruction", "membar",
                 "sleeping", "branch_resolving", "drain", "imc_miss", "misc")
NOT_STALLS = ("selected", "not_selected")


def stall_metric(reason: str) -> str:
    return f"smsp__average_warps_issue_stalled_{reason}_per_issue_active.ratio"


METRICS = (DURATION, *TENSOR, DRAM, L2, *BANK_CONFLICTS, OCCUPANCY, REGISTERS, DYNAMIC_SMEM,
           "sm__throughput.avg.pct_of_peak_sustained_elapsed",
           *(stall_metric(r) for r in STALL_REASONS + NOT_STALLS))
# Names seen in fewer sm90 reports: asked for, but a run that fails with them is retried without.
OPTIONAL_METRICS = (TENSOR_GMMA, THEORETICAL_OCCUPANCY)
_state = {"skip_optional": False}  # set once ncu refused the optional names; saves a failed run per config


class ProfileError(RuntimeError):
    """ncu is missing, may not read the counters, or profiled nothing."""


def find_ncu() -> str:
    path = shutil.which("ncu")
    if path is None:
        raise ProfileError("Nsight Compute (`ncu`) was not found on PATH; install it (CUDA toolkit "
                           "nsight-compute) or add its directory to PATH, then run `cudadent42 profile` again")
    return path


def ncu_command(family: str, config_name: str, problem: dict, *, ncu: str = "ncu", metrics=None,
                warmup: int = 3, runner: str | None = None) -> list[str]:
    """argv of one ncu run that profiles the last launch of `config_name`.

    Selection: the target launches the kernel warmup+1 times and only the
    last launch sits inside the NVTX push/pop range NVTX_RANGE; ncu profiles
    the first launch of our kernel inside that range. An NVTX filter is used
    rather than --launch-skip because the number of earlier launches is not
    fixed (correctness run, warm-ups, helper kernels from torch and cuBLAS
    for the reference), and a miscount would silently profile a warm-up or
    nothing. The kernel-name filter keeps helper kernels launched inside the
    range (the attention tile counter's zero fill) out of the report: it is
    the family's kernel_regex, a substring of the kernel's function name
    (unanchored, so it matches the function, demangled and mangled names).
    `runner` ("module:function") overrides the family's run(config, case).
    """
    fam = families.get(family)
    metrics = list(metrics if metrics is not None else METRICS + OPTIONAL_METRICS)
    problem_json = json.dumps(problem, sort_keys=True, separators=(",", ":"))
    return [ncu, "--clock-control", "none", "--csv", "--page", "raw", "--print-units", "base",
            "--nvtx", "--nvtx-include", f"{NVTX_RANGE}/",
            "--kernel-name", f"regex:{fam.kernel_regex}", "--launch-count", "1",
            "--metrics", ",".join(metrics),
            sys.executable, "-m", TARGET_MODULE, fam.name, config_name, problem_json, "--warmup", str(warmup),
            *(["--runner", runner] if runner else [])]


# --------------------------------------------------------------------- parsing
_TIME_NS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6, "s": 1e9, "second": 1e9}
_SI = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _number(text: str):
    """'1,234.56' -> 1234.56; 'n/a' or '' -> None; anything else non-numeric stays a string."""
    t = text.strip().replace(",", "")
    if t in ("", "n/a", "N/A"):
        return None
    try:
        return float(t)
    except ValueError:
        return text


def _to_base(value, unit: str):
    """Undo ncu's automatic unit scaling: time -> ns, K/M/G/T-prefixed counts and bytes -> units."""
    if not isinstance(value, float):
        return value, unit
    if unit in _TIME_NS:
        return value * _TIME_NS[unit], "nsecond"
    m = re.match(r"^([KMGT])([a-z].*)$", unit)
    if m:
        return value * _SI[m.group(1)], m.group(2)
    return value, unit


def parse_ncu_csv(text: str) -> list[dict]:
    """One dict per profiled kernel from `ncu --csv --page raw` output.

    Program output and ==PROF== lines before the header are skipped (the
    header is the first row whose first cell is "ID"); the units row that
    follows it is kept in each result's "units". Metric values (columns with
    '__' in the name) become floats in base units (time in ns), "n/a" ->
    None; the descriptive columns ("Kernel Name", "Block Size", ...) stay
    strings. The long per-metric layout of the details page ("Metric Name",
    "Metric Value") is accepted too and pivoted to the same shape.
    """
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID",')), None)
    if start is None:
        return []
    table = [r for r in csv.reader(io.StringIO("\n".join(lines[start:]))) if r]
    header, body = table[0], table[1:]
    if "Metric Name" in header and "Metric Value" in header:
        return _pivot_long(header, body)
    units = {}
    if body and body[0][0] == "":  # the units row: every descriptive cell is empty
        units = dict(zip(header, body[0]))
        body = body[1:]
    out = []
    for cells in body:
        if len(cells) != len(header) or not cells[0].strip().isdigit():
            break  # trailing program output or a second table
        row, row_units = {}, {}
        for col, cell in zip(header, cells):
            if "__" in col:
                row[col], row_units[col] = _to_base(_number(cell), units.get(col, ""))
            else:
                row[col] = cell
        row["units"] = row_units
        out.append(row)
    return out


def _pivot_long(header, body) -> list[dict]:
    ix = {c: header.index(c) for c in ("ID", "Kernel Name", "Metric Name", "Metric Unit", "Metric Value")}
    rows: dict[str, dict] = {}
    for cells in body:
        if len(cells) != len(header):
            continue
        row = rows.setdefault(cells[ix["ID"]], {"ID": cells[ix["ID"]], "Kernel Name": cells[ix["Kernel Name"]],
                                                "units": {}})
        name = cells[ix["Metric Name"]]
        row[name], row["units"][name] = _to_base(_number(cells[ix["Metric Value"]]), cells[ix["Metric Unit"]])
    return list(rows.values())


# -------------------------------------------------------------------- analysis
# Limiter rules, first match wins (thresholds in % of peak):
TENSOR_BOUND_PCT = 80.0  # R1 tensor pipe this busy: compute-bound, the good outcome
CEILING_BOUND_PCT = 90.0  # R1 ... or this close to the measured cuBLAS-class matmul ceiling
DRAM_BOUND_PCT = 80.0  # R2
L2_BOUND_PCT = 80.0  # R3
DOMINANT_STALL_SHARE = 0.30  # R4 the top stall reason must hold this share of all stalls
# R4: top stall reason -> (kind, advice). kind "compute" is the only one --prune-by-profile does not flag.
STALL_ADVICE = {
    "barrier": ("sync", "stalls mostly on barrier wait: consumers waiting on each other / pipeline too shallow"),
    "long_scoreboard": ("latency", "waiting for loads (TMA / mbarrier): more stages or larger tiles"),
    "gmma": ("compute", "waiting on wgmma results: tensor cores busy, little independent work between waits"),
    "math_pipe_throttle": ("compute", "math pipe saturated (softmax exp / FMA next to the MMAs)"),
    "mio_throttle": ("latency", "shared-memory instruction queue full (ld/st.shared, epilogue): wider accesses"),
    "short_scoreboard": ("latency", "waiting on shared memory / MUFU results: check bank conflicts"),
    "wait": ("latency", "fixed-latency dependencies: too little independent work between dependent instructions"),
    "sleeping": ("sync", "warps sleeping in barrier back-off: producer and consumers out of step"),
    "lg_throttle": ("memory", "global load/store queue full (non-TMA global accesses)"),
    "no_instruction": ("latency", "instruction cache misses: code too large (unrolling)"),
    "membar": ("sync", "waiting on memory fences"),
}
LOW_OCCUPANCY_RATIO = 0.5  # note when achieved warps < this fraction of the theoretical occupancy


def _get(m: dict, name: str):
    v = m.get(name)
    return v if isinstance(v, float) else None


def stalls(metrics: dict) -> list[tuple[str, float, float]]:
    """(reason, warps per issue, share of all stalls), largest first."""
    vals = {r: _get(metrics, stall_metric(r)) for r in STALL_REASONS}
    vals = {r: v for r, v in vals.items() if v is not None and v > 0}
    total = sum(vals.values())
    return sorted(((r, v, v / total) for r, v in vals.items()), key=lambda t: -t[1])


def analyse(metrics: dict, flops: float, ceiling_tflops: float | None, spill_bytes: int | None = None) -> dict:
    """Reduce one kernel's counters to the report's numbers and a limiter."""
    dur_ns = _get(metrics, DURATION)
    tflops = flops / (dur_ns * 1e-9) / 1e12 if dur_ns else None
    pct_ceiling = 100.0 * tflops / ceiling_tflops if tflops and ceiling_tflops else None
    tensor = [v for v in (_get(metrics, n) for n in (*TENSOR, TENSOR_GMMA)) if v is not None]
    tensor_pct = max(tensor) if tensor else None  # the pipes overlap; the busiest reading is the tensor load
    dram, l2 = _get(metrics, DRAM), _get(metrics, L2)
    conflicts = [v for v in (_get(metrics, n) for n in BANK_CONFLICTS) if v is not None]
    occ, theo = _get(metrics, OCCUPANCY), _get(metrics, THEORETICAL_OCCUPANCY)
    st = stalls(metrics)

    def ge(v, t):
        return v is not None and v >= t

    if ge(tensor_pct, TENSOR_BOUND_PCT) or ge(pct_ceiling, CEILING_BOUND_PCT):
        kind, limiter = "compute", (f"tensor-bound (tensor pipe {tensor_pct:.0f}%)" if ge(tensor_pct, TENSOR_BOUND_PCT)
                                    else f"near the matmul ceiling ({pct_ceiling:.0f}%)")
    elif ge(dram, DRAM_BOUND_PCT):
        kind, limiter = "memory", f"memory-bound (DRAM {dram:.0f}% of peak)"
    elif ge(l2, L2_BOUND_PCT):
        kind, limiter = "memory", f"L2-bound (L2 {l2:.0f}% of peak)"
    elif st and st[0][2] >= DOMINANT_STALL_SHARE:
        reason, _, share = st[0]
        kind, advice = STALL_ADVICE.get(reason, ("latency", f"mostly stalled on {reason}"))
        limiter = f"{advice} ({reason} {share:.0%} of stalls)"
    else:
        kind = "unknown"
        limiter = "no single limiter" + (f" (top stall {st[0][0]} {st[0][2]:.0%})" if st else "")
    notes = []
    if spill_bytes:
        notes.append(f"spills {spill_bytes} B to local memory")
    if occ is not None and theo and occ < LOW_OCCUPANCY_RATIO * theo:
        notes.append(f"achieved occupancy {occ:.0f}% of a possible {theo:.0f}% (idle warps / tail)")
    return dict(
        duration_us=dur_ns / 1e3 if dur_ns else None, tflops=tflops, pct_ceiling=pct_ceiling, tensor_pct=tensor_pct,
        dram_pct=dram, l2_pct=l2, bank_conflicts=sum(conflicts) if conflicts else None, occupancy_pct=occ,
        registers=_get(metrics, REGISTERS), dynamic_smem_bytes=_get(metrics, DYNAMIC_SMEM),
        top_stalls=", ".join(f"{r} {s:.0%}" for r, _, s in st[:2]), spill_bytes=spill_bytes,
        limiter="; ".join([limiter, *notes]), limiter_kind=kind)


def measure_matmul_ceiling(n: int = 8192) -> float:
    """TFLOP/s of torch.matmul (cuBLAS) on n^3 bf16: the reachable ceiling on this GPU (GPU only)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    warm_up_gpu(1.0)
    return tflops(2.0 * n ** 3, bench_ms(lambda: a @ b, warmup=5, iters=30))


# ------------------------------------------------------------------ profiling
def _check_tool(text: str) -> None:
    if "ERR_NVGPUCTRPERM" in text:
        raise ProfileError("ncu may not read the GPU performance counters here (ERR_NVGPUCTRPERM): run as root "
                           "or load the driver with NVreg_RestrictProfilingToAdminUsers=0")
    if "LibraryNotLoaded" in text or "Failed to load" in text:
        line = next((ln for ln in text.splitlines() if "LibraryNotLoaded" in ln or "Failed to load" in ln), "")
        raise ProfileError(f"ncu could not load its libraries (driver / Nsight Compute mismatch?): {line.strip()}")


def _tail(text: str, n: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


def _run_ncu(ncu, family, name, problem, timeout, warmup, log, raw_dir=None,
             runner=None) -> tuple[dict | None, str | None]:
    """(metrics of the one profiled kernel, None) or (None, why the target failed). With `raw_dir`,
    ncu's raw CSV output is kept there as ncu_raw_<config>.csv (evidence, and parser fixtures)."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])  # python/: the target imports this source tree
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    tries = [METRICS] if _state["skip_optional"] else [METRICS + OPTIONAL_METRICS, METRICS]
    for i, metrics in enumerate(tries):
        cmd = ncu_command(family, name, problem, ncu=ncu, metrics=metrics, warmup=warmup, runner=runner)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return None, f"ncu timed out after {timeout} s"
        text = (proc.stdout or "") + "\n" + (proc.stderr or "")
        _check_tool(text)
        own = [ln for ln in text.splitlines() if ln.startswith(TARGET_ERROR)]
        if own:
            return None, own[-1][len(TARGET_ERROR):].strip()
        rows = parse_ncu_csv(proc.stdout or "")
        if raw_dir is not None:
            Path(raw_dir).mkdir(parents=True, exist_ok=True)
            (Path(raw_dir) / f"ncu_raw_{name}.csv").write_text(proc.stdout or "")
        if rows:
            if i:  # the optional names were the problem: leave them out from now on
                _state["skip_optional"] = True
                log(f"note: ncu failed with {', '.join(OPTIONAL_METRICS)}; profiling without them")
            return rows[-1], None
    raise ProfileError(f"ncu profiled no {families.get(family).kernel_regex} launch for {name} (exit status {proc.returncode}; "
                       f"no kernel inside the NVTX range {NVTX_RANGE!r}?). Last output:\n{_tail(text)}")


def _release_gpu_memory() -> None:
    """Each ncu child builds its own inputs and fp32 reference; memory cached by this process
    (a sweep's reference, the ceiling's matrices) would otherwise be missing there."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _as_configs(family: str, configs) -> list:
    fam = families.get(family)
    return [fam.config_from_name(c) if isinstance(c, str) else c for c in configs]


def _build_meta(configs) -> dict:
    """config name -> JIT cache meta (registers, spills), building first so nvcc never runs under ncu."""
    out = {}
    for cfg, res in zip(configs, build(configs, progress=False)):
        out[cfg.name] = load(cfg).meta if res.ok else {"error": res.error.splitlines()[0]}
    return out


REPORT_FIELDS = ("config", "status", "duration_us", "tflops", "pct_ceiling", "tensor_pct", "dram_pct", "l2_pct",
                 "bank_conflicts", "occupancy_pct", "top_stalls", "registers", "spill_bytes", "dynamic_smem_bytes",
                 "limiter", "limiter_kind", "kernel", "error")


def profile(family: str, problem: dict, configs=None, *, out_dir: str | None = None, timeout: int = 300,
            warmup: int = 3, ceiling_tflops: float | None = None, runner: str | None = None,
            log=print) -> list[dict]:
    """Profile each config (default: the heuristic's) with ncu; one report row each, in the given order.
    The ncu target runs the configs with `runner` ("module:function", default: the family's runner)."""
    fam = families.get(family)
    ncu = find_ncu()
    cfgs = _as_configs(family, configs or [fam.heuristic(problem)])
    meta = _build_meta(cfgs)
    if ceiling_tflops is None:
        ceiling_tflops = measure_matmul_ceiling() if hopper_available() else None
    _release_gpu_memory()
    if ceiling_tflops:
        log(f"%ceil is against a bf16 matmul ceiling of {ceiling_tflops:.0f} TFLOP/s")
    fl = fam.flops(problem)
    rows = []
    for cfg in cfgs:
        m = meta[cfg.name]
        row = dict.fromkeys(REPORT_FIELDS)
        row.update(config=cfg.name, status="profiled", registers=m.get("registers"))
        if "error" in m:
            row.update(status="build failed", error=m["error"])
        else:
            spills = m.get("spill_stores", 0) + m.get("spill_loads", 0)
            log(f"profiling {cfg.name} ...")
            metrics, err = _run_ncu(ncu, family, cfg.name, problem, timeout, warmup, log, raw_dir=out_dir,
                                    runner=runner)
            if err:
                row.update(status="failed", error=err, spill_bytes=spills)
            else:
                row.update(analyse(metrics, fl, ceiling_tflops, spills), kernel=metrics.get("Kernel Name"),
                           metrics={k: v for k, v in metrics.items() if "__" in k})
                if row["registers"] is None:
                    row["registers"] = m.get("registers")
        rows.append(row)
    log(format_report(rows))
    if out_dir:
        write_report(rows, Path(out_dir), family, problem, ceiling_tflops)
    return rows


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_report(rows) -> str:
    head = (f"{'config':<46} {'us':>8} {'TFLOP/s':>8} {'%ceil':>6} {'tensor%':>7} {'DRAM%':>6} {'L2%':>5} "
            f"{'conflicts':>9} {'occ%':>5} {'regs':>5} {'spill':>5}  top stalls / limiter")
    lines = [head]
    for r in rows:
        if r["status"] != "profiled":
            lines.append(f"{r['config']:<46} [{r['status']}] {r['error'] or ''}")
            continue
        lines.append(
            f"{r['config']:<46} {_fmt(r['duration_us'], '.1f'):>8} {_fmt(r['tflops'], '.1f'):>8} "
            f"{_fmt(r['pct_ceiling'], '.0f'):>6} {_fmt(r['tensor_pct'], '.0f'):>7} {_fmt(r['dram_pct'], '.0f'):>6} "
            f"{_fmt(r['l2_pct'], '.0f'):>5} {_fmt(r['bank_conflicts'], '.0f'):>9} {_fmt(r['occupancy_pct'], '.0f'):>5} "
            f"{_fmt(r['registers'], '.0f'):>5} {_fmt(r['spill_bytes'], 'd'):>5}  {r['top_stalls'] or '-'}\n"
            f"{'':<46} -> {r['limiter']}")
    return "\n".join(lines)


def write_report(rows, out: Path, family: str, problem: dict, ceiling_tflops) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "profile.json", "w") as f:
        json.dump({"family": family, "problem": problem, "ceiling_tflops": ceiling_tflops,
                   "metrics_requested": list(METRICS + OPTIONAL_METRICS), "rows": rows}, f, indent=1)
    with open(out / "profile.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(REPORT_FIELDS), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


# ------------------------------------------------------- tie-breaking a sweep
def prune_by_profile(family: str, problem: dict, rows: list[dict], k: int = 3, band: float = 0.03,
                     log=print, **profile_kw) -> list[dict]:
    """Profile the k fastest timed rows of a sweep (best first) and use the profile as a tie-break.

    Only within `band` (3%) of the best time, which is about the run-to-run
    noise with floating clocks: a config that spills or whose limiter is not
    compute (memory, latency, barrier/sync bound) is moved behind the clean
    configs of that band, because its speed depends more on conditions the
    sweep did not vary (co-running traffic, sizes in the same bucket).
    Nothing outside the band moves, and if no clean config is in the band the
    order stays. Returns the rows re-ordered; pruned ones carry the reason in
    "pruned_by_profile".
    """
    for r in rows:  # same columns on every row, so sweep.csv stays rectangular
        r.update({c: r.get(c) for c in ("limiter", "limiter_kind", "pruned_by_profile")})
    timed = [r for r in rows if r.get("time_ms")]
    if not timed:
        log("--prune-by-profile: nothing was timed, nothing to prune")
        return rows
    top = timed[:k]
    try:
        prof = profile(family, problem, [r["config"] for r in top], log=log, **profile_kw)
    except ProfileError as e:
        log(f"WARNING: --prune-by-profile skipped, order unchanged: {e}")
        return rows
    for r, p in zip(top, prof):
        r.update(limiter=p["limiter"], limiter_kind=p["limiter_kind"])
    best = top[0]["time_ms"]
    in_band = [r for r in top if r["time_ms"] <= best * (1 + band)]

    def flags(r, p):
        why = []
        if p["spill_bytes"]:
            why.append(f"spills {p['spill_bytes']} B")
        if p["status"] == "profiled" and p["limiter_kind"] in ("memory", "latency", "sync"):
            why.append(f"not compute-bound: {p['limiter']}")
        return why

    reasons = {r["config"]: flags(r, p) for r, p in zip(top, prof)}
    clean = [r for r in in_band if not reasons[r["config"]]]
    flagged = [r for r in in_band if reasons[r["config"]]]
    if not flagged:
        log(f"--prune-by-profile: the {len(in_band)} config(s) within {band:.0%} of the best are clean; order kept")
        return rows
    if not clean:
        log(f"--prune-by-profile: every config within {band:.0%} of the best is flagged; order kept")
        return rows
    for r in flagged:
        r["pruned_by_profile"] = "; ".join(reasons[r["config"]])
        log(f"pruned {r['config']} ({r['time_ms']:.3f} ms, within {band:.0%} of the best): {r['pruned_by_profile']}")
    moved = {id(r) for r in in_band}
    return clean + flagged + [r for r in rows if id(r) not in moved]
