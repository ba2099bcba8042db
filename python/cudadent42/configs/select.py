"""Config selection at call time: tuned table first, then the heuristic.

(An explicit `config=` from the caller is handled by the ops before this.)
Results are memoized per (problem, GPU) and table version, so the hot path
is one dict lookup.
"""
from __future__ import annotations

import warnings

from . import heuristics_sm90
from .attention import AttnFwdConfig
from .base import ConfigError
from .gemm import GemmConfig

_memo: dict = {}
_memo_version = -1


def _from_table(family: str, gpu: str, problem: dict):
    from ..tune import table

    name = table.lookup(table.problem_key(family, **problem), gpu)
    if name is None:
        return None
    try:
        return (GemmConfig if family == "gemm" else AttnFwdConfig).from_name(name)
    except ConfigError as e:  # a table written by another version of the package
        warnings.warn(f"cudadent42: ignoring tuned entry {name!r}: {e}", stacklevel=3)
        return None


def select(family: str, gpu: str, **problem):
    global _memo_version
    from ..tune import table

    if table.version != _memo_version:
        _memo.clear()
        _memo_version = table.version
    key = (family, gpu, *sorted(problem.items()))
    cfg = _memo.get(key)
    if cfg is None:
        cfg = _from_table(family, gpu, problem)
        if cfg is None:
            if family == "gemm":
                cfg = heuristics_sm90.gemm_config(problem["dtype"], problem["b_major"], problem["M"],
                                                  problem["N"], problem["K"])
            else:
                cfg = heuristics_sm90.attn_fwd_config(problem["dtype"], problem["head_dim"], problem["mask"],
                                                      problem["softcap"], problem["varlen"])
        _memo[key] = cfg
    return cfg
