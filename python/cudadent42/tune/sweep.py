"""Sweep a family's config space on one problem: build all points in
parallel, check each once against the family's fp32 reference (GUIDE.md's
tolerance rule, reference/tolerance.py), time the correct ones, rank, and
write CSV / JSON / PNG. `cudadent42 sweep` and `tune` call this.

The kernels run through `run(config, case) -> output`, handed in by the op
layer or the CLI (families/registry.py): this module never imports ops.
"""
from __future__ import annotations

import csv
import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch

from .. import families
from ..bench.timing import bench_ms, tflops
from ..jit import build, load
from ..reference import within_tolerance
from ..runtime import hopper_available
from . import profile
from .space import enumerate_space
from .table import problem_key, record


def default_config(family: str, p: dict):
    """The family's untuned default for problem `p` (what a sweep marks as `default`)."""
    return families.get(family).heuristic(p)


def flops(family: str, p: dict) -> float:
    return families.get(family).flops(p)


def sweep(family: str, problem: dict, *, run=None, space: dict | None = None, jobs: int | None = None,
          out_dir: str | None = None, limit: int | None = None, prune_by_profile: int = 0,
          deadline: float | None = None, log=print) -> list[dict]:
    """Returns one row per point, best first (timed rows), then the rest.
    `run(config, case) -> output` runs one config on the family's inputs
    (needed only where a GPU times the points). With `prune_by_profile` = K,
    the K fastest are profiled with ncu and used as a tie-break within 3% of
    the best (profile.prune_by_profile). Points not yet timed when
    time.time() passes `deadline` are skipped (autotune)."""
    t_start = time.time()
    fam = families.get(family)
    fam.check_problem(problem, fam.problem_fields + fam.size_fields)
    timing = hopper_available()
    if timing and run is None:  # say so before minutes of builds
        raise ValueError(f"sweep of {family}: timing needs run=, the op layer's run(config, case) "
                         f"({fam.runner})")
    fixed = {k: problem[k] for k in fam.fixed_fields}
    sp = enumerate_space(family, fixed, space)
    log(sp.summary())
    cands = sp.candidates[:limit] if limit else sp.candidates
    default = fam.heuristic(problem)
    if default not in cands:
        cands.append(default)
    results = build(cands, jobs=jobs)
    rows = []
    for cfg, r in zip(cands, results):
        row = dict(config=cfg.name, **asdict(cfg), status="built" if r.ok else "build failed",
                   error=None if r.ok else r.error.splitlines()[0], is_default=cfg == default,
                   build_seconds=round(r.seconds, 1), dynamic_smem_bytes=cfg.smem_bytes(),
                   registers=None, spill_bytes=None, time_ms=None, tflops=None, max_abs_err=None)
        if r.ok:
            meta = load(cfg).meta
            row.update(registers=meta["registers"], spill_bytes=meta["spill_stores"] + meta["spill_loads"])
        rows.append(row)
    log(f"built {sum(r['status'] == 'built' for r in rows)}/{len(rows)} in {time.time() - t_start:.0f} s")

    if not timing:
        log("no sm_90 GPU here: configs were built and checked by ptxas, not timed")
    else:
        case = fam.make_case(problem)
        with torch.no_grad():
            ref, lowp = fam.reference(case, True), fam.reference(case, False)
        fl = fam.flops(problem)
        for cfg, row in zip(cands, rows):
            if row["status"] != "built":
                continue
            if deadline is not None and time.time() > deadline and not row["is_default"]:
                row["status"] = "skipped (time budget)"
                continue
            try:
                out = run(cfg, case)  # correctness once, before it may win
                torch.cuda.synchronize()
                ok, err = within_tolerance(out, ref, lowp)
                row["max_abs_err"] = err
                if not ok:
                    row["status"] = "wrong result"
                    continue
                row["time_ms"] = bench_ms(lambda: run(cfg, case), warmup=3, iters=20)
                row["tflops"] = tflops(fl, row["time_ms"])
                row["status"] = "timed"
            except Exception as e:  # noqa: BLE001 - one bad point must not end the sweep
                row["status"], row["error"] = "launch failed", str(e).splitlines()[0]
        del case, ref, lowp
    rows.sort(key=lambda r: -(r["tflops"] or -1))
    if prune_by_profile:
        rows = profile.prune_by_profile(family, problem, rows, k=prune_by_profile, log=log)
    for i, r in enumerate(rows):
        r["rank"] = i + 1 if r["tflops"] else None
    log(format_table(rows))
    statuses = Counter(r["status"] for r in rows)
    log("points: " + ", ".join(f"{n} {s}" for s, n in statuses.most_common()))
    d = next((r for r in rows if r["is_default"]), None)
    if d is not None:
        log(f"current default {d['config']}: rank {d['rank']} of {sum(r['tflops'] is not None for r in rows)}")
    log(f"sweep took {time.time() - t_start:.0f} s")
    if out_dir:
        write_outputs(rows, Path(out_dir), family, problem)
    return rows


def format_table(rows, top: int = 15) -> str:
    lines = [f"{'rank':>4} {'TFLOP/s':>8} {'ms':>8} {'regs':>5} {'smem KB':>8}  config / status"]
    for r in rows[:top]:
        tf = f"{r['tflops']:.1f}" if r["tflops"] else "-"
        ms = f"{r['time_ms']:.3f}" if r["time_ms"] else "-"
        mark = "  <- default" if r["is_default"] else ""
        lines.append(f"{r['rank'] or '-':>4} {tf:>8} {ms:>8} {str(r['registers']):>5} "
                     f"{r['dynamic_smem_bytes'] / 1024:>8.0f}  {r['config']} [{r['status']}]{mark}")
    return "\n".join(lines)


def write_outputs(rows, out: Path, family: str, problem: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "sweep.json", "w") as f:
        json.dump({"family": family, "problem": problem, "points": rows}, f, indent=1)
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    timed = [r for r in rows if r["tflops"]]
    if timed:
        import matplotlib  # optional and slow to import: only when there is something to plot

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(10, max(3, 0.25 * len(timed))))
        ax.barh([r["config"] for r in timed][::-1], [r["tflops"] for r in timed][::-1],
                color=["tab:orange" if r["is_default"] else "tab:blue" for r in timed][::-1])
        ax.set_xlabel("TFLOP/s")
        ax.set_title(f"{family} sweep ({problem})", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "sweep.png", dpi=90)


def tune(family: str, problem: dict, log=print, **sweep_kw) -> dict | None:
    """Sweep, then persist the fastest correct config for this problem class
    in the user's tuned table (used by later calls; see table.py)."""
    rows = sweep(family, problem, log=log, **sweep_kw)
    best = next((r for r in rows if r["tflops"]), None)
    if best is None:
        log("nothing was timed (no sm_90 GPU, or every point failed): tuned table unchanged")
        return None
    default = next((r for r in rows if r["is_default"]), None)
    key = problem_key(family, **problem)
    gpu = torch.cuda.get_device_name()
    stats = dict(tflops=round(best["tflops"], 1), problem=problem, tuned_at=time.strftime("%Y-%m-%d %H:%M"),
                 default=default["config"] if default else None,
                 default_tflops=round(default["tflops"], 1) if default and default["tflops"] else None)
    record(key, gpu, best["config"], **stats)
    gain = f" ({best['tflops'] / default['tflops']:.3f}x the default)" if stats["default_tflops"] else ""
    log(f"tuned {key} on {gpu}: {best['config']} at {best['tflops']:.1f} TFLOP/s{gain}")
    return best


def top_configs(family: str, problem: dict, k: int, *, out_dir: str | None = None, log=print, **sweep_kw) -> list[str]:
    """The k fastest correct configs (what `cudadent42 profile --top` profiles): from
    `out_dir`/sweep.json when it holds a sweep of the same kernel family and fixed
    fields, else from a fresh sweep (written to out_dir when given)."""
    fam = families.get(family)
    path = Path(out_dir) / "sweep.json" if out_dir else None
    if path is not None and path.exists():
        data = json.loads(path.read_text())
        same = data.get("family") == family and all(
            data.get("problem", {}).get(f) == problem[f] for f in fam.fixed_fields)
        if same:
            if data["problem"] != problem:
                log(f"note: {path} was swept on {data['problem']}, profiling {problem}")
            names = [p["config"] for p in data["points"] if p.get("status") == "timed"][:k]
            if names:
                log(f"top {len(names)} of {path}: {', '.join(names)}")
                return names
        log(f"{path} is a sweep of another problem or has no timed point: sweeping again")
    rows = sweep(family, problem, out_dir=out_dir, log=log, **sweep_kw)
    names = [r["config"] for r in rows if r["status"] == "timed"][:k]
    if not names:
        raise profile.ProfileError("the sweep timed no config (no sm_90 GPU, or every point failed): "
                                   "nothing to profile")
    return names
