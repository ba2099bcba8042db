"""GEMM reference: C = A @ B."""
from __future__ import annotations

import torch


def gemm(a: torch.Tensor, b: torch.Tensor, upcast: bool = True) -> torch.Tensor:
    """a [M, K] @ b [K, N]: in float32 (`upcast`) or in the inputs' dtype."""
    return a.float() @ b.float() if upcast else a @ b
