"""Host time of the Python call path, measured without a GPU.

The parts that need CUDA are replaced by stand-ins of the same kind, so
what remains is the Python, torch and ctypes work of each call:
- the kernel object is tests/stub_kernel.py's small C library (built with
  gcc) exporting the same symbols as a real attention object, so every
  launch is a real ctypes call into C that copies the argument block and
  returns (no TMA descriptors, no cudaLaunchKernel: those few microseconds
  are not counted);
- require_hopper / gpu_name / the stream handle return fixed values;
- tensors are CPU tensors (CPU allocations stand in for the CUDA caching
  allocator's; both cost a few microseconds of host time).

    PYTHONPATH=python python benchmarks/host_overhead_cpu.py            # this tree
    python benchmarks/host_overhead_cpu.py --tree /path/to/other/python  # e.g. main's, for a before/after

Prints microseconds per call (best of 5 repeats of the median) for the
forward without grad, the forward with grad (autograd node built) and
forward + backward through torch.autograd.grad.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def per_call_us(fn, n: int = 300, repeats: int = 5) -> float:
    for _ in range(20):
        fn()
    best = float("inf")
    for _ in range(repeats):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        best = min(best, statistics.median(ts))
    return best * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", help="a package tree's python/ directory to measure instead of PYTHONPATH's")
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
    import torch

    import cudadent42

    sys.path.insert(0, os.path.join(REPO, "tests"))
    import stub_kernel

    stub_kernel.install()
    print(f"cudadent42 from {os.path.dirname(cudadent42.__file__)}; torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'shape (B,S,H,D)':>18} {'fwd no-grad':>12} {'fwd w/ grad':>12} {'fwd+bwd':>10}   (us per call)")
    for d in (64, 128):
        q, k, v = (torch.randn(1, 128, 4, d, dtype=torch.bfloat16) for _ in range(3))
        qg, kg, vg = (t.clone().requires_grad_() for t in (q, k, v))
        dout = torch.randn_like(q)

        def fwd():
            with torch.no_grad():
                cudadent42.flash_attn_func(q, k, v, causal=True)

        def fwd_grad():
            cudadent42.flash_attn_func(qg, kg, vg, causal=True)

        def fwd_bwd():
            out = cudadent42.flash_attn_func(qg, kg, vg, causal=True)
            torch.autograd.grad(out, (qg, kg, vg), dout)

        print(f"{str((1, 128, 4, d)):>18} {per_call_us(fwd):>12.1f} {per_call_us(fwd_grad):>12.1f} "
              f"{per_call_us(fwd_bwd):>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
