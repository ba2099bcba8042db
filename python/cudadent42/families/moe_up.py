"""MoE up-projection family: gather + grouped GEMM + SwiGLU in one kernel (configs/moe_up.py,
csrc/kernels/moe, ops/moe_up.py).

Problem: dtype, tokens T, top_k, hidden H, expert FFN width F and experts E; the kernel
computes T*k rows of (gate | up) = x_rows @ w_gate_up[e].T and h = silu(gate) * up.
"""
from __future__ import annotations

import torch

from ..configs.moe_up import MoeUpConfig
from ..reference.moe import up_swiglu_reference
from ._common import torch_dtype
from .registry import Family, pow2_bucket, register

# Every value the kernel accepts; MoeUpConfig.validate() decides which fit (st5+ exceed smem).
SPACE = dict(stages=(2, 3, 4))


def table_key(p) -> str:
    return (f"moe-up|{p['dtype']}|r{pow2_bucket(p['T'] * p['k'])}|h{pow2_bucket(p['H'])}|f{pow2_bucket(p['F'])}"
            f"|e{pow2_bucket(p['E'])}")


def heuristic(p) -> MoeUpConfig:
    # Four stages: the deepest ring that fits 227 KB with the 256-wide B tile.
    return MoeUpConfig(dtype=p["dtype"], stages=4)


def flops(p) -> float:
    """Gate and up projections of every routed row: 2 * (T*k) * 2F * H."""
    return 2.0 * p["T"] * p["k"] * 2 * p["F"] * p["H"]


def make_case(p, device="cuda") -> dict:
    """Uniform-random routing of T tokens to k distinct experts each, weights ~ N(0, 1/H). The
    routing metadata is built here (families never import the op layer): rows sorted by expert
    (stable), offs the experts' cumulative row ends, inverse the row of each (token, slot)."""
    dt, T, k, H, F, E = torch_dtype(p["dtype"]), p["T"], p["k"], p["H"], p["F"], p["E"]
    x = torch.randn(T, H, device=device, dtype=dt)
    w = (torch.randn(E, 2 * F, H, device=device) / H ** 0.5).to(dt)
    ids = torch.rand(T, E, device=device).argsort(-1)[:, :k].reshape(-1)
    order = torch.argsort(ids, stable=True)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=device))
    offs = torch.bincount(ids, minlength=E).cumsum(0).to(torch.int32)
    gather_idx = (order // k).to(torch.int32)
    return dict(x=x, w_gate_up=w, gather_idx=gather_idx, inverse=inverse, offs=offs, top_k=k)


def reference(case, upcast: bool):
    return up_swiglu_reference(case["x"], case["w_gate_up"], case["gather_idx"], case["offs"],
                               dtype=torch.float32 if upcast else case["x"].dtype)


def default_configs() -> list[MoeUpConfig]:
    return [MoeUpConfig(dtype=d, stages=4) for d in ("bf16", "fp16")]


def tuning_problem(problem, sizes):
    return dict(problem, **sizes)


FAMILY = register(Family(
    name="moe-up", config_class=MoeUpConfig,
    problem_fields=("dtype", "T", "k", "H", "F", "E"),
    fixed_fields=("dtype",), size_fields=(),
    problem_defaults=dict(dtype="bf16", T=32768, k=8, H=4096, F=1024, E=128),
    table_key=table_key, heuristic=heuristic, space=SPACE, flops=flops, make_case=make_case, reference=reference,
    runner="cudadent42.ops.moe_up:tuning_run",
    kernel_regex="moe_up_swiglu_kernel",  # cd42::moe::moe_up_swiglu_kernel<T> (csrc/kernels/moe)
    default_configs=default_configs, tuning_problem=tuning_problem,
))
