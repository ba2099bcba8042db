"""Float32 reference of the MoE layer: routing by sorting scores, then a per-expert loop
with boolean masks. It syncs freely; it is for checking, never for the hot path."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def route_reference(logits, top_k, *, score="softmax", renormalize=True, n_group=None, topk_group=None,
                    expert_bias=None):
    """(weights float32 (T, k), ids int64 (T, k)) by the rules of cudadent42.moe_route."""
    scores = logits.float().softmax(-1) if score == "softmax" else logits.float().sigmoid()
    select = scores.detach().clone()
    if expert_bias is not None:
        select += expert_bias.float()
    T, E = logits.shape
    if n_group is not None:
        size = E // n_group
        for t in range(T):
            groups = select[t].view(n_group, size)
            group_score = groups.sort(-1, descending=True).values[:, :min(2, size)].sum(-1)
            kept = group_score.sort(descending=True).indices[:topk_group]
            for g in range(n_group):
                if g not in kept.tolist():
                    select[t, g * size:(g + 1) * size] = float("-inf")
    ids = select.sort(dim=-1, descending=True, stable=True).indices[:, :top_k]
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return weights, ids


def activate_reference(gate_up, activation="swiglu"):
    if activation == "swiglu":
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up
    gate, up = gate_up[..., ::2].clamp(max=7.0), gate_up[..., 1::2].clamp(-7.0, 7.0)
    return (up + 1) * (gate * torch.sigmoid(gate * 1.702))


def experts_reference(x, weights, ids, w_gate_up, w_down, *, activation="swiglu", gate_up_bias=None,
                      down_bias=None, is_transposed=False, dtype=torch.float32):
    """The MoE expert layer token-set by token-set in `dtype` (float32: the reference; the
    inputs' dtype: the low-precision reference of the tolerance rule). Ids >= E are dropped."""
    E = w_gate_up.shape[0]
    xd = x.to(dtype)
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in range(E):
        tok, slot = torch.where(ids == e)
        if tok.numel() == 0:
            continue
        wg = w_gate_up[e].to(dtype)
        wd = w_down[e].to(dtype)
        gate_up = xd[tok] @ (wg if is_transposed else wg.t())
        if gate_up_bias is not None:
            gate_up = gate_up + gate_up_bias[e].to(dtype)
        y = activate_reference(gate_up, activation) @ (wd if is_transposed else wd.t())
        if down_bias is not None:
            y = y + down_bias[e].to(dtype)
        contrib = torch.zeros_like(out)
        contrib = contrib.index_put((tok,), y.float() * weights[tok, slot].float().unsqueeze(-1), accumulate=True)
        out = out + contrib
    return out.to(dtype) if dtype != torch.float32 else out


def moe_reference(x, router_weight, w_gate_up, w_down, top_k, **route_kw):
    """Router (x @ router_weight.T) + route_reference + experts_reference, all float32."""
    logits = x.float() @ router_weight.float().t()
    weights, ids = route_reference(logits, top_k, **route_kw)
    return experts_reference(x, weights, ids, w_gate_up, w_down)


def up_swiglu_reference(x, w_gate_up, gather_idx, offs, *, dtype=torch.float32):
    """The fused up-projection's outputs (h (R, F), pre (R, 2F)) in `dtype`, expert by expert:
    row p of expert e (rows [offs[e-1], offs[e])) is token gather_idx[p] of x (T, H), with
    pre[p] = x[gather_idx[p]] @ w_gate_up[e].T (gate columns [0, F), up [F, 2F)) and
    h[p] = silu(gate) * up. Rows past offs[-1] are zero. R = gather_idx.numel()."""
    E, two_f, _ = w_gate_up.shape
    rows = gather_idx.numel()
    pre = torch.zeros(rows, two_f, dtype=dtype, device=x.device)
    bounds = [0] + [int(v) for v in offs.tolist()]
    idx = gather_idx.long()
    for e in range(E):
        lo, hi = bounds[e], bounds[e + 1]
        if hi > lo:
            pre[lo:hi] = x[idx[lo:hi]].to(dtype) @ w_gate_up[e].to(dtype).t()
    h = activate_reference(pre, "swiglu")
    return h, pre
