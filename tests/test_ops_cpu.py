"""CPU tests of the op layer: input validation messages, and the C ABI of the
kernel objects (loaded without a GPU: only host code runs)."""
import ctypes

import pytest
import torch

import cudadent42
from cudadent42.ops.attention import _FwdArgs, check_fwd_inputs


def t(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, dtype=dtype)


def test_import_needs_no_gpu_and_reports_none():
    assert cudadent42.hopper_available() in (False, True)


def test_attention_input_errors_are_clear():
    q = t(1, 16, 4, 64)
    with pytest.raises(TypeError, match="bfloat16 or float16"):
        check_fwd_inputs(q.float(), q.float(), q.float(), False)
    with pytest.raises(TypeError, match="share a dtype"):
        check_fwd_inputs(q, q.half(), q, False)
    with pytest.raises(ValueError, match="head dim 80 is not supported"):
        x = t(1, 16, 4, 80)
        check_fwd_inputs(x, x, x, False)
    with pytest.raises(ValueError, match="multiple of key/value heads"):
        check_fwd_inputs(t(1, 16, 6, 64), t(1, 16, 4, 64), t(1, 16, 4, 64), False)
    with pytest.raises(ValueError, match="contiguous last dim"):
        x = t(1, 16, 4, 128)[..., ::2]
        check_fwd_inputs(x, x, x, False)
    with pytest.raises(ValueError, match="multiple of 8 elements"):
        x = t(1, 16, 4, 68)[..., :64]
        check_fwd_inputs(x, x, x, False)
    with pytest.raises(ValueError, match="batch sizes differ"):
        check_fwd_inputs(q, t(2, 16, 4, 64), t(2, 16, 4, 64), False)


def test_attention_on_cpu_tensors_says_it_needs_a_gpu():
    q = t(1, 16, 4, 64)
    with pytest.raises(cudadent42.UnsupportedDeviceError, match="CUDA device"):
        cudadent42.flash_attn_func(q, q, q)


@pytest.mark.parametrize("scale", [-0.125, float("nan"), float("inf")])
def test_attention_rejects_a_negative_or_non_finite_scale(scale):
    q = t(1, 16, 4, 64)
    with pytest.raises(ValueError, match="softmax_scale must be a finite number >= 0"):
        cudadent42.flash_attn_func(q, q, q, softmax_scale=scale)


def test_gemm_on_cpu_tensors_says_it_needs_a_gpu():
    a = t(64, 64)
    with pytest.raises(cudadent42.UnsupportedDeviceError, match="CUDA device"):
        cudadent42.gemm(a, a)
    with pytest.raises(ValueError, match="multiples of 8"):
        cudadent42.gemm(t(64, 60), t(60, 64))


@pytest.fixture(scope="module")
def attn_kernel(tmp_path_factory):
    import os

    from cudadent42.configs.defaults import default_configs
    from cudadent42.jit import load

    os.environ["CUDADENT42_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return load(next(c for c in default_configs("attn-fwd") if c.head_dim == 64 and c.mask == "none"))
    finally:
        os.environ.pop("CUDADENT42_CACHE_DIR")


@pytest.mark.compile
def test_attention_args_struct_matches_the_c_abi(attn_kernel):
    size = attn_kernel.fn("cd42_attn_fwd_args_size", ctypes.c_int, [])()
    assert size == ctypes.sizeof(_FwdArgs)


@pytest.mark.compile
@pytest.mark.parametrize("batch,seqlen,heads,expected", [
    # 4096 tiles of 32 key blocks on 132 SMs: 4 left for the last wave, cut
    # into 32 items of 4 blocks (8 pieces per tile): 1 + 4 counters and
    # 4 tiles x 8 slots x (32 + 4 floats) x 256 threads of workspace.
    (4, 4096, 32, (5, 4 * 8 * 36 * 256)),
    (1, 128, 132, (1, 0)),    # tiles fill the waves exactly: nothing to split
    (4, 512, 32, (1, 0)),     # 4 key blocks per tile: pieces would be as long as tiles
    (1, 2048, 8, (1, 0)),     # 128 tiles of 16 blocks on 132 SMs: items save too little
])
def test_attention_split_tail_sizes(attn_kernel, batch, seqlen, heads, expected):
    """The split tail's plan (split_tail.hpp) as the Python side sees it: how
    many tile counters to zero and how much workspace the launch needs."""
    sizes_fn = attn_kernel.fn("cd42_attn_fwd_split_sizes", None, [ctypes.POINTER(_FwdArgs), ctypes.POINTER(ctypes.c_int64)])
    a = _FwdArgs()
    a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.num_sms = batch, heads, heads, seqlen, seqlen, 132
    sizes = (ctypes.c_int64 * 2)()
    sizes_fn(ctypes.byref(a), sizes)
    assert (sizes[0], sizes[1]) == expected


@pytest.mark.compile
def test_attention_host_checks_reject_bad_arguments_without_launching(attn_kernel):
    launch = attn_kernel.fn("cd42_attn_fwd_launch", ctypes.c_int, [ctypes.POINTER(_FwdArgs), ctypes.c_void_p])
    a = _FwdArgs()  # zero sizes: rejected before any CUDA call
    rc = launch(ctypes.byref(a), None)
    assert rc == 10001
    msg = attn_kernel.fn("cd42_last_error", ctypes.c_char_p, [])().decode()
    assert "bad sizes" in msg


def test_backward_input_errors_are_clear():
    from cudadent42.ops.attention_bwd import attn_bwd

    q = t(1, 16, 4, 64)
    lse = torch.zeros(1, 4, 16)
    with pytest.raises(ValueError, match="varlen needs all of"):
        attn_bwd(q, q, q, q, q, lse, cu_seqlens_q=torch.tensor([0, 16], dtype=torch.int32))
    with pytest.raises(ValueError, match="lse must be float32 of shape"):
        attn_bwd(q, q, q, q, q, lse[:, :, :8])
    with pytest.raises(ValueError, match="out .* and dout .* must match q"):
        attn_bwd(q[:, :8], q, q, q, q, lse)
    p = t(16, 4, 64)  # packed varlen tensors
    cu = torch.tensor([0, 10, 16], dtype=torch.int32)
    with pytest.raises(ValueError, match="cu_seqlens_q must be a contiguous 1-D int32"):
        attn_bwd(p, p, p, p, p, torch.zeros(4, 16), cu_seqlens_q=cu.long(), cu_seqlens_k=cu, max_seqlen_q=10,
                 max_seqlen_k=10)
    with pytest.raises(ValueError, match=r"lse must be float32 of shape \(4, 16\)"):
        attn_bwd(p, p, p, p, p, lse, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=10, max_seqlen_k=10)
    with pytest.raises(cudadent42.UnsupportedDeviceError, match="CUDA device"):
        attn_bwd(p, p, p, p, p, torch.zeros(4, 16), cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=10,
                 max_seqlen_k=10)


def test_backward_cta_groups_are_about_one_wave():
    from cudadent42.ops.attention_bwd import _tile_group

    assert _tile_group(64, 32, 132) == 4  # S=4096, 128 keys per CTA: 4 (head, batch) pairs per wave
    assert _tile_group(128, 16, 132) == 8
    assert _tile_group(16, 128, 132) == 1  # long sequences: one pair already fills a wave
    assert _tile_group(2, 1, 132) == 2  # never more pairs than exist
