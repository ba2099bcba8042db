"""Per-kernel GPU times of one backward call (ours and SDPA cuDNN's) from
torch.profiler: which side kernels (memset, preprocess, postprocess) cost
what next to the main kernel.

  python benchmarks/bwd_kernel_times.py D:S:causal [...]
"""
from __future__ import annotations

import collections
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from grid_points import grid_inputs, parse_point, sdpa_out_lse


def kernel_times(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    agg = collections.defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            agg[e.name[:70]] += e.device_time / reps
    return agg


def main(points):
    from cudadent42.configs.heuristics_sm90 import attn_bwd_config
    from cudadent42.jit import build
    from cudadent42.ops.attention_bwd import attn_bwd

    for point in points:
        d, s, causal, _ = parse_point(point)
        build([attn_bwd_config("bf16", d, "causal" if causal else "none")])
        b, h, q, k, v = grid_inputs(d, s)
        out, lse = sdpa_out_lse(q, k, v, causal)
        dout = torch.randn_like(out)
        qt, kt, vt = (x.detach().transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v))
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
        do = dout.transpose(1, 2).contiguous()
        for name, fn in (("ours", lambda: attn_bwd(dout, q, k, v, out, lse, causal=causal)),
                         ("cudnn", lambda: torch.autograd.grad(o, (qt, kt, vt), do, retain_graph=True))):
            agg = kernel_times(fn)
            total = sum(agg.values())
            print(f"{point} {name}: total {total:.1f} us")
            for kname, t in sorted(agg.items(), key=lambda x: -x[1]):
                print(f"    {t:9.1f} us  {kname}")


if __name__ == "__main__":
    main(sys.argv[1:])
