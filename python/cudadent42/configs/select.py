"""Config selection at call time: tuned table first, then the family's heuristic.

(An explicit `config=` from the caller is handled by the ops before this.)
Results are memoized per (problem, GPU) and table version, so the hot path
is one dict lookup.
"""
from __future__ import annotations

import warnings

from .. import families
from ..tune import autotune, table
from .base import ConfigError

_memo: dict = {}
_memo_version = -1


def _from_table(family: families.Family, gpu: str, problem: dict):
    name = table.lookup(family.table_key(problem), gpu)
    if name is None:
        return None
    try:
        return family.config_from_name(name)
    except ConfigError as e:  # a table written by another version of the package
        warnings.warn(f"cudadent42: ignoring tuned entry {name!r}: {e}", stacklevel=3)
        return None


def select(family: str, gpu: str, sizes: dict | None = None, run=None, **problem):
    """Config of kernel family `family` for `problem` (the family's problem
    fields) on `gpu`. With `sizes` (the call's batch/heads, or {} for gemm)
    and `run` (the op's run(config, case), see families/registry.py), a
    tuned-table miss is tuned on first use when autotuning is on
    (tune/autotune.py)."""
    global _memo_version
    if table.version != _memo_version:
        _memo.clear()
        _memo_version = table.version
    key = (family, gpu, *sorted(problem.items()))
    hit = _memo.get(key)
    if hit is None:
        fam = families.get(family)
        fam.check_problem(problem)
        cfg = _from_table(fam, gpu, problem)
        hit = (cfg, "table") if cfg is not None else (fam.heuristic(problem), "heuristic")
        _memo[key] = hit
    if hit[1] == "heuristic" and autotune.enabled():
        name = autotune.maybe_tune(family, gpu, problem, sizes, run=run)
        if name:
            return select(family, gpu, sizes, run, **problem)  # the table now has it (version bumped)
    return hit[0]


def heuristic_config(family: str, problem: dict):
    """The untuned default for a problem (also what sweeps rank as `default`)."""
    return families.get(family).heuristic(problem)
