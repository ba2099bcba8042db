"""C argument structs vs their ctypes mirrors, field by field: the argument headers compiled alone
with the host compiler (no CUDA, no GPU) into a small shared object that exports their layouts."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from cudadent42.jit import AbiMismatchError, LoadedKernel, check_abi, toolchain
from cudadent42.jit.abi import c_layout, compare, ctypes_layout
from cudadent42.ops.attention import _FwdArgs
from cudadent42.ops.attention_bwd import _BwdArgs, _PreArgs

HEADERS = ("kernels/attention/fwd_args.h", "kernels/attention/bwd_args.h")
MIRRORS = {"cd42_attn_fwd_args": _FwdArgs, "cd42_attn_bwd_args": _BwdArgs, "cd42_attn_bwd_pre_args": _PreArgs}


def _compile(csrc: Path, out: Path) -> ctypes.CDLL:
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no host C++ compiler")
    src = out.with_suffix(".cpp")
    src.write_text("".join(f'#include "{h}"\n' for h in HEADERS))
    cmd = [cxx, "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", f"-I{csrc}", str(src), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return ctypes.CDLL(str(out), mode=ctypes.RTLD_LOCAL)


@pytest.fixture(scope="module")
def abi_lib(tmp_path_factory):
    return _compile(toolchain.csrc_dir(), tmp_path_factory.mktemp("abi") / "abi_headers.so")


@pytest.mark.parametrize("struct_name", sorted(MIRRORS))
def test_ctypes_mirror_matches_the_header(abi_lib, struct_name):
    c = c_layout(abi_lib, struct_name)
    py = ctypes_layout(MIRRORS[struct_name], struct_name)
    assert c == py  # names, order, offsets, sizes and the total size


def test_check_abi_on_a_loaded_kernel(abi_lib, tmp_path):
    kernel = LoadedKernel("abi_headers", tmp_path, {}, abi_lib)
    check_abi(kernel, **MIRRORS)


def _variant(base, name, fields):
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def _swapped(fields, a, b):
    out = list(fields)
    i = [f[0] for f in out].index(a)
    j = [f[0] for f in out].index(b)
    out[i], out[j] = out[j], out[i]
    return out


_FWD = list(_FwdArgs._fields_)
# (ctypes fields of a broken cd42_attn_fwd_args mirror, message fragment)
BROKEN = [
    (_swapped(_FWD, "q_row_stride", "q_head_stride"), "field 'q_row_stride' is at offset 80 (8 bytes) in C but at "
                                                      "offset 88 (8 bytes) in ctypes"),
    ([(n, ctypes.c_int32 if n == "num_sms" else t) for n, t in _FWD[:-1]] + [("num_sms", ctypes.c_int64)],
     "the struct is 216 bytes in C but 224 in ctypes"),
    ([(n, ctypes.c_int64 if n == "batch" else t) for n, t in _FWD[:-1]], "field 'batch' is at offset 168 (4 bytes)"),
    ([f for f in _FWD if f[0] != "softcap"] + [("pad", ctypes.c_float)], "field 'softcap'"),
    ([("window_lft" if n == "window_left" else n, t) for n, t in _FWD], "field 'window_left'"),
]


@pytest.mark.parametrize("fields,fragment", BROKEN, ids=range(len(BROKEN)))
def test_a_broken_mirror_is_refused(abi_lib, tmp_path, fields, fragment):
    broken = _variant(_FwdArgs, "_BrokenFwdArgs", fields)
    kernel = LoadedKernel("attn_fwd_test_config", tmp_path, {}, abi_lib)
    with pytest.raises(AbiMismatchError) as ei:
        check_abi(kernel, cd42_attn_fwd_args=broken)
    msg = str(ei.value)
    assert fragment in msg and "'attn_fwd_test_config'" in msg and "_BrokenFwdArgs" in msg, msg


def test_swapping_two_int64_fields_in_the_header_is_caught(tmp_path):
    """The by-hand proof kept as a test: edit the header (not the mirror) and the check fails."""
    csrc = tmp_path / "csrc"
    shutil.copytree(toolchain.csrc_dir(), csrc)
    header = csrc / "kernels" / "attention" / "fwd_args.h"
    text = header.read_text()
    old = "X(int64_t, k_batch_stride) X(int64_t, k_row_stride)"
    assert old in text
    header.write_text(text.replace(old, "X(int64_t, k_row_stride) X(int64_t, k_batch_stride)"))
    lib = _compile(csrc, tmp_path / "swapped.so")
    with pytest.raises(AbiMismatchError, match="field 'k_row_stride' is at offset 96 .* in C but at offset 104"):
        compare(c_layout(lib, "cd42_attn_fwd_args"), ctypes_layout(_FwdArgs, "cd42_attn_fwd_args"),
                "cd42_attn_fwd_args", "_FwdArgs", "test")


def test_missing_export_is_a_clear_error(abi_lib, tmp_path):
    kernel = LoadedKernel("gemm_cfg", tmp_path, {}, abi_lib)
    with pytest.raises(AbiMismatchError, match="'gemm_cfg' does not export cd42_abi_fields_cd42_gemm_args"):
        check_abi(kernel, cd42_gemm_args=_FwdArgs)
