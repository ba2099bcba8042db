"""Compile-smoke: JIT-build one real config of each kernel family with nvcc
(no GPU needed) and check ptxas and the SASS for the Hopper fast path."""
import pytest

from cudadent42.configs.defaults import default_configs
from cudadent42.jit import load, toolchain
from cudadent42.jit.sass import dump_sass, sass_stats

pytestmark = pytest.mark.compile


def _build(tmp_path_factory, cfg):
    try:
        toolchain.find_nvcc()
    except toolchain.ToolchainError as e:
        pytest.fail(f"compile-smoke needs nvcc: {e}")
    import os

    os.environ["CUDADENT42_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return load(cfg)
    finally:
        os.environ.pop("CUDADENT42_CACHE_DIR")


@pytest.fixture(scope="module")
def gemm_kernel(tmp_path_factory):
    return _build(tmp_path_factory, default_configs("gemm")[0])


@pytest.fixture(scope="module")
def attn_fwd_kernel(tmp_path_factory):
    # The causal hd128 default: the config training runs use most.
    cfg = next(c for c in default_configs("attn-fwd") if c.head_dim == 128 and c.mask == "causal")
    return _build(tmp_path_factory, cfg)


def test_gemm_ptxas_clean(gemm_kernel):
    meta = gemm_kernel.meta
    assert meta["spill_stores"] == 0 and meta["spill_loads"] == 0, meta
    assert not meta["c7510"] and not meta["serialized"], meta["warnings"]
    assert meta["registers"] > 0


def test_gemm_sass_has_hopper_instructions(gemm_kernel):
    stats = sass_stats(dump_sass(gemm_kernel.dir / "kernel.so"))
    assert stats["HGMMA"] > 0, "no warpgroup MMA in the SASS"
    assert stats["UTMALDG"] > 0, "no TMA loads in the SASS"
    assert stats["UTMASTG"] > 0, "no TMA store epilogue in the SASS"
    assert stats["LDL"] == 0 and stats["STL"] == 0, "local memory traffic (spills / dynamic register indexing)"
    assert stats["USETMAXREG"] > 0, "setmaxnreg missing: producer/consumer register split not applied"


def test_attn_fwd_ptxas_clean(attn_fwd_kernel):
    meta = attn_fwd_kernel.meta
    assert meta["spill_stores"] == 0 and meta["spill_loads"] == 0, meta
    assert not meta["c7510"] and not meta["serialized"], meta["warnings"]
    assert meta["arrives_injected"] == 0, "ptxas injected warpgroup.arrive (C7519): an operand is not fenced"


def test_attn_fwd_sass_has_hopper_instructions(attn_fwd_kernel):
    stats = sass_stats(dump_sass(attn_fwd_kernel.dir / "kernel.so"))
    assert stats["HGMMA"] > 0 and stats["UTMALDG"] > 0 and stats["UTMASTG"] > 0, stats
    assert stats["LDL"] == 0 and stats["STL"] == 0, "local memory traffic in the attention kernel"
    assert stats["USETMAXREG"] > 0


# The D=128 default, the D=64 default (128 query rows per step) and the
# softcap variant (its tanh derivative is live from P^T to dS^T).
@pytest.fixture(scope="module", params=["attn_bwd_bf16_hd128_m64_n128_st2_causal",
                                        "attn_bwd_bf16_hd64_m128_n128_st2_causal",
                                        "attn_bwd_bf16_hd128_m64_n128_st2_causal_softcap",
                                        "attn_bwd_bf16_hd256_m64_n64_st2_causal",
                                        "attn_bwd_bf16_hd192_m64_n64_st2_local_varlen"])
def attn_bwd_kernel(tmp_path_factory, request):
    from cudadent42.configs.attention_bwd import AttnBwdConfig

    return _build(tmp_path_factory, AttnBwdConfig.from_name(request.param))


def test_attn_bwd_ptxas_clean_and_hopper_sass(attn_bwd_kernel):
    meta = attn_bwd_kernel.meta
    assert meta["spill_stores"] == 0 and meta["spill_loads"] == 0, meta
    assert not meta["c7510"] and not meta["serialized"], meta["warnings"]
    assert meta["arrives_injected"] == 0, "ptxas injected warpgroup.arrive (C7519): an operand is not fenced"
    stats = sass_stats(dump_sass(attn_bwd_kernel.dir / "kernel.so"))
    assert stats["HGMMA"] > 0 and stats["UTMALDG"] > 0, stats
    assert stats["LDL"] == 0 and stats["STL"] == 0, "local memory traffic in the attention backward"
    assert stats["USETMAXREG"] > 0


def test_attn_bwd_abi_and_host_checks(attn_bwd_kernel):
    import ctypes

    from cudadent42.ops.attention_bwd import _BwdArgs, _PreArgs

    assert attn_bwd_kernel.fn("cd42_attn_bwd_args_size", ctypes.c_int, [])() == ctypes.sizeof(_BwdArgs)
    launch = attn_bwd_kernel.fn("cd42_attn_bwd_launch", ctypes.c_int, [ctypes.POINTER(_BwdArgs), ctypes.c_void_p])
    pre = attn_bwd_kernel.fn("cd42_attn_bwd_preprocess_launch", ctypes.c_int,
                             [ctypes.POINTER(_PreArgs), ctypes.c_void_p])
    last_error = attn_bwd_kernel.fn("cd42_last_error", ctypes.c_char_p, [])
    assert attn_bwd_kernel.fn("cd42_attn_bwd_pre_args_size", ctypes.c_int, [])() == ctypes.sizeof(_PreArgs)
    assert launch(ctypes.byref(_BwdArgs()), None) == 10001 and b"bad sizes" in last_error()
    p = _PreArgs()
    p.batch, p.heads, p.seqlen_q, p.seqlen_q_pad, p.head_dim = 1, 1, 100, 100, 128  # pad not a multiple of 64
    assert pre(ctypes.byref(p), None) == 10001 and b"bad sizes" in last_error()
