"""The one tolerance rule (GUIDE.md section 5, the FlashAttention test convention):

    max|out - ref| <= 2 * max|out_lowp_ref - ref| + 1e-5

`ref` is the float32 reference, `lowp` the same PyTorch math run in the low
precision: the kernel may be at most twice as far from the fp32 truth as
PyTorch itself is. Tuples (the backward's dq, dk, dv) pass element by element.
"""
from __future__ import annotations

import math

import torch

ABS_SLACK = 1e-5
LOWP_FACTOR = 2.0


def max_abs_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """max|out - ref| in float32 (NaN if out holds a NaN); 0 for empty tensors."""
    if out.numel() == 0:
        return 0.0
    diff = (out.float() - ref.float()).abs()
    if torch.isnan(diff).any():
        return float("nan")
    return diff.max().item()


def _bound(ref: torch.Tensor, lowp: torch.Tensor) -> float:
    return LOWP_FACTOR * max_abs_err(lowp, ref) + ABS_SLACK


def within_tolerance(out, ref, lowp) -> tuple[bool, float]:
    """(passes, max abs error); for tuples, all must pass and the error is the largest."""
    if isinstance(out, (tuple, list)):
        checks = [within_tolerance(o, r, lp) for o, r, lp in zip(out, ref, lowp, strict=True)]
        return all(ok for ok, _ in checks), max((err for _, err in checks), default=0.0)
    err = max_abs_err(out, ref)
    return (not math.isnan(err)) and err <= _bound(ref, lowp), err


def assert_close_to_ref(out: torch.Tensor, ref: torch.Tensor, lowp_ref: torch.Tensor, what: str = "output") -> None:
    """AssertionError naming `what` unless `out` holds no NaN and passes the rule."""
    assert not torch.isnan(out).any(), f"{what}: NaN in output (unwritten or invalid elements)"
    err = max_abs_err(out, ref)
    base = max_abs_err(lowp_ref, ref)
    assert err <= LOWP_FACTOR * base + ABS_SLACK, f"{what}: max abs error {err:.3e} > 2 * {base:.3e} + 1e-5"
