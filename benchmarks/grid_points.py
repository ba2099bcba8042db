"""Shared by the A/B and diagnostic scripts in benchmarks/: a point
"D:S:causal[:extra...]" of the standard grid (B*S = 16384 tokens,
H*D = 2048, bf16), its inputs, and the forward output / LSE a backward
timing needs (from SDPA's flash kernel: no forward build per tree, and the
backward's timing does not depend on their values)."""
from __future__ import annotations

import torch

_TRUE = ("1", "causal", "yes", "true")


def parse_point(point: str):
    """"128:4096:1:extra" -> (128, 4096, True, ["extra"])."""
    d, s, causal, *extra = point.split(":")
    return int(d), int(s), causal in _TRUE, extra


def grid_inputs(d: int, s: int, seed: int = 0):
    """(b, h, q, k, v): q/k/v (b, s, h, d) bf16 on the GPU, b = 16384 / s, h = 2048 / d."""
    b, h = max(1, 16384 // s), 2048 // d
    torch.manual_seed(seed)
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    return b, h, q, k, v


def sdpa_out_lse(q, k, v, causal: bool):
    """out (b, s, h, d) and LSE (b, h, s) of SDPA's flash forward."""
    o4, lse = torch.ops.aten._scaled_dot_product_flash_attention(
        *(x.transpose(1, 2) for x in (q, k, v)), 0.0, causal)[:2]
    return o4.transpose(1, 2), lse
