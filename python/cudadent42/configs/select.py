"""Config selection at call time: tuned table first, then the heuristic.

(An explicit `config=` from the caller is handled by the ops before this.)
Results are memoized per (problem, GPU) and table version, so the hot path
is one dict lookup.
"""
from __future__ import annotations

import warnings

from . import heuristics_sm90
from .base import ConfigError

_memo: dict = {}
_memo_version = -1


def _from_table(family: str, gpu: str, problem: dict):
    from ..tune import table

    name = table.lookup(table.problem_key(family, **problem), gpu)
    if name is None:
        return None
    try:
        from ..tune.space import CONFIG_CLASSES

        return CONFIG_CLASSES[family].from_name(name)
    except ConfigError as e:  # a table written by another version of the package
        warnings.warn(f"cudadent42: ignoring tuned entry {name!r}: {e}", stacklevel=3)
        return None


def select(family: str, gpu: str, sizes: dict | None = None, **problem):
    """Config for `problem` (the fields that pick a kernel) on `gpu`. `sizes`
    (the call's batch/heads, or {} for gemm) lets a tuned-table miss be tuned
    on first use when autotuning is on (tune/autotune.py)."""
    global _memo_version
    from ..tune import autotune, table

    if table.version != _memo_version:
        _memo.clear()
        _memo_version = table.version
    key = (family, gpu, *sorted(problem.items()))
    hit = _memo.get(key)
    if hit is None:
        cfg = _from_table(family, gpu, problem)
        hit = (cfg, "table") if cfg is not None else (heuristic_config(family, problem), "heuristic")
        _memo[key] = hit
    if hit[1] == "heuristic" and autotune.enabled():
        name = autotune.maybe_tune(family, gpu, problem, sizes)
        if name:
            return select(family, gpu, sizes, **problem)  # the table now has it (version bumped)
    return hit[0]


def heuristic_config(family: str, problem: dict):
    """The untuned default for a problem (also what sweeps rank as `default`)."""
    if family == "attn-bwd":
        return heuristics_sm90.attn_bwd_config(problem["dtype"], problem["head_dim"], problem["mask"],
                                               problem["deterministic"])
    if family == "gemm":
        return heuristics_sm90.gemm_config(problem["dtype"], problem["b_major"], problem["M"], problem["N"],
                                           problem["K"])
    return heuristics_sm90.attn_fwd_config(problem["dtype"], problem["head_dim"], problem["mask"],
                                           problem["softcap"], problem["varlen"])
