"""Attention reference (forward with LSE, gradients), FlashAttention semantics.

Layouts as the ops: q (B, Sq, H, D), k/v (B, Sk, Hkv, D); varlen packs
(total, H, D) with int32 cu_seqlens. GQA: each group of H / Hkv query heads
reads one K/V head. Masks are bottom-right aligned (query row r sees key c
when r + Sk - Sq - left <= c <= r + Sk - Sq + right; causal is right = 0), so
they stay right for Sq != Sk. Rows that see no key give out 0, LSE +inf and
no gradient.
"""
from __future__ import annotations

import math

import torch

# A masked score. Not -inf: a row with no visible key must keep a finite
# softmax for autograd; its probabilities are zeroed by the mask afterwards.
# exp(-1e30 - max) is exactly 0 in float32, so visible rows match -inf masking bit for bit.
_MASKED = -1e30


def scores(q, k, scale=None, softcap=0.0):
    """Scaled (and softcapped) scores (B, H, Sq, Sk) in fp32; GQA expands k over the query-head group.
    The product runs in the inputs' dtype (the low-precision baseline rounds here)."""
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


def _is_masked(causal, window) -> bool:
    return bool(causal) or window[0] >= 0 or window[1] >= 0


def attention(q, k, v, causal=False, window=(-1, -1), softcap=0.0, scale=None, upcast=True, return_lse=False):
    """Out (B, Sq, H, D), and with `return_lse` the float32 LSE (B, H, Sq) of the scaled scores.

    `upcast`: float32 math on float32 copies (the reference; out is float32).
    Otherwise the low-precision baseline: products in the inputs' dtype, the
    softmax in float32, its probabilities rounded to the dtype (out in the dtype).
    Differentiable: autograd through it gives the reference gradients.
    """
    dtype = q.dtype
    if upcast:
        q, k, v = q.float(), k.float(), v.float()
    H, Hk = q.shape[2], k.shape[2]
    v = v.repeat_interleave(H // Hk, dim=2)
    s = scores(q, k, scale, softcap)
    keep = visible(q.shape[1], k.shape[1], causal, window, q.device) if _is_masked(causal, tuple(window)) else None
    if keep is not None:
        s = s.masked_fill(~keep, _MASKED)
    p = torch.softmax(s, dim=-1)
    if keep is not None:
        p = p * keep
    if not upcast:
        p = p.to(dtype)
    out = torch.einsum("bhqk,bkhd->bqhd", p, v)
    if not return_lse:
        return out
    lse = torch.logsumexp(s, dim=-1)
    if keep is not None:
        lse = lse.masked_fill(~keep.any(dim=-1), float("inf"))
    return out, lse


def attention_grads(q, k, v, dout, causal=False, window=(-1, -1), softcap=0.0, scale=None, upcast=True):
    """(dq, dk, dv) of attention(q, k, v, ...) for the output gradient `dout` (float32 when `upcast`)."""
    x = [t.detach().float() if upcast else t.detach() for t in (q, k, v)]
    for t in x:
        t.requires_grad_()
    with torch.enable_grad():
        out = attention(*x, causal=causal, window=window, softcap=softcap, scale=scale, upcast=upcast)
        return torch.autograd.grad(out, x, dout.detach().to(out.dtype))


def _spans(cu_q, cu_k):
    q, k = cu_q.tolist(), cu_k.tolist()
    if len(q) != len(k):
        raise ValueError(f"cu_seqlens_q and cu_seqlens_k differ in length: {len(q)} vs {len(k)}")
    return [(q[b], q[b + 1], k[b], k[b + 1]) for b in range(len(q) - 1)]


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, causal=False, window=(-1, -1), softcap=0.0, scale=None,
                     upcast=True, return_lse=False):
    """Packed sequences: q (total_q, H, D), k/v (total_k, Hkv, D) -> out (total_q, H, D) [, LSE (H, total_q)],
    each sequence attending to its own keys (one `attention` call per sequence)."""
    out_dtype = torch.float32 if upcast else q.dtype
    out = torch.zeros(q.shape, dtype=out_dtype, device=q.device)
    lse = torch.full((q.shape[1], q.shape[0]), float("inf"), dtype=torch.float32, device=q.device)
    for qs, qe, ks, ke in _spans(cu_seqlens_q, cu_seqlens_k):
        if qe == qs or ke == ks:  # no query or no key: out 0, LSE +inf
            continue
        o, l = attention(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], causal, window, softcap, scale, upcast,
                         return_lse=True)
        out[qs:qe] = o[0]
        lse[:, qs:qe] = l[0]
    return (out, lse) if return_lse else out


def attention_varlen_grads(q, k, v, dout, cu_seqlens_q, cu_seqlens_k, causal=False, window=(-1, -1), softcap=0.0,
                           scale=None, upcast=True):
    """(dq, dk, dv) of attention_varlen, shaped like q, k, v (zero where a sequence has no scores)."""
    dtype = torch.float32 if upcast else q.dtype
    grads = [torch.zeros(t.shape, dtype=dtype, device=t.device) for t in (q, k, v)]
    for qs, qe, ks, ke in _spans(cu_seqlens_q, cu_seqlens_k):
        if qe == qs or ke == ks:
            continue
        dq, dk, dv = attention_grads(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], dout[None, qs:qe], causal,
                                     window, softcap, scale, upcast)
        grads[0][qs:qe], grads[1][ks:ke], grads[2][ks:ke] = dq[0], dk[0], dv[0]
    return tuple(grads)
