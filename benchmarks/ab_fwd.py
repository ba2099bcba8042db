"""A/B timing of the attention forward kernel between builds, one process per
build so each imports its own copy of the package (and csrc/, which the JIT
cache key hashes); the forward counterpart of ab_bwd.py.

  PYTHONPATH=<build>/python python benchmarks/ab_fwd.py TAG D:S:causal[:pvwait|:CONFIG_NAME] [...]

Each point is the standard grid's shape (B*S = 16384 tokens, H*D = 2048,
bf16), timed like `cudadent42 bench --only fwd` (CUDA-graph replay with an
L2 flush; TAG cudnn: SDPA's cuDNN backend instead). Prints one JSON line per
point (":pvwait": the heuristic config with softmax_under_pv=False, to A/B
a config field inside one build), with the variant's max relative error against SDPA's flash output as
a sanity check (the tests hold the real tolerance rule). Run the builds
alternately, twice or more: one run's spread on these machines is 5-10%.
"""
from __future__ import annotations

import dataclasses
import json
import sys

import torch
import torch.nn.functional as F
from grid_points import grid_inputs, parse_point


def main(argv):
    tag, points = argv[0], argv[1:]
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from cudadent42.bench.attention import _sdpa_ms, fwd_flops
    from cudadent42.bench.timing import bench_ms

    for point in points:
        d, s, causal, variant = parse_point(point)
        cfg = None
        if variant and variant[0].startswith("attn_fwd_"):  # an explicit config by name
            from cudadent42.configs.attention import AttnFwdConfig

            cfg = AttnFwdConfig.from_name(variant[0])
        elif variant == ["pvwait"]:
            from cudadent42.configs.heuristics_sm90 import attn_fwd_config

            cfg = dataclasses.replace(attn_fwd_config("bf16", d, "causal" if causal else "none", False, False),
                                      softmax_under_pv=False)
        b, h, q, k, v = grid_inputs(d, s)
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        err = None
        if tag == "cudnn":
            ms = _sdpa_ms(SDPBackend.CUDNN_ATTENTION, qt, kt, vt, causal)
        else:
            from cudadent42 import flash_attn_func

            out = flash_attn_func(q, k, v, causal=causal, config=cfg)
            ms = bench_ms(lambda: flash_attn_func(q, k, v, causal=causal, config=cfg))
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION if d <= 256 else SDPBackend.MATH):
                ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2)
            err = round(float((out.float() - ref.float()).abs().max() / ref.float().abs().max()), 5)
        tflops = fwd_flops(b, h, s, d, causal) / ms / 1e9
        print(json.dumps({"tag": tag + (":" + variant[0] if variant else ""), "d": d, "s": s, "causal": causal,
                          "ms": round(ms, 4),
                          "tflops": round(tflops, 1), "err": err}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
