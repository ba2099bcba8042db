"""Sweep a family's config space on one problem: build all points in
parallel, check each once against the fp32 reference, time the correct ones,
rank, and write CSV / JSON / PNG. `cudadent42 sweep` and `tune` call this."""
from __future__ import annotations

import csv
import json
import math
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch

from ..jit import build, load
from .space import enumerate_space

# Problem fields that select the kernel (part of every config of the sweep);
# the rest (sizes) only shape the inputs.
FIXED_FIELDS = {"gemm": ("dtype", "b_major"), "attn-fwd": ("dtype", "head_dim", "mask", "softcap", "varlen"),
                "attn-bwd": ("dtype", "head_dim", "mask", "deterministic")}
_TORCH = {"bf16": torch.bfloat16, "fp16": torch.float16}


def default_config(family: str, p: dict):
    from ..configs.select import heuristic_config

    return heuristic_config(family, p)


def flops(family: str, p: dict) -> float:
    if family == "gemm":
        return 2.0 * p["M"] * p["N"] * p["K"]
    f = 4.0 * p["batch"] * p["heads"] * p["seqlen"] ** 2 * p["head_dim"]
    f = f / 2 if p["mask"] == "causal" else f
    return 2.5 * f if family == "attn-bwd" else f  # backward: 5 GEMMs of the forward's 2


def _gemm_case(p):
    from ..ops.gemm import gemm_out

    dt = _TORCH[p["dtype"]]
    a = torch.randn(p["M"], p["K"], device="cuda", dtype=dt)
    b = (torch.randn(p["N"], p["K"], device="cuda", dtype=dt).t() if p["b_major"] == "k"
         else torch.randn(p["K"], p["N"], device="cuda", dtype=dt))
    out = torch.empty(p["M"], p["N"], device="cuda", dtype=dt)
    ref, lowp = a.float() @ b.float(), a @ b
    return (lambda cfg: gemm_out(a, b, out, cfg)), (lambda: out), ref, lowp


def _attn_case(p):
    from ..ops.attention import flash_attn_func

    if p["varlen"] or p["mask"] == "local":
        raise ValueError("sweeps time dense (non-varlen) none/causal attention problems")
    dt = _TORCH[p["dtype"]]
    shape = (p["batch"], p["seqlen"], p["heads"], p["head_dim"])
    q, k, v = (torch.randn(shape, device="cuda", dtype=dt) for _ in range(3))
    causal = p["mask"] == "causal"
    res = {}

    def run(cfg):
        res["out"] = flash_attn_func(q, k, v, causal=causal, softcap=10.0 if p["softcap"] else 0.0, config=cfg)

    def ref_attn(upcast):
        x = [t.float() if upcast else t for t in (q, k, v)]
        s = torch.einsum("bqhd,bkhd->bhqk", x[0], x[1]).float() / math.sqrt(p["head_dim"])
        if p["softcap"]:
            s = 10.0 * torch.tanh(s / 10.0)
        if causal:
            s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
        pr = torch.softmax(s, -1)
        return torch.einsum("bhqk,bkhd->bqhd", pr if upcast else pr.to(dt), x[2])

    if p["batch"] * p["heads"] * p["seqlen"] ** 2 > 2**31:
        raise ValueError("reference would not fit: sweep with a smaller batch*heads*seqlen^2, then time larger")
    return run, (lambda: res["out"]), ref_attn(True), ref_attn(False)


def _attn_bwd_case(p):
    """Backward of dense attention: the forward (default config) runs once, each
    config's backward is timed; the check compares dq, dk, dv with fp32 autograd."""
    from ..ops.attention import flash_attn_func
    from ..ops.attention_bwd import attn_bwd

    if p["mask"] == "local":
        raise ValueError("sweeps time dense none/causal attention problems")
    if p["batch"] * p["heads"] * p["seqlen"] ** 2 > 2**30:
        raise ValueError("reference would not fit: sweep with a smaller batch*heads*seqlen^2")
    dt = _TORCH[p["dtype"]]
    shape = (p["batch"], p["seqlen"], p["heads"], p["head_dim"])
    q, k, v = (torch.randn(shape, device="cuda", dtype=dt) for _ in range(3))
    causal = p["mask"] == "causal"
    out, lse = flash_attn_func(q, k, v, causal=causal, return_lse=True)
    dout = torch.randn_like(out)
    res = {}

    def run(cfg):
        res["grads"] = attn_bwd(dout, q, k, v, out, lse, causal=causal, deterministic=p["deterministic"], config=cfg)

    def ref_grads(upcast):
        x = [t.detach().float() if upcast else t.detach() for t in (q, k, v)]
        for t in x:
            t.requires_grad_()
        s = torch.einsum("bqhd,bkhd->bhqk", x[0], x[1]).float() / math.sqrt(p["head_dim"])
        if causal:
            s = s.masked_fill(torch.ones_like(s, dtype=torch.bool).triu(1), float("-inf"))
        pr = torch.softmax(s, -1)
        o = torch.einsum("bhqk,bkhd->bqhd", pr if upcast else pr.to(dt), x[2])
        return torch.autograd.grad(o, x, dout.to(o.dtype))

    return run, (lambda: res["grads"]), ref_grads(True), ref_grads(False)


def case(family: str):
    """The input builder for a family: returns (run(cfg), output(), ref, lowp)."""
    return {"gemm": _gemm_case, "attn-fwd": _attn_case, "attn-bwd": _attn_bwd_case}[family]


def _within_tolerance(out, ref, lowp) -> tuple[bool, float]:
    """GUIDE.md's rule; tuples (the backward's dq, dk, dv) must pass element by element."""
    if isinstance(out, (tuple, list)):
        checks = [_within_tolerance(o, r, lp) for o, r, lp in zip(out, ref, lowp)]
        return all(ok for ok, _ in checks), max(err for _, err in checks)
    err = (out.float() - ref).abs().max().item()
    base = (lowp.float() - ref).abs().max().item()
    return (not math.isnan(err)) and err <= 2 * base + 1e-5, err


def sweep(family: str, problem: dict, *, space: dict | None = None, jobs: int | None = None,
          out_dir: str | None = None, limit: int | None = None, prune_by_profile: int = 0,
          deadline: float | None = None, log=print) -> list[dict]:
    """Returns one row per point, best first (timed rows), then the rest.
    With `prune_by_profile` = K, the K fastest are profiled with ncu and used
    as a tie-break within 3% of the best (profile.prune_by_profile). Points
    not yet timed when time.time() passes `deadline` are skipped (autotune)."""
    from ..bench.timing import bench_ms, tflops
    from ..runtime import hopper_available

    t_start = time.time()
    fixed = {k: problem[k] for k in FIXED_FIELDS[family]}
    sp = enumerate_space(family, fixed, space)
    log(sp.summary())
    cands = sp.candidates[:limit] if limit else sp.candidates
    default = default_config(family, problem)
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

    if not hopper_available():
        log("no sm_90 GPU here: configs were built and checked by ptxas, not timed")
    else:
        run, output, ref, lowp = case(family)(problem)
        fl = flops(family, problem)
        for cfg, row in zip(cands, rows):
            if row["status"] != "built":
                continue
            if deadline is not None and time.time() > deadline and not row["is_default"]:
                row["status"] = "skipped (time budget)"
                continue
            try:
                run(cfg)  # correctness once, before it may win
                torch.cuda.synchronize()
                ok, err = _within_tolerance(output(), ref, lowp)
                row["max_abs_err"] = err
                if not ok:
                    row["status"] = "wrong result"
                    continue
                row["time_ms"] = bench_ms(lambda: run(cfg), warmup=3, iters=20)
                row["tflops"] = tflops(fl, row["time_ms"])
                row["status"] = "timed"
            except Exception as e:  # noqa: BLE001 - one bad point must not end the sweep
                row["status"], row["error"] = "launch failed", str(e).splitlines()[0]
        del ref, lowp
    rows.sort(key=lambda r: -(r["tflops"] or -1))
    if prune_by_profile:
        from .profile import prune_by_profile as prune

        rows = prune(family, problem, rows, k=prune_by_profile, log=log)
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
        import matplotlib

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
    from .table import problem_key, record

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
