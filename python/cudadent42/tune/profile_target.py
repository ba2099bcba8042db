"""The process ncu profiles: one config, one problem, the last launch marked.

    python -m cudadent42.tune.profile_target <family> <config-name> '<problem-json>' [--warmup N]
        [--runner module:function]

Inputs are built by the family's make_case (as a sweep builds them), the
result is checked against the family's reference once with the tolerance rule
(profiling a wrong kernel is wasted time), then the kernel runs `warmup` times
and once more inside the NVTX range profile.NVTX_RANGE: that last launch is
the one ncu_command() selects. The kernel runs through the op layer's
run(config, case), found by name (the family's `runner`, or --runner) because
this is a separate process. Failures are printed on one line starting with
profile.TARGET_ERROR so the parent can report them per config.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from .. import families
from ..reference import within_tolerance
from .profile import NVTX_RANGE, TARGET_ERROR, _as_configs


def run(family: str, config_name: str, problem: dict, warmup: int = 3, runner: str | None = None) -> None:
    fam = families.get(family)
    cfg = _as_configs(family, [config_name])[0]
    launch = families.resolve(runner or fam.runner)
    case = fam.make_case(problem)
    with torch.no_grad():
        ref, lowp = fam.reference(case, True), fam.reference(case, False)
    out = launch(cfg, case)
    torch.cuda.synchronize()
    ok, err = within_tolerance(out, ref, lowp)
    del ref, lowp
    torch.cuda.empty_cache()  # the fp32 reference is large; keep the profiled run's memory as in a sweep
    if not ok:
        raise RuntimeError(f"{config_name} gives a wrong result (max abs err {err:.3g}); not profiled")
    for _ in range(warmup):
        launch(cfg, case)
    torch.cuda.synchronize()
    with torch.cuda.nvtx.range(NVTX_RANGE):
        launch(cfg, case)
    torch.cuda.synchronize()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cudadent42.tune.profile_target")
    p.add_argument("family", choices=families.names())
    p.add_argument("config")
    p.add_argument("problem", help="the problem dict as JSON (sweep/tune field names)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--runner", default=None, help="module:function of run(config, case) (default: the family's)")
    args = p.parse_args(argv)
    try:
        run(args.family, args.config, json.loads(args.problem), args.warmup, args.runner)
    except Exception as e:  # noqa: BLE001 - one line the parent can attribute to this config
        print(f"{TARGET_ERROR} {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
