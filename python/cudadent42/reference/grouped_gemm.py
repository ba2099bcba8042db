"""Float32 reference of the grouped GEMM (torch._grouped_mm's four forms): a
plain per-group loop, used by tests, sweeps and the tuner alike. It reads the
offsets on the host, so it is for checking, never for the hot path."""
from __future__ import annotations

import torch


def grouped_mm_reference(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor | None = None,
                         dtype: torch.dtype = torch.float32, fill: float = float("nan")) -> torch.Tensor:
    """The grouped product computed group by group in `dtype` (float32: the
    reference; the inputs' own dtype: the low-precision reference of the
    tolerance rule). Rows/columns past offs[-1] hold `fill`."""
    a32, b32 = a.to(dtype), b.to(dtype)
    if a.dim() == 3 and b.dim() == 3:
        return torch.bmm(a32, b32)
    ends = offs.tolist()
    starts = [0] + ends[:-1]
    if a.dim() == 2 and b.dim() == 3:
        out = torch.full((a.shape[0], b.shape[-1]), fill, dtype=dtype, device=a.device)
        for g, (s, e) in enumerate(zip(starts, ends)):
            out[s:e] = a32[s:e] @ b32[g]
    elif a.dim() == 3 and b.dim() == 2:
        out = torch.full((a.shape[1], b.shape[-1]), fill, dtype=dtype, device=a.device)
        for g, (s, e) in enumerate(zip(starts, ends)):
            out[:, s:e] = a32[g] @ b32[:, s:e]
    else:
        out = torch.empty((len(ends), a.shape[0], b.shape[-1]), dtype=dtype, device=a.device)
        for g, (s, e) in enumerate(zip(starts, ends)):
            out[g] = a32[:, s:e] @ b32[s:e]
    return out


def group_sizes(total: int, groups: int, kind: str, generator: torch.Generator | None = None) -> list[int]:
    """Group sizes summing to `total`: "balanced" (equal up to one), "skewed"
    (Zipf-like with about 5% empty groups), "one" (every row in one group)."""
    if groups == 1 or kind == "one":
        sizes = [0] * groups
        sizes[groups // 2] = total
        return sizes
    if kind == "balanced":
        base, extra = divmod(total, groups)
        return [base + (1 if g < extra else 0) for g in range(groups)]
    ranks = torch.randperm(groups, generator=generator).tolist()
    weights = [1.0 / (r + 1) ** 1.2 for r in ranks]
    empty = max(1, groups // 20)
    for g in torch.randperm(groups, generator=generator)[:empty].tolist():
        weights[g] = 0.0
    scale = total / sum(weights)
    sizes = [int(w * scale) for w in weights]
    heaviest = max(range(groups), key=lambda g: weights[g])
    sizes[heaviest] += total - sum(sizes)
    return sizes


def offsets(sizes: list[int], device) -> torch.Tensor:
    """int32 cumulative ends, as torch._grouped_mm takes them."""
    return torch.tensor(sizes, dtype=torch.int64).cumsum(0).to(torch.int32).to(device)
