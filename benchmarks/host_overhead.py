"""Host time per eager attention call on a GPU: ours vs SDPA cuDNN and FLASH_ATTENTION.

Tiny shapes (B=1, S=128, H=4, D=64 and 128, bf16, causal), where the host is
the bottleneck: forward alone, and forward + backward through autograd.
Target (issue 16 item 8): ours <= 1.5x SDPA's host time for both.

    python benchmarks/host_overhead.py [--json out.json] [--n 50] [--repeats 20]

(The method is in python/cudadent42/bench/host_time.py; `python -m
cudadent42 bench` prints the same table. benchmarks/host_overhead_cpu.py
measures the Python path without a GPU.)
"""
import argparse
import json
import sys

import torch

from cudadent42.bench.host_time import measure


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--n", type=int, default=50, help="calls issued back to back per repeat")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    print(f"card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    rows = measure(n=args.n, repeats=args.repeats)
    ok = all(r["fwd_vs_cudnn"] <= 1.5 and r["fwd_bwd_vs_cudnn"] <= 1.5 for r in rows if r["impl"] == "ours")
    print(f"target (ours <= 1.5x cuDNN's host time, fwd and fwd+bwd): {'PASS' if ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
