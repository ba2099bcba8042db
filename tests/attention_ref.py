"""Plain PyTorch attention used as the reference (fp32) and as the
low-precision baseline of the tolerance rule."""
import math

import torch


def attention_ref(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None, upcast=True):
    """q (B, Sq, H, D), k/v (B, Sk, Hkv, D). Returns out (B, Sq, H, D) and LSE (B, H, Sq).

    Masks are bottom-right aligned (FlashAttention). Rows
    with no visible key give out 0 and LSE +inf.
    """
    dtype = q.dtype
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    B, Sq, H, D = q.shape
    Sk, Hk = k.shape[1], k.shape[2]
    scale = scale if scale is not None else 1.0 / math.sqrt(D)
    k = k.repeat_interleave(H // Hk, dim=2)
    v = v.repeat_interleave(H // Hk, dim=2)
    s = torch.einsum("bqhd,bkhd->bhqk", q, k).float() * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    left, right = window
    if causal:
        right = 0
    r = torch.arange(Sq, device=q.device)[:, None]
    c = torch.arange(Sk, device=q.device)[None, :]
    off = Sk - Sq
    keep = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device)
    if right >= 0:
        keep &= c <= r + off + right
    if left >= 0:
        keep &= c >= r + off - left
    s = s.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    if not upcast:
        p = p.to(dtype)
    out = torch.einsum("bhqk,bkhd->bqhd", p, v)
    empty = ~keep.any(dim=-1)
    lse = torch.where(empty[None, None], torch.full_like(lse, float("inf")), lse)
    return out.to(dtype) if not upcast else out, lse
