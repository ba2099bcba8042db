"""Tune a problem class on first use (CUDADENT42_AUTOTUNE=1 or autotune=True).

On a tuned-table miss, select() calls `maybe_tune`: a small sweep (at most
CUDADENT42_AUTOTUNE_POINTS configs, default 8, the heuristic's among them)
on the call's own problem, bounded by CUDADENT42_AUTOTUNE_BUDGET_S seconds
(default 120) of timing, whose winner is persisted in the user's tuned table
(table.record: locked, atomic) and used from then on, in this process and
later ones. Each problem class is tried once per process, success or not.

Tuning never runs while torch.compile traces or a CUDA graph is captured
(it launches and synchronizes); those calls use the table or heuristic.
Varlen and sliding-window attention are not tuned (the sweep times dense
problems only).
"""
from __future__ import annotations

import threading
import time
import warnings

import torch

from .. import env, families
from . import sweep, table

ENV = "CUDADENT42_AUTOTUNE"
_local = threading.local()  # autotune=True from an API call, for the duration of that call
_tried: set = set()
_lock = threading.Lock()


class requested:
    """Context manager: `autotune=` argument of an API call (None: leave the env var in charge)."""

    def __init__(self, flag: bool | None):
        self.flag = flag

    def __enter__(self):
        self.prev = getattr(_local, "flag", None)
        if self.flag is not None:
            _local.flag = self.flag

    def __exit__(self, *exc):
        _local.flag = self.prev


def enabled() -> bool:
    flag = getattr(_local, "flag", None)
    return flag if flag is not None else env.get(ENV)


def safe_now() -> bool:
    """False while torch.compile traces or a CUDA graph is being captured."""
    if torch.compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def tuning_problem(family: str, problem: dict, sizes: dict) -> dict | None:
    """The sweep problem for this call (the family's tuning_problem), or None if the variant is not
    tunable on first use. Attention caps batch x heads so the fp32 reference check stays small."""
    return families.get(family).tuning_problem(problem, sizes)


def maybe_tune(family: str, gpu: str, problem: dict, sizes: dict | None, log=None, run=None) -> str | None:
    """Config name of a fresh tuning run for this problem class, or None (not enabled, not safe
    now, already tried, not tunable, or nothing correct was timed). `run` is the op's
    run(config, case) that the sweep times (families/registry.py)."""
    if sizes is None or not enabled() or not safe_now():
        return None
    # Read before the class is marked tried: a bad value raises on every call, not once.
    budget = env.get("CUDADENT42_AUTOTUNE_BUDGET_S")
    points = env.get("CUDADENT42_AUTOTUNE_POINTS")
    key = (gpu, table.problem_key(family, **problem))
    with _lock:
        if key in _tried:
            return None
        _tried.add(key)
    tp = tuning_problem(family, problem, sizes)
    if tp is None:
        return None
    say = log or (lambda msg: None)
    warnings.warn(f"cudadent42: autotuning {key[1]} on {gpu} (up to {points} configs, {budget:.0f} s of timing; "
                  f"{ENV}=0 turns this off)", stacklevel=4)
    try:
        best = sweep.tune(family, tp, run=run, limit=points, deadline=time.time() + budget, log=say)
    except Exception as e:  # noqa: BLE001 - tuning must never break the call that triggered it
        warnings.warn(f"cudadent42: autotuning {key[1]} failed ({e}); using the heuristic", stacklevel=4)
        return None
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the sweep's reference tensors
    return best["config"] if best else None


def forget() -> None:
    """Tests: allow problem classes to be tuned again in this process."""
    with _lock:
        _tried.clear()
