"""A/B timing of the attention backward kernel between builds, in one process
per build so each imports its own copy of the package (and csrc/, which the
JIT cache key hashes).

  PYTHONPATH=<build>/python python benchmarks/ab_bwd.py TAG D:S:causal [...]

Each point is the standard grid's shape (B*S = 16384 tokens, H*D = 2048,
bf16), timed on the kernel path (preprocess, main kernel, dQ postprocess)
like `cudadent42 bench --only bwd` (TAG cudnn: SDPA's cuDNN backend
instead, as that benchmark times it); prints one JSON line per point. Run the
builds alternately, twice or more: on these machines one run's spread is
5-10%, so only differences beyond it count.
"""
from __future__ import annotations

import json
import sys

import torch
from grid_points import grid_inputs, parse_point, sdpa_out_lse


def _max_rel_err(grads, q, k, v, dout, causal):
    """Largest of max|ours - SDPA flash| / max|SDPA flash| over dq, dk, dv: a
    sanity check that a variant being timed is not computing garbage (the
    tests hold the real tolerance rule)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v))
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
    ref = torch.autograd.grad(o, (qt, kt, vt), dout.transpose(1, 2))
    return round(max(float((g - r.transpose(1, 2)).abs().max() / r.abs().max()) for g, r in zip(grads, ref)), 5)


def main(argv):
    tag, points = argv[0], argv[1:]
    from cudadent42.bench.attention_bwd import _sdpa_bwd_ms, bwd_flops
    from cudadent42.bench.timing import bench_ms
    from cudadent42.ops.attention_bwd import attn_bwd

    for point in points:
        d, s, causal, _ = parse_point(point)
        b, h, q, k, v = grid_inputs(d, s)
        if tag == "cudnn":
            from torch.nn.attention import SDPBackend

            ms = _sdpa_bwd_ms(SDPBackend.CUDNN_ATTENTION, *(x.transpose(1, 2).contiguous() for x in (q, k, v)), causal)
            err = None
        else:
            out, lse = sdpa_out_lse(q, k, v, causal)
            dout = torch.randn_like(out)
            ms = bench_ms(lambda: attn_bwd(dout, q, k, v, out, lse, causal=causal), graph=False)
            err = _max_rel_err(attn_bwd(dout, q, k, v, out, lse, causal=causal), q, k, v, dout, causal)
        tflops = bwd_flops(b, h, s, d, causal) / ms / 1e9
        print(json.dumps({"tag": tag, "d": d, "s": s, "causal": causal, "ms": round(ms, 4),
                          "tflops": round(tflops, 1), "err": err}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
