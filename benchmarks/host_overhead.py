"""Host time per eager attention call on a GPU: ours vs SDPA cuDNN and FLASH_ATTENTION.

Tiny shapes (B=1, S=128, H=4, D=64 and 128, bf16, causal), where the host is
the bottleneck: forward alone, and forward + backward through autograd.
Target (issue 16 item 8): ours <= 1.5x SDPA's host time for both.

    python benchmarks/host_overhead.py [--json out.json] [--n 50] [--repeats 20]
    python benchmarks/host_overhead.py --tree /path/to/old/checkout/python   # before/after, same card

(The method is in python/cudadent42/bench/host_time.py; `python -m
cudadent42 bench` prints the same table. benchmarks/host_overhead_cpu.py
measures the Python path without a GPU.)
"""
import argparse
import importlib.util
import json
import os
import sys

HOST_TIME = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python", "cudadent42", "bench",
                         "host_time.py")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--n", type=int, default=50, help="calls issued back to back per repeat")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--tree", help="measure the cudadent42 package under this python/ directory (e.g. an older "
                    "checkout's) with this tree's method")
    args = ap.parse_args()
    if args.tree:
        sys.path.insert(0, args.tree)
    import torch

    import cudadent42

    spec = importlib.util.spec_from_file_location("host_time", HOST_TIME)
    host_time = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host_time)
    print(f"card: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; cudadent42 from "
          f"{os.path.dirname(cudadent42.__file__)}")
    rows = host_time.measure(n=args.n, repeats=args.repeats)
    ok = all(r["fwd_vs_cudnn"] <= 1.5 and r["fwd_bwd_vs_cudnn"] <= 1.5 for r in rows if r["impl"] == "ours")
    print(f"target (ours <= 1.5x cuDNN's host time, fwd and fwd+bwd): {'PASS' if ok else 'FAIL'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
