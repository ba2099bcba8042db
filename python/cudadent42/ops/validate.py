"""Argument checks shared by every public op: each rule is written once here.

Every error names the op (`who`), the argument, what was given and what is
accepted. Wrong kinds of object raise TypeError, wrong values ValueError.
The checks read only shapes, strides, dtypes, devices and Python scalars, so
they run on CPU and meta tensors (before any CUDA requirement) and trace
under torch.compile; data pointers are checked at launch (ops' launch code).
"""
from __future__ import annotations

import math
import numbers

import torch

INT32_MAX = (1 << 31) - 1


def _kind(x) -> str:
    return type(x).__name__


def tensor(who: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor, got {_kind(t)}")


def rank(who: str, name: str, t: torch.Tensor, dims: int, layout: str = "") -> None:
    if t.dim() != dims:
        what = f" {layout}" if layout else ""
        raise ValueError(f"{who}: {name} must have {dims} dims{what}, got shape {tuple(t.shape)}")


def dtype_in(who: str, name: str, t: torch.Tensor, allowed: tuple, words: str) -> None:
    if t.dtype not in allowed:
        raise TypeError(f"{who}: {name} must be {words}, got {t.dtype}")


def same_dtype(who: str, names: str, ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{who}: {names} must share a dtype, got {ref.dtype} ({ref_name}) and {t.dtype} ({name})")


def same_device(who: str, ref_name: str, ref: torch.Tensor, name: str, t: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{who}: {ref_name} is on {ref.device} but {name} is on {t.device}")


def tma_strides(who: str, name: str, t: torch.Tensor) -> None:
    """Last dim contiguous, every other stride a multiple of 8 elements (16 bytes for 2-byte types: TMA)."""
    if t.numel() and t.stride(-1) != 1:
        raise ValueError(f"{who}: {name} must have a contiguous last dim, got strides {t.stride()}")
    for d in range(t.dim() - 1):
        if t.shape[d] > 1 and t.stride(d) % 8:
            raise ValueError(f"{who}: {name} stride {t.stride(d)} of dim {d} is not a multiple of 8 elements "
                             "(TMA needs 16-byte aligned strides); call .contiguous() first")


def real(who: str, name: str, x) -> float:
    """A Python/NumPy real number (not a bool, a tensor or a string) as float."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {_kind(x)} {x!r}")
    return float(x)


def finite_nonneg(who: str, name: str, x, why: str = "") -> float:
    v = real(who, name, x)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{who}: {name} must be a finite number >= 0, got {x}{why}")
    return v


def flag(who: str, name: str, x) -> bool:
    """bool (or a NumPy bool / 0 / 1): never a string or None, whose truthiness would hide a mistake."""
    if isinstance(x, bool) or (isinstance(x, numbers.Integral) and x in (0, 1)):
        return bool(x)
    if type(x).__name__ == "bool_":  # numpy.bool_ without importing numpy
        return bool(x)
    raise TypeError(f"{who}: {name} must be a bool, got {_kind(x)} {x!r}")


def optional_flag(who: str, name: str, x) -> bool | None:
    return None if x is None else flag(who, name, x)


def integer(who: str, name: str, x, lo: int = 0, hi: int = INT32_MAX) -> int:
    """An int in [lo, hi] (the kernels' ABI holds int32); a torch.SymInt (torch.compile) passes as is."""
    if isinstance(x, torch.SymInt):
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int, got {_kind(x)} {x!r}")
    if x < lo:
        raise ValueError(f"{who}: {name} must be >= {lo}, got {x}")
    if x > hi:
        raise ValueError(f"{who}: {name} must be <= {hi}, got {x}")
    return int(x)


def window(who: str, window_size) -> tuple[int, int]:
    """(left, right) ints; any negative side means unbounded (FlashAttention's convention)."""
    if not isinstance(window_size, (tuple, list)) or len(window_size) != 2:
        raise TypeError(f"{who}: window_size must be a (left, right) pair of ints (-1: unbounded), got "
                        f"{window_size!r}")
    left, right = window_size
    for side, x in (("left", left), ("right", right)):
        if isinstance(x, bool) or not isinstance(x, numbers.Integral):
            raise TypeError(f"{who}: window_size {side} must be an int (-1: unbounded), got {_kind(x)} {x!r}")
    return int(left), int(right)


def head_dim(who: str, d: int, supported: tuple) -> None:
    if d not in supported:
        raise ValueError(f"{who}: head dim {d} is not supported (supported: {', '.join(map(str, supported))})")


def cu_seqlens(who: str, name: str, c, device) -> None:
    """Varlen offsets: a contiguous 1-D int32 tensor with batch + 1 >= 1 entries on q's device."""
    tensor(who, name, c)
    want = f"{who}: {name} must be a contiguous 1-D int32 tensor on {device}"
    if c.dtype != torch.int32:
        raise ValueError(f"{want}; got dtype {c.dtype}")
    if c.dim() != 1 or c.shape[0] < 1:
        raise ValueError(f"{want} with batch + 1 >= 1 entries; got shape {tuple(c.shape)}")
    if c.device != device:
        raise ValueError(f"{want}; got device {c.device}")
    if c.stride(0) != 1:
        raise ValueError(f"{want}; got stride {c.stride(0)}")


def config_arg(who: str, config, cls):
    """None/'' (choose), a config name, or an instance of `cls`; returns None or a `cls` instance."""
    if config is None or config == "":
        return None
    if isinstance(config, cls):
        return config.validate()  # ConfigError for a config that cannot be built (as from_name)
    if isinstance(config, str):
        return cls.from_name(config)  # ConfigError (a ValueError) names what is wrong
    raise TypeError(f"{who}: config must be None, a config name or a {cls.__name__}, got {_kind(config)}")
