"""Check a ctypes argument struct against the layout its kernel object exports.

Each C argument struct is declared from one X-macro list (csrc/cute/abi_layout.h)
and its kernel object exports `cd42_abi_fields_<struct>`, the name, offset and
size of every field. `check_abi` compares that with the ctypes mirror, field by
field, once when an op loads a kernel (never per call).
"""
from __future__ import annotations

import ctypes


class AbiMismatchError(RuntimeError):
    """A ctypes struct does not match the C struct a kernel object was built with."""


def c_layout(lib, struct_name: str, owner: str = "kernel object") -> list[tuple[str, int, int]]:
    """[(struct_name, 0, sizeof), (field, offset, size), ...] as exported by `lib` (a ctypes.CDLL)."""
    symbol = f"cd42_abi_fields_{struct_name}"
    try:
        fn = lib[symbol]
    except AttributeError:
        raise AbiMismatchError(
            f"{owner} does not export {symbol}: it predates field-by-field ABI checks or does not "
            f"use {struct_name}; rebuild it (`cudadent42 cache clear`)"
        ) from None
    fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_char_p, ctypes.c_int]
    n = fn(None, 0)
    buf = ctypes.create_string_buffer(n + 1)
    fn(buf, n + 1)
    out = []
    for item in buf.value.decode().split(";"):
        name, offset, size = item.rsplit(":", 2)
        out.append((name, int(offset), int(size)))
    return out


def ctypes_layout(struct: type[ctypes.Structure], struct_name: str) -> list[tuple[str, int, int]]:
    fields = [(name, getattr(struct, name).offset, getattr(struct, name).size) for name, *_ in struct._fields_]
    return [(struct_name, 0, ctypes.sizeof(struct)), *fields]


def compare(c: list, py: list, struct_name: str, py_name: str, owner: str) -> None:
    """Raise AbiMismatchError on the first difference (both lists as c_layout returns)."""
    where = f"{owner}: {struct_name} (C) and its ctypes mirror {py_name} disagree"
    if c[0] != py[0]:
        raise AbiMismatchError(f"{where}: the struct is {c[0][2]} bytes in C but {py[0][2]} in ctypes")
    c_fields, py_fields = c[1:], py[1:]
    py_by_name = {name: (off, size) for name, off, size in py_fields}
    for name, off, size in c_fields:
        if name not in py_by_name:
            raise AbiMismatchError(f"{where}: field {name!r} (C offset {off}, {size} bytes) is missing in ctypes")
        py_off, py_size = py_by_name[name]
        if (off, size) != (py_off, py_size):
            raise AbiMismatchError(f"{where}: field {name!r} is at offset {off} ({size} bytes) in C "
                                   f"but at offset {py_off} ({py_size} bytes) in ctypes")
    extra = sorted(set(py_by_name) - {name for name, _, _ in c_fields})
    if extra:
        raise AbiMismatchError(f"{where}: ctypes has fields {extra} that C does not")


def check_abi(kernel, **structs: type[ctypes.Structure]) -> None:
    """Check each ctypes mirror against the C struct of that name in `kernel` (a jit.LoadedKernel):
    `check_abi(kernel, cd42_attn_bwd_args=_BwdArgs, cd42_attn_bwd_pre_args=_PreArgs)`.
    Raises AbiMismatchError naming the config, the field and both offsets."""
    owner = f"kernel config {kernel.name!r}"
    for struct_name, struct in structs.items():
        layout = c_layout(kernel.lib, struct_name, owner)
        compare(layout, ctypes_layout(struct, struct_name), struct_name, struct.__name__, owner)
