"""Plain PyTorch attention used as the reference (fp32) and as the
low-precision baseline of the tolerance rule."""
import math

import torch


def scores(q, k, scale=None, softcap=0.0):
    """Scaled (and softcapped) scores (B, H, Sq, Sk) in fp32; GQA expands k over the query-head group."""
    D, H, Hk = q.shape[-1], q.shape[2], k.shape[2]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k.repeat_interleave(H // Hk, dim=2)).float()
    s = s * (scale if scale is not None else 1.0 / math.sqrt(D))
    return softcap * torch.tanh(s / softcap) if softcap > 0 else s


def visible(sq, sk, causal, window, device):
    """(Sq, Sk) bool: which keys each query row sees, masks bottom-right aligned (FlashAttention)."""
    left, right = window
    if causal:
        right = 0
    r = torch.arange(sq, device=device)[:, None]
    c = torch.arange(sk, device=device)[None, :]
    off = sk - sq
    keep = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if right >= 0:
        keep &= c <= r + off + right
    if left >= 0:
        keep &= c >= r + off - left
    return keep


def attention_ref(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None, upcast=True):
    """q (B, Sq, H, D), k/v (B, Sk, Hkv, D). Returns out (B, Sq, H, D) and LSE (B, H, Sq).

    Masks are bottom-right aligned (FlashAttention). Rows
    with no visible key give out 0 and LSE +inf.
    """
    dtype = q.dtype
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    H, Hk = q.shape[2], k.shape[2]
    v = v.repeat_interleave(H // Hk, dim=2)
    s = scores(q, k, scale, softcap)
    keep = visible(q.shape[1], k.shape[1], causal, window, q.device)
    s = s.masked_fill(~keep, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    if not upcast:
        p = p.to(dtype)
    out = torch.einsum("bhqk,bkhd->bqhd", p, v)
    empty = ~keep.any(dim=-1)
    lse = torch.where(empty[None, None], torch.full_like(lse, float("inf")), lse)
    return out.to(dtype) if not upcast else out, lse
