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
