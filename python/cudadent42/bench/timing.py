"""Timing helpers: CUDA-event medians after warm-up, with L2 flushed."""
from __future__ import annotations

import math
import statistics

import torch


def _as_graph(fn):
    """Capture fn() in a CUDA graph so timing sees GPU time, not the Python
    launch path (which exceeds the kernel time of small problems). Falls
    back to eager calls when the callable cannot be captured."""
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            fn()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fn()
        return g.replay
    except Exception:  # noqa: BLE001 - any capture failure means: time eagerly
        torch.cuda.synchronize()
        return fn


def bench_ms(fn, *, warmup: int = 5, iters: int = 30, flush_l2: bool = True, graph: bool = True,
             sync_each: bool = False) -> float:
    """Median milliseconds of `fn()` over `iters` runs, each timed with events.

    A 256 MB buffer is overwritten before every timed run so no operand is
    served from the 50 MB L2 of an H100 (the GEMM operands are rewarmed on
    every run otherwise and small shapes look faster than they are). With
    `graph`, fn is replayed from a CUDA graph (same treatment for every
    implementation compared), so host-side launch cost is not counted.

    The runs are queued back to back and synchronized once at the end (as
    triton's do_bench does), so the events see GPU time: eager callables
    (the backward passes, an autograd.grad) are launched while the previous
    run still executes. `sync_each` waits for every run before launching the
    next, which leaves the GPU idle while the host launches: each run then
    also counts the callable's host time beyond the L2 flush's ~0.1 ms
    (measured on an H200: 0.12-0.25 ms on the eager backward paths).
    """
    flush = torch.empty(256 * 1024 * 1024, dtype=torch.int8, device="cuda") if flush_l2 else None
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    if graph:
        fn = _as_graph(fn)
    times, pending = [], []
    for _ in range(iters):
        if flush is not None:
            flush.zero_()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        if sync_each:
            end.synchronize()
        pending.append((start, end))
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) for s, e in pending]
    return statistics.median(times)


def interleaved_ms(timers: dict, rounds: int = 3) -> dict:
    """{name: [ms of each round]} for zero-argument callables that each time
    one implementation (e.g. a bench_ms call) and return milliseconds.

    The implementations alternate within a round and the order rotates from
    round to round, so clock or thermal drift and a one-off slow (or fast)
    sample hit every implementation alike; the caller takes the median over
    rounds. One implementation's own 5-10% swings (H200: cuDNN's
    backward read 511-569 TFLOP/s on one cell across runs) then decide a
    ratio only when they are the typical case. A timer that returns NaN (the
    backend refuses the shape) is not called again.
    """
    names = list(timers)
    runs = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            refused = runs[n] and math.isnan(runs[n][0])
            runs[n].append(float("nan") if refused else timers[n]())
    return runs


def median_of_rounds(ms: list) -> float:
    """Median over interleaved_ms's rounds, NaN rounds (refused) left out."""
    ms = [x for x in ms if not math.isnan(x)]
    return statistics.median(ms) if ms else float("nan")


def warm_up_gpu(seconds: float = 2.0) -> None:
    """Run matmuls for a while so clocks leave their idle state before timing
    (the first shapes of a cold run otherwise read 20-30% low)."""
    import time

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.time() + seconds
    while time.time() < end:
        for _ in range(10):
            a @ a
        torch.cuda.synchronize()


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12
