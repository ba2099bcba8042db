"""How much host time the eager backward timings count: each point of the
standard grid timed with bench_ms(sync_each=True) (every run waits for the
last, so the GPU idles while the host launches) and with runs queued back to
back (the default), for ours and SDPA's cuDNN / FLASH_ATTENTION backwards;
plus the host time of one call of each (no synchronization, mean of 20).

  python benchmarks/timing_method.py D:S:causal [...]

Prints one JSON line per point and implementation.
"""
from __future__ import annotations

import json
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from grid_points import grid_inputs, parse_point, sdpa_out_lse


def host_us(fn, n=20):
    fn()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    t = (time.perf_counter() - t) / n
    torch.cuda.synchronize()
    return round(t * 1e6, 1)


def main(points):
    from cudadent42.bench.attention_bwd import bwd_flops
    from cudadent42.configs.heuristics_sm90 import attn_bwd_config
    from cudadent42.jit import build
    from cudadent42.bench.timing import bench_ms, warm_up_gpu
    from cudadent42.ops.attention_bwd import attn_bwd

    cfgs = {}
    for point in points:
        d, _, causal, _ = parse_point(point)
        cfg = attn_bwd_config("bf16", d, "causal" if causal else "none")
        cfgs[cfg.name] = cfg
    build(list(cfgs.values()))
    warm_up_gpu()
    for point in points:
        d, s, causal, _ = parse_point(point)
        b, h, q, k, v = grid_inputs(d, s)
        out, lse = sdpa_out_lse(q, k, v, causal)
        dout = torch.randn_like(out)
        fns = {"ours": lambda: attn_bwd(dout, q, k, v, out, lse, causal=causal)}
        for name, backend in (("cudnn", SDPBackend.CUDNN_ATTENTION), ("fa2", SDPBackend.FLASH_ATTENTION)):
            qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
            with sdpa_kernel(backend):
                o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
            do = dout.transpose(1, 2).contiguous()
            fns[name] = lambda o=o, qt=qt, kt=kt, vt=vt, do=do: torch.autograd.grad(o, (qt, kt, vt), do,
                                                                                     retain_graph=True)
        flops = bwd_flops(b, h, s, d, causal)
        for rep in range(2):
            for name, fn in fns.items():
                ms_sync = bench_ms(fn, graph=False, sync_each=True)
                ms_queued = bench_ms(fn, graph=False)
                print(json.dumps({"d": d, "s": s, "causal": causal, "impl": name, "rep": rep,
                                  "ms_sync_each": round(ms_sync, 4), "ms_queued": round(ms_queued, 4),
                                  "tflops_sync_each": round(flops / ms_sync / 1e9, 1),
                                  "tflops_queued": round(flops / ms_queued / 1e9, 1),
                                  "host_us": host_us(fn)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
