"""torch.library custom ops (namespace `cudadent42::`) over the JIT kernels."""
from . import attention_bwd  # noqa: F401 - registers the forward op's autograd (the backward)
from .attention import flash_attn_func, flash_attn_varlen_func, scaled_dot_product_attention
from .gemm import gemm

__all__ = ["gemm", "flash_attn_func", "flash_attn_varlen_func", "scaled_dot_product_attention"]
