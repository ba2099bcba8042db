"""GEMM benchmark: cudadent42.gemm against torch.matmul (cuBLAS), same run."""
from __future__ import annotations

import torch

from .timing import bench_ms, tflops

# (M, N, K): the square shapes and a skinny MoE-like projection.
DEFAULT_SHAPES = [(8192, 8192, 8192), (4096, 4096, 4096), (16384, 1024, 4096)]


def run_gemm_bench(shapes=DEFAULT_SHAPES, dtype=torch.bfloat16, b_layouts=("k", "n"), config=None, log=print):
    from .. import gemm
    from ..configs.heuristics_sm90 import gemm_config
    from ..jit import build

    dt = "bf16" if dtype == torch.bfloat16 else "fp16"
    if config is None:
        build([gemm_config(dt, bm, M, N, K) for (M, N, K) in shapes for bm in b_layouts])
    rows = []
    for (M, N, K) in shapes:
        for b_major in b_layouts:
            a = torch.randn(M, K, device="cuda", dtype=dtype)
            if b_major == "k":
                b = torch.randn(N, K, device="cuda", dtype=dtype).t()  # weight-style [N,K]
            else:
                b = torch.randn(K, N, device="cuda", dtype=dtype)
            ours = gemm(a, b, config=config)
            ref = torch.matmul(a, b)
            err = (ours.float() - ref.float()).abs().max().item()
            t_ours = bench_ms(lambda: gemm(a, b, config=config))
            t_cublas = bench_ms(lambda: torch.matmul(a, b))
            flops = 2.0 * M * N * K
            from ..ops.gemm import resolve_config

            row = dict(M=M, N=N, K=K, b_major=b_major, dtype=str(dtype).replace("torch.", ""),
                       config=resolve_config(a, b, config).name,
                       ours_ms=t_ours, cublas_ms=t_cublas,
                       ours_tflops=tflops(flops, t_ours), cublas_tflops=tflops(flops, t_cublas),
                       max_abs_diff_vs_cublas=err)
            row["ratio_vs_cublas"] = row["ours_tflops"] / row["cublas_tflops"]
            rows.append(row)
            log(format_row(row))
    return rows


HEADER = f"{'M':>6} {'N':>6} {'K':>6} {'B':>2} {'ours TF/s':>10} {'cuBLAS TF/s':>11} {'ratio':>6}  config"


def format_row(r) -> str:
    return (f"{r['M']:>6} {r['N']:>6} {r['K']:>6} {r['b_major']:>2} {r['ours_tflops']:>10.1f} "
            f"{r['cublas_tflops']:>11.1f} {r['ratio_vs_cublas']:>6.3f}  {r['config']}")
