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
        d, s, causal = point.split(":")
        d, s, causal = int(d), int(s), causal in ("1", "causal", "yes", "true")
        b, h = max(1, 16384 // s), 2048 // d
        torch.manual_seed(0)
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        if tag == "cudnn":
            from torch.nn.attention import SDPBackend

            ms = _sdpa_bwd_ms(SDPBackend.CUDNN_ATTENTION, *(x.transpose(1, 2).contiguous() for x in (q, k, v)), causal)
            err = None
        else:
            # out / lse from SDPA's flash kernel: the timing does not depend
            # on their values, and no forward build is needed per build tree.
            o4, lse = torch.ops.aten._scaled_dot_product_flash_attention(
                *(x.transpose(1, 2) for x in (q, k, v)), 0.0, causal)[:2]
            out = o4.transpose(1, 2)
            dout = torch.randn_like(out)
            ms = bench_ms(lambda: attn_bwd(dout, q, k, v, out, lse, causal=causal), graph=False)
            err = _max_rel_err(attn_bwd(dout, q, k, v, out, lse, causal=causal), q, k, v, dout, causal)
        tflops = bwd_flops(b, h, s, d, causal) / ms / 1e9
        print(json.dumps({"tag": tag, "d": d, "s": s, "causal": causal, "ms": round(ms, 4),
                          "tflops": round(tflops, 1), "err": err}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
