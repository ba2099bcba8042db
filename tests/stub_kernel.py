"""A stand-in for the attention kernel objects, so the op layer's call path runs without a GPU.

A small C library (built with gcc) exports the symbols of a real attention
object; each launch entry point copies the argument block it was given into
a slot (fwd, bwd preprocess, bwd, bwd postprocess) and returns 0. `install`
points jit.load and the device queries of ops/ at it: everything the Python
side does per call (checks, plans, allocations, ctypes calls) runs for real
on CPU tensors. Used by tests/test_eager_path.py and benchmarks/host_overhead_cpu.py.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

STUB_C = r"""
#include <stdint.h>
#include <string.h>
static unsigned char slots[4][1024];
static int calls[4];
static int record(int i, void const* a, int n) { memcpy(slots[i], a, n); calls[i]++; return 0; }
int cd42_attn_fwd_launch(void const* a, void* s) { return record(0, a, FWD_SIZE); }
void cd42_attn_fwd_split_sizes(void const* a, int64_t* sizes) { sizes[0] = 1; sizes[1] = 0; }
int cd42_attn_fwd_args_size(void) { return FWD_SIZE; }
int cd42_attn_bwd_preprocess_launch(void const* a, void* s) { return record(1, a, PRE_SIZE); }
int cd42_attn_bwd_launch(void const* a, void* s) { return record(2, a, BWD_SIZE); }
int cd42_attn_bwd_postprocess_launch(void const* a, void* s) { return record(3, a, BWD_SIZE); }
int cd42_attn_bwd_args_size(void) { return BWD_SIZE; }
int cd42_attn_bwd_pre_args_size(void) { return PRE_SIZE; }
char const* cd42_last_error(void) { return "stub"; }
int stub_calls(int i) { return calls[i]; }
void stub_last(int i, void* dst, int n) { memcpy(dst, slots[i], n); }
"""

H100 = "NVIDIA H100 80GB HBM3"
FWD, PRE, BWD, POST = range(4)


def available() -> bool:
    return shutil.which("gcc") is not None


class StubKernel:
    def __init__(self, lib, cfg):
        self.lib, self.name, self.cfg = lib, cfg.name, cfg

    def fn(self, symbol, restype, argtypes):
        f = getattr(self.lib, symbol)
        f.restype, f.argtypes = restype, argtypes
        return f


class Stub:
    """The loaded library plus readers of what the last launches received."""

    def __init__(self, lib):
        self.lib = lib
        self.loaded = []  # configs jit.load was asked for

    def calls(self, slot: int) -> int:
        return self.lib.stub_calls(slot)

    def last(self, slot: int, struct):
        out = struct()
        self.lib.stub_last(slot, ctypes.byref(out), ctypes.sizeof(struct))
        return out


def build_library():
    import cudadent42.ops.attention as fwd
    import cudadent42.ops.attention_bwd as bwd
    from cudadent42.jit.abi import ctypes_layout

    d = tempfile.mkdtemp(prefix="cd42_stub_")
    src, so = os.path.join(d, "stub.c"), os.path.join(d, "stub.so")
    with open(src, "w") as f:
        f.write(STUB_C)
        # The layouts a correctly built kernel exports (jit.check_abi reads them at load).
        for struct_name, struct in (("cd42_attn_fwd_args", fwd._FwdArgs), ("cd42_attn_bwd_args", bwd._BwdArgs),
                                    ("cd42_attn_bwd_pre_args", bwd._PreArgs)):
            text = ";".join(f"{n}:{o}:{z}" for n, o, z in ctypes_layout(struct, struct_name))
            f.write(f'int cd42_abi_fields_{struct_name}(char* out, int cap) {{ static char const s[] = "{text}"; '
                    f'if (out) {{ strncpy(out, s, cap); }} return (int)sizeof(s) - 1; }}\n')
    sizes = (ctypes.sizeof(fwd._FwdArgs), ctypes.sizeof(bwd._BwdArgs), ctypes.sizeof(bwd._PreArgs))
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-DFWD_SIZE=%d" % sizes[0], "-DBWD_SIZE=%d" % sizes[1],
                    "-DPRE_SIZE=%d" % sizes[2], src, "-o", so], check=True)
    return ctypes.CDLL(so)


def install(set_attr=setattr, lib=None) -> Stub:
    """Points the op layer at the stub. `set_attr` is setattr, or pytest's monkeypatch.setattr
    (undone after the test). Plans and launchers cached before are dropped."""
    import cudadent42.jit as jit
    import cudadent42.ops.attention as fwd
    import cudadent42.ops.attention_bwd as bwd
    import cudadent42.runtime as runtime

    stub = Stub(lib or build_library())

    def load(cfg, **kw):
        stub.loaded.append(cfg)
        return StubKernel(stub.lib, cfg)

    set_attr(jit, "load", load)
    for mod in (fwd, bwd, runtime):
        for name, value in (("require_hopper", lambda t, op: 132), ("gpu_name", lambda d: H100),
                            ("stream_handle", lambda d: 0), ("raw_stream", lambda i: 0),
                            ("eager_ok", lambda d: d.type in ("cpu", "cuda")), ("device_index", lambda d: 0)):
            if hasattr(mod, name):
                set_attr(mod, name, value)
    for mod in (fwd, bwd):
        for name in ("_launchers", "_flash_plans", "_varlen_plans", "_sdpa_plans", "_op_plans", "_api_plans"):
            if hasattr(mod, name):
                set_attr(mod, name, {})
    return stub
