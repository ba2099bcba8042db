"""Every environment variable cudadent42 reads, with one typed parser per kind.

`VARS` is the single table: the README's "Environment variables" section and
`cudadent42 info` print it, and `get(name)` is the only way the package reads
a variable. A value its kind does not accept raises `EnvError` naming the
variable, the value given and what is accepted; nothing falls back silently.
Unset and empty (or all-blank) values mean the default.

This module imports nothing from the package, so every layer may use it.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shlex
from pathlib import Path


class EnvError(ValueError):
    """An environment variable holds a value its kind does not accept."""


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError


def _pos_int(text: str) -> int:
    value = int(text.strip())  # "8.0", "nan", "inf" raise here
    if value < 1:
        raise ValueError
    return value


def _pos_float(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value) or value <= 0:
        raise ValueError
    return value


def _path(text: str) -> Path:
    path = os.path.expanduser(text)
    # os.path.expanduser leaves "~nosuchuser/x" unchanged; a folder literally
    # named "~nosuchuser" under the working directory is never what was meant.
    if path.startswith("~"):
        raise ValueError
    return Path(path)


def _flags(text: str) -> tuple[str, ...]:
    return tuple(shlex.split(text))  # ValueError("No closing quotation") on bad quoting


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str  # the README's "type" column
    accepted: str  # what the error message and the README say is accepted
    parse: object  # str -> value; raises ValueError on a bad value


BOOL = Kind("bool", "1/0, true/false, yes/no, on/off (any case); empty = default", _bool)
POS_INT = Kind("positive int", "an integer >= 1", _pos_int)
POS_FLOAT = Kind("positive float", "a finite number > 0", _pos_float)
PATH = Kind("path", "a path; ~ and ~user are expanded (the user must exist)", _path)
FLAGS = Kind("flags", "nvcc flags, split as a POSIX shell would (quotes must be closed)", _flags)


@dataclasses.dataclass(frozen=True)
class Var:
    name: str
    kind: Kind
    default: object  # returned for unset/empty; None = "not set"
    default_text: str  # the README's "default" column
    meaning: str


_VARS = (
    Var("CUDADENT42_CACHE_DIR", PATH, None, "`~/.cache/cudadent42`", "Kernel cache folder."),
    Var("CUDADENT42_NVCC", PATH, None, "unset",
        "The nvcc to use; must be an executable (overrides CUDA_HOME, CUDA_PATH and PATH)."),
    Var("CUDA_HOME", PATH, None, "unset",
        "CUDA toolkit root; if set, its bin/nvcc must exist and is used (after CUDADENT42_NVCC). "
        "Unset: nvcc on PATH, then /usr/local/cuda/bin/nvcc."),
    Var("CUDA_PATH", PATH, None, "unset", "Alternative name for CUDA_HOME (read when CUDA_HOME is unset)."),
    Var("CUDADENT42_NVCC_FLAGS", FLAGS, (), "empty",
        "Extra nvcc flags appended to every build; part of the cache key."),
    Var("CUDADENT42_CUTLASS_DIR", PATH, None, "the `nvidia-cutlass` wheel's headers",
        "CUTLASS checkout root to use instead of the nvidia-cutlass wheel."),
    Var("CUDADENT42_BUILD_TIMEOUT_S", POS_FLOAT, 900.0, "900",
        "Seconds one nvcc build may take; then nvcc's whole process group is killed and the build fails."),
    Var("CUDADENT42_ALLOW_UNCLEAN", BOOL, False, "off",
        "Accept kernels with register spills or serialized wgmma (ptxas C7510); experiments only."),
    Var("CUDADENT42_JIT_DEBUG", BOOL, False, "off",
        "Print each nvcc command and ptxas summary; keep PTX/cubin in the cache entry."),
    Var("CUDADENT42_AUTOTUNE", BOOL, False, "off",
        "Tune an untuned problem class on first use and persist the winner."),
    Var("CUDADENT42_AUTOTUNE_POINTS", POS_INT, 8, "8", "Configs in that first-use sweep."),
    Var("CUDADENT42_AUTOTUNE_BUDGET_S", POS_FLOAT, 120.0, "120", "Seconds of timing in that first-use sweep."),
    Var("CUDADENT42_NVTX", BOOL, False, "off", "An NVTX range named after the config around every launch."),
)
VARS: dict[str, Var] = {v.name: v for v in _VARS}

# (name, raw text) -> parsed value: kernel_range reads CUDADENT42_NVTX on every
# launch, so a repeated read costs one dict lookup, as os.environ.get did.
_parsed: dict[tuple[str, str], object] = {}


def get(name: str):
    """The variable's value parsed by its kind, or its default when unset/empty."""
    var = VARS[name]  # KeyError: a variable missing from the table is a bug here
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return var.default
    hit = _parsed.get((name, raw), _parsed)
    if hit is not _parsed:
        return hit
    try:
        value = var.kind.parse(raw)
    except ValueError:
        raise EnvError(f"{name}={raw!r} is not a valid {var.kind.name} value; accepted: {var.kind.accepted}") from None
    _parsed[(name, raw)] = value
    return value


def raw(name: str) -> str | None:
    """The variable's text as set (None when unset), for messages and `cudadent42 info`."""
    VARS[name]
    return os.environ.get(name)


def markdown_table() -> str:
    """The README's table (tests check the README holds exactly this)."""
    rows = ["| variable | type | default | accepted values | meaning |", "| --- | --- | --- | --- | --- |"]
    for v in _VARS:
        rows.append(f"| `{v.name}` | {v.kind.name} | {v.default_text} | {v.kind.accepted} | {v.meaning} |")
    return "\n".join(rows)
