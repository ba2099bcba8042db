"""Grouped GEMM family: torch._grouped_mm's four forms (configs/grouped_gemm.py,
csrc/kernels/grouped_gemm, ops/grouped_gemm.py).

Problem: the form (`mode`: which dimension the offsets cut), both operands'
majors, and the kernel's view sizes M x N (output) by K (reduction) over G
groups; M, N or K is the ragged total in the "m", "n" or "k" form.
"""
from __future__ import annotations

import torch

from ..configs.grouped_gemm import GroupedGemmConfig
from ..configs.heuristics_sm90 import grouped_gemm_config
from ..reference.grouped_gemm import group_sizes, grouped_mm_reference, offsets
from ._common import torch_dtype
from .registry import Family, pow2_bucket, register

# Every value the kernel accepts; GroupedGemmConfig.validate() decides which combinations fit.
SPACE = dict(wg_m=(64, 128), tile_n=(64, 128, 192, 256), stages=(2, 3, 4, 5, 6, 8))


def table_key(p) -> str:
    return (f"grouped-gemm|{p['dtype']}|rag{p['mode']}|a{p['a_major']}|b{p['b_major']}|m{pow2_bucket(p['M'])}"
            f"|n{pow2_bucket(p['N'])}|k{pow2_bucket(p['K'])}|g{pow2_bucket(p['G'])}")


def heuristic(p) -> GroupedGemmConfig:
    return grouped_gemm_config(p["dtype"], p["mode"], p["a_major"], p["b_major"], p["N"])


def flops(p) -> float:
    """Of the whole grouped product: every group's rows (or columns, or reduction) sum to the ragged total."""
    batch = p["G"] if p["mode"] == "none" else 1
    return 2.0 * batch * p["M"] * p["N"] * p["K"]


def _matrix(rows, cols, row_major, dt, device, batch=None):
    """A (batch,) rows x cols matrix, row-major or the transpose view of a row-major cols x rows one."""
    lead = () if batch is None else (batch,)
    if row_major:
        return torch.randn(*lead, rows, cols, device=device, dtype=dt)
    return torch.randn(*lead, cols, rows, device=device, dtype=dt).transpose(-2, -1)


def make_case(p, device="cuda") -> dict:
    """Operands of the form with balanced groups covering the whole ragged extent."""
    dt, G, M, N, K, mode = torch_dtype(p["dtype"]), p["G"], p["M"], p["N"], p["K"], p["mode"]
    a_row, b_row = p["a_major"] == "k", p["b_major"] == "n"  # (fixed fields of a valid config)
    ragged = {"m": M, "n": N, "k": K}.get(mode)
    offs = None if ragged is None else offsets(group_sizes(ragged, G, "balanced"), device)
    a = _matrix(M, K, a_row, dt, device, batch=G if mode in ("n", "none") else None)
    b = _matrix(K, N, b_row, dt, device, batch=G if mode in ("m", "none") else None)
    return dict(a=a, b=b, offs=offs)


def reference(case, upcast: bool):
    return grouped_mm_reference(case["a"], case["b"], case["offs"],
                                dtype=torch.float32 if upcast else case["a"].dtype)


def _layout_ok(mode, a_major, b_major) -> bool:
    """The ragged dimension is never an operand's contiguous one (the op re-lays such operands out)."""
    return not ((mode, a_major) in (("m", "m"), ("k", "k")) or (mode, b_major) in (("n", "n"), ("k", "k")))


def default_configs() -> list[GroupedGemmConfig]:
    """The heuristic's two tiles for every form, dtype and operand layout the kernel takes."""
    return [grouped_gemm_config(dtype, mode, a_major, b_major, N)
            for dtype in ("bf16", "fp16") for mode in ("m", "n", "k", "none")
            for a_major in ("k", "m") for b_major in ("k", "n") for N in (128, 256)
            if _layout_ok(mode, a_major, b_major)]


def tuning_problem(problem, sizes):
    return dict(problem, **sizes)


FAMILY = register(Family(
    name="grouped-gemm", config_class=GroupedGemmConfig,
    problem_fields=("dtype", "mode", "a_major", "b_major", "M", "N", "K", "G"),
    fixed_fields=("dtype", "mode", "a_major", "b_major"), size_fields=(),
    problem_defaults=dict(dtype="bf16", mode="m", a_major="k", b_major="k", M=32768, N=4096, K=2048, G=64),
    table_key=table_key, heuristic=heuristic, space=SPACE, flops=flops, make_case=make_case, reference=reference,
    runner="cudadent42.ops.grouped_gemm:tuning_run",
    kernel_regex="grouped_gemm_kernel",  # cd42::ggemm::grouped_gemm_kernel<T> (csrc/kernels/grouped_gemm)
    default_configs=default_configs, tuning_problem=tuning_problem,
))
