"""Attention forward vs SDPA (cuDNN / FLASH_ATTENTION) on the standard grid.

    python benchmarks/bench_attention.py [--json out.json] [--png out.png] [--quick] [--bwd] [--rounds N]

Each cell times ours, cuDNN and FA2 in N interleaved rounds (default 3) and
reports the median, with the per-round range of the ratio to cuDNN.

--bwd: the backward instead (TFLOP/s at 2.5x forward FLOPs), plus forward +
backward time of one training-shaped call.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import torch  # noqa: E402

from cudadent42.bench.attention import HEADER, plot, run_attention_bench  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--quick", action="store_true", help="S in {4096, 16384} only")
    p.add_argument("--bwd", action="store_true", help="benchmark the backward")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per cell")
    args = p.parse_args()
    card = torch.cuda.get_device_name(0)
    print(f"card: {card}; torch {torch.__version__}; bf16 forward, B*S=16384, H*D=2048")
    from cudadent42.bench.timing import warm_up_gpu

    warm_up_gpu()
    if args.bwd:
        from cudadent42.bench.attention_bwd import deterministic_cost, run_attention_bwd_bench, training_call_ms

        print("backward (TFLOP/s = 2.5 x forward FLOPs / time)")
        print(HEADER)
        rows = run_attention_bwd_bench(seqlens=(4096, 16384) if args.quick else (512, 1024, 2048, 4096, 8192, 16384),
                                       rounds=args.rounds)
        train = training_call_ms(rounds=args.rounds)
        det = deterministic_cost(rounds=args.rounds)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"card": card, "attn_bwd": rows, "training_call": train, "deterministic": det}, f,
                          indent=1)
        return
    print(HEADER)
    rows = run_attention_bench(seqlens=(4096, 16384) if args.quick else
                               (512, 1024, 2048, 4096, 8192, 16384), rounds=args.rounds)
    from cudadent42.bench.targets import check_targets, format_targets

    print(format_targets(check_targets(rows)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": card, "attn_fwd": rows}, f, indent=1)
    if args.png:
        plot(rows, args.png)


if __name__ == "__main__":
    main()
