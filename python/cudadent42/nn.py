"""`cudadent42.nn`: modules built on cudadent42's kernels (see layers.py, nn_moe.py)."""
from .layers import MultiheadAttention, RotaryEmbedding
from .nn_moe import MoE

__all__ = ["MultiheadAttention", "RotaryEmbedding", "MoE"]
