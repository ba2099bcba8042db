"""Attention layer for GPT/Llama-style blocks on top of cudadent42's kernels.

`MultiheadAttention`: one fused QKV projection, grouped-query attention
(n_kv_heads), optional rotary position embedding, causal or sliding-window
masking, output projection. The attention itself is `flash_attn_func`
(q/k/v are strided views of the QKV projection: no copy), or PyTorch's SDPA
with `attn_impl="sdpa"` (the comparison baseline, and what runs without a
Hopper GPU).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs.attention import HEAD_DIMS
from .ops import validate as V
from .ops.attention import flash_attn_func


def _positive_finite(who: str, name: str, x) -> None:
    if V.finite_nonneg(who, name, x) == 0:
        raise ValueError(f"{who}: {name} must be > 0, got {x}")


class RotaryEmbedding(nn.Module):
    """Llama-style rotary embedding (rotate-half pairing), cos/sin cached per length."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        who = "RotaryEmbedding"
        V.integer(who, "head_dim", head_dim, lo=2)
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head dim, got {head_dim}")
        _positive_finite(who, "base", base)
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self._cache: tuple | None = None

    def cos_sin(self, seqlen: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        c = self._cache
        if c is None or c[0] < seqlen or c[1].device != device:
            t = torch.arange(seqlen, device=device, dtype=torch.float32)
            freqs = torch.outer(t, self.inv_freq.to(device))
            emb = torch.cat((freqs, freqs), dim=-1)  # (S, D)
            c = self._cache = (seqlen, emb.cos(), emb.sin())
        return c[1][:seqlen], c[2][:seqlen]

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x (B, S, H, D) -> rotated x, computed in float32, returned in x's dtype."""
        s = x.shape[1]
        cos, sin = self.cos_sin(offset + s, x.device)
        cos, sin = cos[offset:, None, :], sin[offset:, None, :]  # (S, 1, D)
        xf = x.float()
        x1, x2 = xf.chunk(2, dim=-1)
        rotated = torch.cat((-x2, x1), dim=-1)
        return (xf * cos + rotated * sin).to(x.dtype)


class MultiheadAttention(nn.Module):
    """Self-attention block: x (B, S, d_model) -> (B, S, d_model).

    n_kv_heads < n_heads gives GQA (n_heads % n_kv_heads == 0; 1 is MQA).
    window_size=(left, right) as flash_attn_func (-1: unbounded).
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, *, causal: bool = True,
                 window_size: tuple[int, int] = (-1, -1), rotary: bool = True, rope_base: float = 10000.0,
                 bias: bool = False, attn_impl: str = "cudadent42", device=None, dtype=None):
        super().__init__()
        who = "MultiheadAttention"
        V.integer(who, "d_model", d_model, lo=1)
        V.integer(who, "n_heads", n_heads, lo=1)
        n_kv_heads = n_heads if n_kv_heads is None else V.integer(who, "n_kv_heads", n_kv_heads, lo=1)
        causal = V.flag(who, "causal", causal)
        window_size = V.window(who, window_size)
        rotary, bias = V.flag(who, "rotary", rotary), V.flag(who, "bias", bias)
        if rotary:
            _positive_finite(who, "rope_base", rope_base)
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of n_heads={n_heads}")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
        self.head_dim = d_model // n_heads
        if attn_impl not in ("cudadent42", "sdpa"):
            raise ValueError(f"attn_impl must be 'cudadent42' or 'sdpa', got {attn_impl!r}")
        if attn_impl == "cudadent42" and self.head_dim not in HEAD_DIMS:
            raise ValueError(f"head dim {self.head_dim} (d_model / n_heads) is not supported by cudadent42 "
                             f"(supported: {HEAD_DIMS})")
        if attn_impl == "sdpa" and tuple(window_size) != (-1, -1):
            raise ValueError("attn_impl='sdpa' supports causal or full attention only (no window_size)")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.causal, self.window_size, self.attn_impl = causal, tuple(window_size), attn_impl
        kw = dict(device=device, dtype=dtype)
        self.qkv = nn.Linear(d_model, (n_heads + 2 * n_kv_heads) * self.head_dim, bias=bias, **kw)
        self.proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias, **kw)
        self.rotary = RotaryEmbedding(self.head_dim, rope_base) if rotary else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, S, _ = x.shape
        qkv = self.qkv(x).view(B, S, self.n_heads + 2 * self.n_kv_heads, self.head_dim)
        q, k, v = qkv.split([self.n_heads, self.n_kv_heads, self.n_kv_heads], dim=2)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        if self.attn_impl == "cudadent42":
            o = flash_attn_func(q, k, v, causal=self.causal, window_size=self.window_size)
        else:
            o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=self.causal, enable_gqa=self.n_kv_heads != self.n_heads)
            o = o.transpose(1, 2)
        return self.proj(o.reshape(B, S, self.n_heads * self.head_dim))
