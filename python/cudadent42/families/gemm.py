"""GEMM family: C[M,N] = A[M,K] @ B[K,N] (configs/gemm.py, csrc/kernels/gemm, ops/gemm.py)."""
from __future__ import annotations

import torch

from ..configs.gemm import GemmConfig
from ..configs.heuristics_sm90 import gemm_config
from ..reference import gemm as gemm_reference
from ._common import torch_dtype
from .registry import Family, pow2_bucket, register

# Every value the kernel accepts; GemmConfig.validate() decides which combinations fit.
SPACE = dict(wg_m=(64, 128), tile_n=(64, 128, 192, 256), stages=(2, 3, 4, 5, 6, 8), group_m=(1, 4, 8, 16))


def table_key(p) -> str:
    return f"gemm|{p['dtype']}|b{p['b_major']}|m{pow2_bucket(p['M'])}|n{pow2_bucket(p['N'])}|k{pow2_bucket(p['K'])}"


def heuristic(p) -> GemmConfig:
    return gemm_config(p["dtype"], p["b_major"], p["M"], p["N"], p["K"])


def flops(p) -> float:
    return 2.0 * p["M"] * p["N"] * p["K"]


def make_case(p, device="cuda") -> dict:
    """a [M, K] row-major, b [K, N] with the problem's major (K-major: the transpose of a row-major [N, K]), out."""
    dt = torch_dtype(p["dtype"])
    a = torch.randn(p["M"], p["K"], device=device, dtype=dt)
    b = (torch.randn(p["N"], p["K"], device=device, dtype=dt).t() if p["b_major"] == "k"
         else torch.randn(p["K"], p["N"], device=device, dtype=dt))
    return dict(a=a, b=b, out=torch.empty(p["M"], p["N"], device=device, dtype=dt))


def reference(case, upcast: bool):
    return gemm_reference(case["a"], case["b"], upcast)


def default_configs() -> list[GemmConfig]:
    """The two tiles the heuristic picks, for each dtype and B layout."""
    return [GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=tile_n, stages=stages)
            for dtype in ("bf16", "fp16") for b_major in ("k", "n") for tile_n, stages in ((256, 4), (128, 6))]


def tuning_problem(problem, sizes):
    return dict(problem, **sizes)


FAMILY = register(Family(
    name="gemm", config_class=GemmConfig,
    problem_fields=("dtype", "b_major", "M", "N", "K"), fixed_fields=("dtype", "b_major"), size_fields=(),
    problem_defaults=dict(dtype="bf16", b_major="k", M=8192, N=8192, K=8192),
    table_key=table_key, heuristic=heuristic, space=SPACE, flops=flops, make_case=make_case, reference=reference,
    runner="cudadent42.ops.gemm:tuning_run",
    kernel_regex="gemm_kernel",  # cd42::gemm::gemm_kernel<T, Scheduler> (csrc/kernels/gemm/gemm_launch.hpp)
    default_configs=default_configs, tuning_problem=tuning_problem,
))
