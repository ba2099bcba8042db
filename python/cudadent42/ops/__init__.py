"""torch.library custom ops (namespace `cudadent42::`) over the JIT kernels."""
from .gemm import gemm

__all__ = ["gemm"]
