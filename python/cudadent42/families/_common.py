"""Helpers shared by the family modules (not a family: the leading underscore keeps it out of the registry)."""
from __future__ import annotations

import torch

_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


def attention_flops(p) -> float:
    """Forward FLOPs of dense attention: 4*B*H*Sq*Sk*D, half when causal (GUIDE.md section 6)."""
    f = 4.0 * p["batch"] * p["heads"] * p["seqlen"] ** 2 * p["head_dim"]
    return f / 2 if p["mask"] == "causal" else f


def capped_attention_problem(problem, sizes, max_scores: int = 1 << 30):
    """The call's problem with batch x heads capped so batch*heads*seqlen^2 <= max_scores: the fp32
    reference check of a tuning run then stays within ~4 GB (the tuned-table key ignores both)."""
    s = problem["seqlen"]
    bh_max = max(1, max_scores // max(s * s, 1))
    heads = min(sizes["heads"], bh_max)
    batch = max(1, min(sizes["batch"], bh_max // heads))
    return dict(problem, batch=batch, heads=heads)


def dense_attention_inputs(p, device, n_tensors=3):
    """q, k, v (, dout) of shape (batch, seqlen, heads, head_dim) for a sweep of a dense problem."""
    shape = (p["batch"], p["seqlen"], p["heads"], p["head_dim"])
    return [torch.randn(shape, device=device, dtype=torch_dtype(p["dtype"])) for _ in range(n_tensors)]
