"""GEMM vs torch.matmul (cuBLAS): python benchmarks/bench_gemm.py [--json out.json]"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import torch  # noqa: E402

from cudadent42.bench.gemm import HEADER, run_gemm_bench  # noqa: E402

if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--json", default=None)
    args = p.parse_args()
    print(f"card: {torch.cuda.get_device_name(0)}")
    print(HEADER)
    rows = run_gemm_bench()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"card": torch.cuda.get_device_name(0), "gemm": rows}, f, indent=1)
