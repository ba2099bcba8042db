"""The process ncu profiles: one config, one problem, the last launch marked.

    python -m cudadent42.tune.profile_target <family> <config-name> '<problem-json>' [--warmup N]

Inputs are built by the same helpers the sweep times with (sweep._gemm_case /
_attn_case), the result is checked against the reference once (profiling a
wrong kernel is wasted time), then the kernel runs `warmup` times and once
more inside the NVTX range profile.NVTX_RANGE: that last launch is the one
ncu_command() selects. Failures are printed on one line starting with
profile.TARGET_ERROR so the parent can report them per config.
"""
from __future__ import annotations

import argparse
import json
import sys

from .profile import NVTX_RANGE, TARGET_ERROR


def run(family: str, config_name: str, problem: dict, warmup: int = 3) -> None:
    import torch

    from .profile import _as_configs
    from .sweep import _within_tolerance, case

    cfg = _as_configs(family, [config_name])[0]
    launch, output, ref, lowp = case(family)(problem)
    launch(cfg)
    torch.cuda.synchronize()
    ok, err = _within_tolerance(output(), ref, lowp)
    del ref, lowp
    torch.cuda.empty_cache()  # the fp32 reference is large; keep the profiled run's memory as in a sweep
    if not ok:
        raise RuntimeError(f"{config_name} gives a wrong result (max abs err {err:.3g}); not profiled")
    for _ in range(warmup):
        launch(cfg)
    torch.cuda.synchronize()
    with torch.cuda.nvtx.range(NVTX_RANGE):
        launch(cfg)
    torch.cuda.synchronize()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cudadent42.tune.profile_target")
    p.add_argument("family", choices=["gemm", "attn-fwd", "attn-bwd"])
    p.add_argument("config")
    p.add_argument("problem", help="the problem dict as JSON (sweep/tune field names)")
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)
    try:
        run(args.family, args.config, json.loads(args.problem), args.warmup)
    except Exception as e:  # noqa: BLE001 - one line the parent can attribute to this config
        print(f"{TARGET_ERROR} {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
