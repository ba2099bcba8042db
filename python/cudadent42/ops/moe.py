"""`cudadent42.moe_route` and `cudadent42.moe_experts`: a sync-free, deterministic MoE layer.

Expert weights use transformers 5.x's fused 3-D layout (is_transposed=False, the default there):
  w_gate_up (E, 2F, H): rows [0, F) are the gate projection, rows [F, 2F) the up projection
                        (activation "swiglu"); "gpt_oss" interleaves them (gate = even rows, up = odd)
  w_down    (E, H, F)
With is_transposed=True (gpt-oss) they are (E, H, 2F) and (E, F, H). From per-expert nn.Linear's:
  w_gate_up = torch.stack([torch.cat([gate[e].weight, up[e].weight]) for e in range(E)])
  w_down    = torch.stack([down[e].weight for e in range(E)])

Every stage is one function a fused kernel can replace without an API change: moe_route,
gather_tokens, up_act, down, combine; gather_up_act runs the first two as one kernel on Hopper
(ops/moe_up.py). None reads a device value on the host: counts come
from a searchsorted over the sorted expert ids, the combine is a gather plus a sum over
the k slots in fixed order (no atomics), so forward and backward are bitwise reproducible.
Expert ids >= num_experts (left by expert parallelism) are dropped: they sort after every
real expert, past offs[-1], which no grouped GEMM reads, and the combine masks them to 0.
"""
from __future__ import annotations

import contextlib
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from ..runtime import hopper_available
from .grouped_gemm import grouped_gemm
from .moe_up import moe_up_swiglu, weights_packed

_grouped_mm: Callable | None = None  # None: cudadent42.grouped_gemm; tests inject the float32 reference


@contextlib.contextmanager
def use_grouped_mm(fn: Callable):
    """Run the MoE stages with `fn(a, b, offs) -> a.dtype tensor` as the grouped GEMM (torch._grouped_mm semantics)."""
    global _grouped_mm
    saved, _grouped_mm = _grouped_mm, fn
    try:
        yield
    finally:
        _grouped_mm = saved


def _gmm(a, b, offs):
    return grouped_gemm(a, b, offs) if _grouped_mm is None else _grouped_mm(a, b, offs)


class MoERouting(NamedTuple):
    """Routing of T tokens to k experts each. `order` lists the T*k (token, slot) pairs (flat index
    t*k + j) sorted by expert, then token, then slot; `inverse[t*k + j]` is that pair's position in
    `order`. `counts`/`offs` (int32, E) are per-expert sizes and cumulative ends; pairs with a
    sentinel id (>= E) sit at positions >= offs[-1]."""
    weights: torch.Tensor  # (T, k) float32
    ids: torch.Tensor      # (T, k) int32
    counts: torch.Tensor   # (E,) int32
    offs: torch.Tensor     # (E,) int32
    order: torch.Tensor    # (T*k,) int64
    inverse: torch.Tensor  # (T*k,) int64


def routing_metadata(ids: torch.Tensor, num_experts: int, weights: torch.Tensor | None = None) -> MoERouting:
    """Counts, offsets, sorted order and its inverse for expert ids (T, k); sync-free."""
    if ids.dim() != 2:
        raise ValueError(f"moe: ids must be (tokens, top_k), got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point:
        raise TypeError(f"moe: ids must be an integer tensor, got {ids.dtype}")
    key = ids.reshape(-1).long().clamp(0, num_experts)  # sentinels (>= E, or < 0) -> bucket E
    negative = ids.reshape(-1) < 0
    key = torch.where(negative, torch.full_like(key, num_experts), key)
    order = torch.argsort(key, stable=True)
    inverse = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=ids.device))
    sorted_key = key[order]
    bounds = torch.arange(num_experts, device=ids.device, dtype=sorted_key.dtype)
    offs = torch.searchsorted(sorted_key, bounds, right=True).to(torch.int32)
    counts = torch.diff(offs, prepend=offs.new_zeros(1))
    w = weights if weights is not None else torch.ones(ids.shape, device=ids.device)
    return MoERouting(w, ids.to(torch.int32), counts, offs, order, inverse)


def moe_route(logits: torch.Tensor, top_k: int, *, score: str = "softmax", renormalize: bool = True,
              n_group: int | None = None, topk_group: int | None = None,
              expert_bias: torch.Tensor | None = None) -> MoERouting:
    """Top-k routing of router logits (T, E). "softmax": softmax then top-k (Mixtral, Qwen3).
    "sigmoid": DeepSeek-V3 scores, optionally group-limited (keep the `topk_group` of `n_group`
    expert groups with the largest sum of their top-2 scores) and with `expert_bias` added for
    selection only. Weights come from the unbiased scores (renormalised to sum 1 if asked) and
    are differentiable w.r.t. logits."""
    if logits.dim() != 2:
        raise ValueError(f"moe_route: logits must be (tokens, experts), got shape {tuple(logits.shape)}")
    T, E = logits.shape
    if not 1 <= top_k <= E:
        raise ValueError(f"moe_route: top_k={top_k} must be in [1, {E}]")
    if score == "softmax":
        scores = logits.float().softmax(-1)
    elif score == "sigmoid":
        scores = logits.float().sigmoid()
    else:
        raise ValueError(f"moe_route: score must be 'softmax' or 'sigmoid', got {score!r}")
    select = scores.detach()
    if expert_bias is not None:
        if expert_bias.shape != (E,):
            raise ValueError(f"moe_route: expert_bias must be ({E},), got {tuple(expert_bias.shape)}")
        select = select + expert_bias.float()
    if n_group is not None:
        if E % n_group or topk_group is None or not 1 <= topk_group <= n_group:
            raise ValueError(f"moe_route: n_group={n_group} must divide E={E} and topk_group={topk_group} "
                             f"be in [1, n_group]")
        if top_k > topk_group * (E // n_group):
            raise ValueError(f"moe_route: top_k={top_k} exceeds the {topk_group} kept groups' experts")
        grouped = select.view(T, n_group, E // n_group)
        group_score = grouped.topk(min(2, E // n_group), dim=-1).values.sum(-1)
        keep = group_score.topk(topk_group, dim=-1).indices
        group_mask = torch.zeros_like(group_score, dtype=torch.bool).scatter_(1, keep, True)
        select = grouped.masked_fill(~group_mask.unsqueeze(-1), float("-inf")).view(T, E)
    ids = select.topk(top_k, dim=-1).indices
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / weights.sum(-1, keepdim=True)
    return routing_metadata(ids, E, weights)


# --- the expert stages --------------------------------------------------------------------------

class _GatherRows(torch.autograd.Function):
    """out = src[order // k]; the gradient is a gather by `inverse` and a sum over the k slots in
    order, never index_put/scatter accumulation (atomics on CUDA)."""

    @staticmethod
    def forward(ctx, src, order, inverse, k):
        ctx.save_for_backward(inverse)
        ctx.k = k
        return src[order // k]

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        g = grad[inverse]
        return g.view(-1, ctx.k, g.shape[-1]).sum(1) if ctx.k > 1 else g, None, None, None


def gather_tokens(x: torch.Tensor, routing: MoERouting) -> torch.Tensor:
    """x rows in routing order: (T*k, H), row p is token order[p] // k."""
    return _GatherRows.apply(x, routing.order, routing.inverse, routing.ids.shape[1])


def _row_expert(routing: MoERouting, num_experts: int) -> torch.Tensor:
    """Expert of each row in routing order, sentinels clamped to a valid index (their rows are masked)."""
    return routing.ids.reshape(-1)[routing.order].long().clamp(0, num_experts - 1)


def _valid_rows(routing: MoERouting) -> torch.Tensor:
    n = routing.order.numel()
    return (torch.arange(n, device=routing.order.device) < routing.offs[-1]).unsqueeze(-1)


def _activate(gate_up: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "swiglu":
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up
    # gpt-oss: interleaved columns, gate clamped above, up clamped both sides, alpha 1.702, limit 7
    gate, up = gate_up[..., ::2].clamp(max=7.0), gate_up[..., 1::2].clamp(-7.0, 7.0)
    return (up + 1) * (gate * torch.sigmoid(gate * 1.702))


def up_act(xs: torch.Tensor, w_gate_up: torch.Tensor, routing: MoERouting, activation: str = "swiglu",
           bias: torch.Tensor | None = None, is_transposed: bool = False) -> torch.Tensor:
    """Grouped up projection of the gathered rows (T*k, H) and the activation -> (T*k, F)."""
    w = w_gate_up if is_transposed else w_gate_up.transpose(-2, -1)  # (E, H, 2F)
    gate_up = _gmm(xs, w, routing.offs)
    if bias is not None:
        gate_up = gate_up + bias[_row_expert(routing, w.shape[0])]
    # Rows past offs[-1] (sentinel ids) are never written by the grouped GEMM; zero them so the
    # activation sees no garbage (an inf there would turn the zero gradient into NaN).
    return _activate(torch.where(_valid_rows(routing), gate_up, 0), activation)


_fused_up = False  # off until GPU-verified; use_fused_up(True) runs the fused gather + up-projection + SwiGLU kernel


@contextlib.contextmanager
def use_fused_up(enabled: bool):
    """Enable or disable the fused gather + up-projection + SwiGLU kernel (ops/moe_up.py) in moe_experts."""
    global _fused_up
    saved, _fused_up = _fused_up, bool(enabled)
    try:
        yield
    finally:
        _fused_up = saved


def _fused_up_applies(x, w_gate_up, activation, bias, is_transposed) -> bool:
    """The fused kernel's domain: SwiGLU without bias, (E, 2F, H) packed bf16/fp16 weights, 16-byte
    rows, on an sm_90 GPU, and no test-injected grouped GEMM (which the fused path would bypass)."""
    E, two_f, H = w_gate_up.shape
    return (_fused_up and _grouped_mm is None and activation == "swiglu" and bias is None and not is_transposed
            and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16) and w_gate_up.dtype == x.dtype
            and H % 8 == 0 and (two_f // 2) % 8 == 0 and x.stride(-1) == 1 and x.stride(0) % 8 == 0
            and x.data_ptr() % 16 == 0 and w_gate_up.data_ptr() % 16 == 0 and weights_packed(w_gate_up)
            and hopper_available())


def gather_up_act(x: torch.Tensor, w_gate_up: torch.Tensor, routing: MoERouting, activation: str = "swiglu",
                  bias: torch.Tensor | None = None, is_transposed: bool = False) -> torch.Tensor:
    """up_act(gather_tokens(x)): on Hopper, for SwiGLU without bias, one fused kernel that reads x
    rows in place (no permuted copy) and applies SwiGLU in its epilogue (ops/moe_up.py); it also
    keeps the pre-activation for the backward. Otherwise the two stages."""
    if _fused_up_applies(x, w_gate_up, activation, bias, is_transposed):
        k = routing.ids.shape[1]
        gather_idx = (routing.order // k).to(torch.int32)
        h, _pre = moe_up_swiglu(x, w_gate_up, gather_idx, routing.inverse, routing.offs, k)
        return h
    return up_act(gather_tokens(x, routing), w_gate_up, routing, activation, bias, is_transposed)


def down(h: torch.Tensor, w_down: torch.Tensor, routing: MoERouting, bias: torch.Tensor | None = None,
         is_transposed: bool = False) -> torch.Tensor:
    """Grouped down projection (T*k, F) -> (T*k, H)."""
    w = w_down if is_transposed else w_down.transpose(-2, -1)  # (E, F, H)
    y = _gmm(h, w, routing.offs)
    if bias is not None:
        y = y + bias[_row_expert(routing, w.shape[0])]
    return y


def combine(y: torch.Tensor, weights: torch.Tensor, routing: MoERouting, out_dtype: torch.dtype) -> torch.Tensor:
    """out[t] = sum_j weights[t, j] * y[inverse[t*k + j]], the k slots summed in order in float32."""
    T, k = routing.ids.shape
    y_tk = _GatherRows.apply(torch.where(_valid_rows(routing), y, 0), routing.inverse, routing.order, 1).view(T, k, -1)
    return (y_tk.float() * weights.float().unsqueeze(-1)).sum(1).to(out_dtype)


_ACTIVATIONS = ("swiglu", "gpt_oss")


def moe_experts(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, w_gate_up: torch.Tensor,
                w_down: torch.Tensor, *, activation: str = "swiglu", gate_up_bias: torch.Tensor | None = None,
                down_bias: torch.Tensor | None = None, routing: MoERouting | None = None,
                is_transposed: bool = False) -> torch.Tensor:
    """For each token (x: (T, H)) the `weights`-weighted sum over its k experts `ids` (T, k) of
    down(act(x W_gate, x W_up)); layout in the module docstring. `routing` (from moe_route, for
    the same ids) saves recomputing the metadata. Differentiable w.r.t. x, weights and every
    expert parameter; sync-free and deterministic."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"moe_experts: activation must be one of {_ACTIVATIONS}, got {activation!r}")
    if x.dim() != 2 or w_gate_up.dim() != 3 or w_down.dim() != 3:
        raise ValueError(f"moe_experts: x must be (T, H) and the expert weights 3-D, got x{tuple(x.shape)}, "
                         f"w_gate_up{tuple(w_gate_up.shape)}, w_down{tuple(w_down.shape)}")
    E, H = w_gate_up.shape[0], x.shape[1]
    two_f = w_gate_up.shape[2] if is_transposed else w_gate_up.shape[1]
    want_up = (E, H, two_f) if is_transposed else (E, two_f, H)
    want_down = (E, two_f // 2, H) if is_transposed else (E, H, two_f // 2)
    if two_f % 2 or tuple(w_gate_up.shape) != want_up or tuple(w_down.shape) != want_down:
        raise ValueError(f"moe_experts: with H={H}, is_transposed={is_transposed} expected w_gate_up {want_up} and "
                         f"w_down {want_down}, got {tuple(w_gate_up.shape)} and {tuple(w_down.shape)}")
    if ids.shape != weights.shape or ids.shape[0] != x.shape[0]:
        raise ValueError(f"moe_experts: ids {tuple(ids.shape)} and weights {tuple(weights.shape)} must both be "
                         f"(T={x.shape[0]}, k)")
    if routing is None:
        routing = routing_metadata(ids, E)
    h = gather_up_act(x, w_gate_up, routing, activation, gate_up_bias, is_transposed)
    y = down(h, w_down, routing, down_bias, is_transposed)
    return combine(y, weights, routing, x.dtype)
