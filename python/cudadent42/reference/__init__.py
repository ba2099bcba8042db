"""Plain PyTorch references: the same math as the kernels, in float32 on
upcast inputs (`upcast=True`) or in the inputs' low precision
(`upcast=False`: the baseline of the tolerance rule). Pure torch, so they run
on CPU too. Tests, sweeps and the autotuner all check against these, with the
one rule in tolerance.py (GUIDE.md section 5)."""
from .attention import (
    attention,
    attention_grads,
    attention_varlen,
    attention_varlen_grads,
    scores,
    visible,
)
from .gemm import gemm
from .grouped_gemm import grouped_mm_reference
from .moe import experts_reference, moe_reference, route_reference, up_swiglu_reference
from .tolerance import assert_close_to_ref, max_abs_err, within_tolerance

__all__ = ["attention", "attention_grads", "attention_varlen", "attention_varlen_grads", "scores", "visible",
           "gemm", "grouped_mm_reference", "experts_reference", "moe_reference", "route_reference",
           "up_swiglu_reference",
           "assert_close_to_ref", "max_abs_err", "within_tolerance"]
