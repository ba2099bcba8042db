"""Grouped-GEMM benchmark: cudadent42.grouped_gemm against torch._grouped_mm
and a dense cuBLAS matmul of equal FLOPs (the ceiling), same run, same card.

Rows: both expert projections of five MoE models (gate/up: K = H, N = 2F;
down: K = F, N = H), T x top-k routed rows, balanced and Zipf-skewed routing;
forward (2D x 3D, weights as the transpose view of (G, N, K) parameters) and
weight gradient (2D x 2D: x^T (K, rows) by dY (rows, N)).
"""
from __future__ import annotations

import torch

from ..reference.grouped_gemm import group_sizes, offsets
from .timing import bench_ms, tflops

# name: (G, H, F, top_k)
MODELS = {
    "mixtral-8x7b": (8, 4096, 14336, 2),
    "qwen3-30b-a3b": (128, 2048, 768, 8),
    "gpt-oss-120b": (128, 2880, 2880, 4),
    "olmoe": (64, 2048, 1024, 8),
    "deepseek-v3": (256, 7168, 2048, 8),
}
FINE_GRAINED = ("qwen3-30b-a3b", "olmoe", "deepseek-v3")
TOKENS = (16384, 32768)


def cells(quick: bool = False):
    for model, (G, H, F, k) in MODELS.items():
        for T in TOKENS[:1] if quick else TOKENS:
            for proj, (K, N) in (("up", (H, 2 * F)), ("down", (F, H))):
                for routing in ("balanced", "skewed"):
                    for direction in ("fwd", "wgrad"):
                        yield dict(model=model, T=T, rows=T * k, G=G, proj=proj, K=K, N=N, routing=routing,
                                   direction=direction)


def _inputs(c, dtype):
    rows, G, K, N = c["rows"], c["G"], c["K"], c["N"]
    sizes = group_sizes(rows, G, c["routing"], torch.Generator().manual_seed(G + K))
    offs = offsets(sizes, "cuda")
    if c["direction"] == "fwd":
        a = torch.randn(rows, K, device="cuda", dtype=dtype)
        b = torch.randn(G, N, K, device="cuda", dtype=dtype).transpose(1, 2)  # (G, K, N), K contiguous
        dense = (a, torch.randn(N, K, device="cuda", dtype=dtype).t())
    else:
        a = torch.randn(rows, K, device="cuda", dtype=dtype).t()  # x^T: (K, rows)
        b = torch.randn(rows, N, device="cuda", dtype=dtype)      # dY
        dense = (a, b)  # (K, rows) @ (rows, N): the same FLOPs as one ungrouped weight gradient
    return a, b, offs, dense, sizes


def run_grouped_gemm_bench(quick: bool = False, dtype=torch.bfloat16, log=print, iters: int = 10):
    from .. import grouped_gemm

    rows_out = []
    log(HEADER)
    for c in cells(quick):
        a, b, offs, (da, db), sizes = _inputs(c, dtype)
        flops = 2.0 * c["rows"] * c["K"] * c["N"]
        grouped_gemm(a, b, offs)  # build / load outside the timing
        t_ours = bench_ms(lambda: grouped_gemm(a, b, offs), warmup=2, iters=iters)
        t_torch = bench_ms(lambda: torch._grouped_mm(a, b, offs), warmup=2, iters=iters)
        t_dense = bench_ms(lambda: torch.matmul(da, db), warmup=2, iters=iters)
        row = dict(c, ours_ms=t_ours, torch_ms=t_torch, dense_ms=t_dense,
                   ours_tflops=tflops(flops, t_ours), torch_tflops=tflops(flops, t_torch),
                   dense_tflops=tflops(flops, t_dense), rows_per_group=c["rows"] / c["G"],
                   max_group=max(sizes), empty_groups=sizes.count(0))
        row["vs_dense"] = t_dense / t_ours
        row["vs_torch"] = t_torch / t_ours
        rows_out.append(row)
        log(format_row(row))
        del a, b, offs, da, db
        torch.cuda.empty_cache()
    return rows_out


HEADER = (f"{'model':<14} {'T':>6} {'proj':>4} {'route':>8} {'dir':>5} {'G':>4} {'K':>6} {'N':>6} "
          f"{'ours':>6} {'torch':>6} {'dense':>6} {'x dense':>7} {'x torch':>7}  (TFLOP/s)")


def format_row(r) -> str:
    return (f"{r['model']:<14} {r['T']:>6} {r['proj']:>4} {r['routing']:>8} {r['direction']:>5} {r['G']:>4} "
            f"{r['K']:>6} {r['N']:>6} {r['ours_tflops']:>6.0f} {r['torch_tflops']:>6.0f} {r['dense_tflops']:>6.0f} "
            f"{r['vs_dense']:>7.3f} {r['vs_torch']:>7.3f}")


def check_targets(rows) -> list[tuple[str, bool, str]]:
    """The grouped-GEMM issue's targets on one run's rows: (target, passed, the weakest cell)."""
    out = []

    def worst(sel, key):
        return min(sel, key=lambda r: r[key]) if sel else None

    def cell(r, key):
        return (f"{r[key]:.3f} ({r['model']} T={r['T']} {r['proj']} {r['routing']} {r['direction']})"
                if r else "no rows")

    for routing, bar in (("balanced", 0.90), ("skewed", 0.80)):
        sel = [r for r in rows if r["routing"] == routing and r["rows_per_group"] >= 1024]
        w = worst(sel, "vs_dense")
        out.append((f">= {bar:.2f}x dense, {routing}, >= 1024 rows per group", bool(w) and w["vs_dense"] >= bar,
                    cell(w, "vs_dense")))
    w = worst([r for r in rows if r["model"] in FINE_GRAINED], "vs_torch")
    out.append((">= 1.2x torch._grouped_mm on fine-grained rows", bool(w) and w["vs_torch"] >= 1.2,
                cell(w, "vs_torch")))
    w = worst(rows, "vs_torch")
    out.append(("no cell below 1.0x torch._grouped_mm", bool(w) and w["vs_torch"] >= 1.0, cell(w, "vs_torch")))
    return out


def plot(rows, path):
    """Ratios per cell: x dense matmul and x torch._grouped_mm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.22 * len(rows)), 8), squeeze=False)
    labels = [f"{r['model'][:8]} {r['T'] // 1024}k {r['proj']} {r['routing'][:4]} {r['direction']}" for r in rows]
    for ax, key, bar, title in ((axes[0][0], "vs_dense", 0.9, "x dense cuBLAS matmul of equal FLOPs"),
                                (axes[1][0], "vs_torch", 1.2, "x torch._grouped_mm")):
        ax.bar(range(len(rows)), [r[key] for r in rows])
        ax.axhline(bar, color="r", lw=1)
        ax.set_title(f"cudadent42.grouped_gemm {title} (bf16)")
        ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=6)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
