"""Kernel families: one module each (gemm.py, attn_fwd.py, attn_bwd.py, ...),
registered at import. `get(name)`, `all()`, `names()` are the registry's API
(registry.py). Every module of this package other than registry.py is a
family and is imported here, so a new family is one new file."""
import importlib
import pkgutil

from .registry import Case, Family, Problem, all, get, names, register, resolve  # noqa: A004

for _m in pkgutil.iter_modules(__path__):  # sorted by file name
    if _m.name != "registry" and not _m.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_m.name}")

# all() is left out of __all__: a star import would hide the builtin.
__all__ = ["Case", "Family", "Problem", "get", "names", "register", "resolve"]
