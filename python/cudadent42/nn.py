"""`cudadent42.nn`: modules built on cudadent42's kernels (see layers.py)."""
from .layers import MultiheadAttention, RotaryEmbedding

__all__ = ["MultiheadAttention", "RotaryEmbedding"]
