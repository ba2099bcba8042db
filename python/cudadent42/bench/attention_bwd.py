"""Attention backward benchmark: ours vs SDPA (cuDNN, FLASH_ATTENTION) on the
standard grid (B*S = 16384, H*D = 2048, bf16), backward FLOPs = 2.5 x forward.

Backward passes run eagerly (not graph-replayed) for every implementation:
SDPA's backward is an autograd call. bench_ms queues the runs back to back,
so the host's launch time (0.12-0.25 ms per call on either side) overlaps
the previous run instead of being counted. Ours is timed on the kernel path (preprocess, main
kernel, dQ postprocess), SDPA on torch.autograd.grad of its own forward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .attention import HEAD_DIMS, SEQLENS, format_row, fwd_flops, grid, make_row
from .timing import bench_ms, interleaved_ms, median_of_rounds


def bwd_flops(b, h, s, d, causal):
    return 2.5 * fwd_flops(b, h, s, d, causal)


def _sdpa_bwd_ms(backend, q, k, v, causal):
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    try:
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        dout = torch.randn_like(out)
        return bench_ms(lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True), graph=False)
    except RuntimeError:  # backend refuses this shape
        return float("nan")


def run_attention_bwd_bench(seqlens=SEQLENS, head_dims=HEAD_DIMS, causals=(False, True), rounds=3, log=print):
    """The backward grid; each cell's implementations timed in `rounds`
    interleaved rounds (timing.interleaved_ms), the median reported."""
    from .. import flash_attn_func
    from ..configs.attention_bwd import BWD_HEAD_DIMS
    from ..configs.heuristics_sm90 import attn_bwd_config
    from ..jit import build
    from ..ops.attention_bwd import attn_bwd

    build([attn_bwd_config("bf16", d, "causal" if c else "none") for d in head_dims if d in BWD_HEAD_DIMS
           for c in causals])
    rows = []
    for b, h, s, d, causal, q, k, v in grid(seqlens, head_dims, causals):
        timers = {"ours": lambda: float("nan")}
        if d in BWD_HEAD_DIMS:
            out, lse = flash_attn_func(q, k, v, causal=causal, return_lse=True)
            dout = torch.randn_like(out)
            timers["ours"] = lambda: bench_ms(lambda: attn_bwd(dout, q, k, v, out, lse, causal=causal), graph=False)
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        timers["cudnn"] = lambda: _sdpa_bwd_ms(SDPBackend.CUDNN_ATTENTION, qt, kt, vt, causal)
        timers["fa2"] = lambda: _sdpa_bwd_ms(SDPBackend.FLASH_ATTENTION, qt, kt, vt, causal)
        row = make_row(b, h, s, d, causal, bwd_flops(b, h, s, d, causal), interleaved_ms(timers, rounds))
        rows.append(row)
        log(format_row(row))
    return rows


def training_call_ms(rounds=3, log=print) -> dict:
    """Forward + backward of one training-shaped call (B=4, S=4096, 32 query
    heads, 8 KV heads, D=128, causal): ours through autograd vs SDPA cuDNN."""
    from .. import flash_attn_func

    B, S, H, HKV, D = 4, 4096, 32, 8, 128
    q = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(B, S, HKV, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    dout = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16)

    def ours():
        torch.autograd.grad(flash_attn_func(q, k, v, causal=True), (q, k, v), dout)

    qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v))
    doutt = dout.transpose(1, 2)

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)
        torch.autograd.grad(o, (qt, kt, vt), doutt)

    res = {}

    def cudnn_ms():
        try:
            return bench_ms(cudnn, graph=False)
        except RuntimeError as e:
            res["cudnn_error"] = str(e).splitlines()[0]
            return float("nan")

    runs = interleaved_ms({"ours": lambda: bench_ms(ours, graph=False), "cudnn": cudnn_ms}, rounds)
    res.update(ours_ms=median_of_rounds(runs["ours"]), cudnn_ms=median_of_rounds(runs["cudnn"]), rounds=runs)
    log(f"training-shaped call (B=4, S=4096, 32q/8kv heads, D=128, causal), fwd+bwd: ours {res['ours_ms']:.3f} ms, "
        f"SDPA cuDNN {res['cudnn_ms']:.3f} ms")
    return res


def deterministic_cost(rounds=3, log=print) -> dict:
    """Backward time with and without deterministic dQ accumulation (B=4, S=4096, 32q/8kv, D=128, causal)."""
    from .. import flash_attn_func
    from ..ops.attention_bwd import attn_bwd

    q = torch.randn(4, 4096, 32, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(4, 4096, 8, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    out, lse = flash_attn_func(q, k, v, causal=True, return_lse=True)
    dout = torch.randn_like(out)
    runs = interleaved_ms({det: (lambda det=det: bench_ms(
        lambda: attn_bwd(dout, q, k, v, out, lse, causal=True, deterministic=det), graph=False))
        for det in (False, True)}, rounds)
    res = {det: median_of_rounds(runs[det]) for det in (False, True)}
    log(f"deterministic backward: {res[True]:.3f} ms vs {res[False]:.3f} ms ({res[True] / res[False]:.2f}x)")
    return {"default_ms": res[False], "deterministic_ms": res[True]}
