"""What a kernel family declares, and the registry the rest of the package iterates.

Selection (configs/select.py), the tuned table, sweeps, autotuning, profiling,
the default-config list and the CLI look a family up by name here and never
name one themselves. A family module (families/<name>.py) builds one `Family`
and calls `register` at import; families/__init__.py imports every module of
the package, so adding a family needs no edit here or there.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

Problem = dict  # field name -> value: the problem fields select() receives, plus the sizes of a sweep
Case = dict  # inputs built for one problem (tensors and the call's keyword arguments), see Family.make_case


@dataclass(frozen=True)
class Family:
    name: str  # "gemm", "attn-fwd", ...: the CLI argument, the table key prefix, config.family
    config_class: type  # frozen dataclass with name / from_name / validate / render
    # Fields of the problem that pick a kernel (select()'s keywords and the
    # tuned-table key); `fixed_fields` of them are also config fields (a sweep
    # holds them fixed); `size_fields` only shape a sweep's inputs.
    problem_fields: tuple[str, ...]
    fixed_fields: tuple[str, ...]
    size_fields: tuple[str, ...]
    problem_defaults: Problem  # a full sweep problem (problem + size fields): the CLI's defaults
    table_key: Callable[[Problem], str]  # stable key of a problem class (sizes bucketed)
    heuristic: Callable[[Problem], Any]  # the untuned default config
    space: dict  # tunable config field -> every value the kernel accepts (validate() prunes)
    flops: Callable[[Problem], float]  # of one call on a sweep problem
    make_case: Callable[[Problem], Case]  # random inputs on the GPU for a sweep problem
    reference: Callable[[Case, bool], Any]  # (case, upcast) -> the reference output(s) of run()
    # "module:function" of the op layer's run(config, case) -> output, for the
    # entry points that must find it by name (the CLI, the ncu target process).
    runner: str
    kernel_regex: str  # substring of the kernel's function name (ncu --kernel-name filter)
    default_configs: Callable[[], list]  # what `cudadent42 build` pre-builds and CI checks
    # The problem autotuning times for a call (its problem + sizes), or None when
    # the variant is not tunable on first use.
    tuning_problem: Callable[[Problem, dict], Problem | None] = lambda problem, sizes: None
    # "module:attribute" of the ctypes mirrors of the kernel's C argument structs.
    c_structs: tuple[str, ...] = field(default=())

    def config_from_name(self, name: str):
        return self.config_class.from_name(name)

    def check_problem(self, problem: Problem, fields: tuple[str, ...] | None = None) -> None:
        """ValueError naming the missing / unknown fields of `problem` (default: problem_fields)."""
        want = set(fields if fields is not None else self.problem_fields)
        missing, unknown = want - set(problem), set(problem) - want
        if missing or unknown:
            parts = ([f"missing {', '.join(sorted(missing))}"] if missing else []) + (
                [f"unknown {', '.join(sorted(unknown))}"] if unknown else [])
            raise ValueError(f"{self.name} problem: {'; '.join(parts)} (fields: {', '.join(sorted(want))})")


def pow2_bucket(x: int) -> int:
    """Smallest power of two >= x (>= 1): table keys bucket sizes so one sweep covers its neighbourhood."""
    b = 1
    while b < x:
        b *= 2
    return b


_families: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in _families and _families[family.name] is not family:
        raise ValueError(f"kernel family {family.name!r} is registered twice")
    if getattr(family.config_class, "family", None) != family.name:
        raise ValueError(f"{family.config_class.__name__}.family must be {family.name!r}")
    unknown = set(family.fixed_fields) - set(family.problem_fields)
    if unknown:
        raise ValueError(f"{family.name}: fixed fields {sorted(unknown)} are not problem fields")
    _families[family.name] = family
    return family


def names() -> list[str]:
    return list(_families)


def get(name) -> Family:
    """The family called `name` (a Family passes through); ValueError listing the known ones."""
    if isinstance(name, Family):
        return name
    try:
        return _families[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown family {name!r}; known families: {', '.join(_families)}") from None


def all() -> list[Family]:  # noqa: A001 - the registry's API: families.all()
    return list(_families.values())


def resolve(ref: str):
    """The object named by "package.module:attribute" (a family's runner or C struct), imported on
    demand: for the entry points above the op layer (the CLI, the ncu target process)."""
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"not a 'module:attribute' reference: {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
