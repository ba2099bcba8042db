"""Host time per eager attention call: ours vs SDPA (cuDNN, FLASH_ATTENTION).

At tiny shapes the GPU finishes each call's kernels before the host has
issued the next, so the host's own time per call is the step time (eager
training at S <= 1k or small batches). Measured as the wall time of `n`
calls issued back to back without synchronising, divided by n (the GPU
queue never fills at these sizes), median over repeats; the queue is
drained between repeats and not counted.
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = ((1, 128, 4, 64), (1, 128, 4, 128))  # (B, S, H, D)
IMPLS = ("ours", "cudnn", "flash")
_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}


def host_us(fn, n: int = 50, repeats: int = 20, warmup: int = 10) -> float:
    """Median over `repeats` of the host microseconds per call of `n` back-to-back calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    per_call = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per_call.append((time.perf_counter() - t0) / n * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per_call)


def _callables(impl: str, b: int, s: int, h: int, d: int, causal: bool = True):
    """(forward, forward+backward) zero-argument callables of one implementation."""
    from cudadent42 import flash_attn_func  # absolute: benchmarks/host_overhead.py --tree loads this file alone

    if impl == "ours":
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
        dout = torch.randn_like(q)

        def fwd():
            flash_attn_func(q, k, v, causal=causal)

        def fwd_bwd():
            torch.autograd.grad(flash_attn_func(qg, kg, vg, causal=causal), (qg, kg, vg), dout)
        return fwd, fwd_bwd
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    qg, kg, vg = (x.clone().requires_grad_() for x in (q, k, v))
    dout = torch.randn_like(q)

    def sdpa_fwd():
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    def sdpa_fwd_bwd():
        torch.autograd.grad(F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal), (qg, kg, vg), dout)
    return sdpa_fwd, sdpa_fwd_bwd


def measure(shapes=SHAPES, n: int = 50, repeats: int = 20, log=print) -> list[dict]:
    """One row per (shape, implementation): host us per forward and per forward+backward."""
    rows = []
    for b, s, h, d in shapes:
        for impl in IMPLS:
            fwd, fwd_bwd = _callables(impl, b, s, h, d)
            row = dict(batch=b, seqlen=s, heads=h, head_dim=d, impl=impl)
            try:
                if impl in _BACKENDS:
                    with sdpa_kernel(_BACKENDS[impl]):  # entered once: the loop times the call alone
                        row["fwd_us"], row["fwd_bwd_us"] = host_us(fwd, n, repeats), host_us(fwd_bwd, n, repeats)
                else:
                    row["fwd_us"], row["fwd_bwd_us"] = host_us(fwd, n, repeats), host_us(fwd_bwd, n, repeats)
            except RuntimeError as e:  # a backend that refuses the shape
                row["fwd_us"] = row["fwd_bwd_us"] = float("nan")
                row["error"] = str(e).splitlines()[0]
            rows.append(row)
    for row in rows:
        ref = [r for r in rows if r["head_dim"] == row["head_dim"] and r["seqlen"] == row["seqlen"]
               and r["impl"] == "cudnn"][0]
        row["fwd_vs_cudnn"] = row["fwd_us"] / ref["fwd_us"]
        row["fwd_bwd_vs_cudnn"] = row["fwd_bwd_us"] / ref["fwd_bwd_us"]
    if log:
        log(HEADER)
        for row in rows:
            log(format_row(row))
    return rows


HEADER = (f"{'B,S,H,D':>14} {'impl':>6} {'fwd us':>8} {'/cuDNN':>7} {'fwd+bwd us':>11} {'/cuDNN':>7}"
          "   (host time per eager call, bf16, causal)")


def format_row(r) -> str:
    shape = f"{r['batch']},{r['seqlen']},{r['heads']},{r['head_dim']}"
    return (f"{shape:>14} {r['impl']:>6} {r['fwd_us']:>8.1f} {r['fwd_vs_cudnn']:>7.2f} {r['fwd_bwd_us']:>11.1f} "
            f"{r['fwd_bwd_vs_cudnn']:>7.2f}")
