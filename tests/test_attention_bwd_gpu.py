"""Attention backward v1 (ops/attention_bwd.attn_bwd) vs float32 autograd
through the reference, with the tolerance rule of GUIDE.md section 5 for
each of dq, dk, dv."""
import zlib

import pytest
import torch

from cudadent42 import flash_attn_func, flash_attn_varlen_func
from cudadent42.configs.attention_bwd import AttnBwdConfig
from cudadent42.configs.heuristics_sm90 import attn_bwd_config, attn_fwd_config
from cudadent42.ops.attention_bwd import attn_bwd
from cudadent42.reference import assert_close_to_ref
from cudadent42.reference import attention_grads as ref_grads  # fully masked rows: zero gradients, no NaN

pytestmark = pytest.mark.gpu

MASKS = ("none", "causal", "local")
HEAD_DIMS = (64, 96, 128, 192, 256)
PREBUILD = ([attn_bwd_config(dt, d, m) for dt in ("bf16", "fp16") for d in HEAD_DIMS for m in MASKS]
            + [AttnBwdConfig(head_dim=64, mask=m) for m in MASKS]  # 64-row steps at D=64 (not the default)
            + [attn_bwd_config("bf16", d, m, deterministic=True) for d in (64, 128, 256) for m in MASKS]
            + [attn_bwd_config("bf16", d, m, softcap=True) for d in (64, 128, 256) for m in ("none", "causal")]
            + [attn_bwd_config("bf16", d, m, varlen=True) for d in (64, 128, 256) for m in MASKS]
            + [attn_bwd_config("bf16", 128, "causal", deterministic=True, varlen=True)]
            + [attn_fwd_config("bf16", d, m, True, False) for d in (64, 128, 256) for m in ("none", "causal")]
            # the forwards these tests run first
            + [attn_fwd_config("bf16", d, m, False, False) for d in HEAD_DIMS for m in MASKS]
            + [attn_fwd_config("fp16", 64, "causal", False, False)]
            + [attn_fwd_config("bf16", d, m, False, True) for d in (64, 128, 256) for m in MASKS])


@pytest.fixture(autouse=True)
def per_test_seed(request):
    # Each test draws its own random inputs, the same on every run (as
    # FlashAttention's tests seed theirs). Unseeded, the rule of GUIDE.md
    # section 5 is a coin with a small bias at degenerate shapes: at
    # 113x17 with window (100, 7) only 24 rows see a key, and a float64
    # emulation of this kernel's (and FA2/FA3's) rounding points - dS in
    # bf16, dsum from the bf16 output - exceeds 2x the bf16 reference's dq
    # error on ~1% of draws (worst: 1.04x the allowed error in 100). A seeded failure is
    # reproducible and a real signal.
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


def rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device="cuda", dtype=dtype)


def check_bwd(q, k, v, causal=False, window=(-1, -1), scale=None, dout=None, config=None):
    out, lse = flash_attn_func(q, k, v, causal=causal, window_size=window, softmax_scale=scale, return_lse=True)
    dout = torch.randn_like(out) if dout is None else dout
    dq, dk, dv = attn_bwd(dout, q, k, v, out, lse, causal=causal, window_size=window, softmax_scale=scale,
                          config=config)
    torch.cuda.synchronize()
    ref = ref_grads(q, k, v, dout, causal, window, upcast=True, scale=scale)
    lowp = ref_grads(q, k, v, dout, causal, window, upcast=False, scale=scale)
    for name, got, r, lp in zip(("dq", "dk", "dv"), (dq, dk, dv), ref, lowp):
        assert got.shape == r.shape and got.dtype == q.dtype, name
        assert_close_to_ref(got, r, lp, name)
    return dq, dk, dv


SEQLENS = [(1, 1), (17, 113), (113, 17), (1000, 1000), (257, 1030)]


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("mask", ["none", "causal", "local"])
@pytest.mark.parametrize("seqlens", SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bwd_matches_reference(seqlens, mask, head_dim):
    sq, sk = seqlens
    q, k, v = rand(2, sq, 4, head_dim), rand(2, sk, 2, head_dim), rand(2, sk, 2, head_dim)
    window = (100, 7) if mask == "local" else (-1, -1)
    check_bwd(q, k, v, causal=mask == "causal", window=window)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("seqlens", SEQLENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bwd_64_row_steps_at_head_dim_64(seqlens, mask):
    # The default at D=64 steps 128 query rows; the 64-row variant stays a valid (tunable) config.
    sq, sk = seqlens
    q, k, v = rand(2, sq, 4, 64), rand(2, sk, 2, 64), rand(2, sk, 2, 64)
    window = (100, 7) if mask == "local" else (-1, -1)
    check_bwd(q, k, v, causal=mask == "causal", window=window, config=AttnBwdConfig(head_dim=64, mask=mask))


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("seqlens", [(17, 113), (1000, 1000), (257, 1030)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_bwd_softcap_matches_reference(seqlens, causal, head_dim):
    # softcap 3 on scores of std ~2: tanh is well into its curved range.
    sq, sk = seqlens
    q, k, v = rand(2, sq, 4, head_dim), rand(2, sk, 2, head_dim), rand(2, sk, 2, head_dim)
    q = q * 2  # scores of std ~2 (scale 1/sqrt(d)): many beyond the cap's linear range
    out, lse = flash_attn_func(q, k, v, causal=causal, softcap=3.0, return_lse=True)
    dout = torch.randn_like(out)
    got = attn_bwd(dout, q, k, v, out, lse, causal=causal, softcap=3.0)
    ref = ref_grads(q, k, v, dout, causal, (-1, -1), upcast=True, softcap=3.0)
    lowp = ref_grads(q, k, v, dout, causal, (-1, -1), upcast=False, softcap=3.0)
    for name, g, r, lp in zip(("dq", "dk", "dv"), got, ref, lowp):
        assert_close_to_ref(g, r, lp, f"softcap {name}")


def varlen_batch(head_dim, hq=4, hk=2):
    """Packed q, k, v (requires_grad) of 8 sequences: random lengths plus an
    empty query sequence, an exact block multiple, one row, and no keys."""
    gen = torch.Generator().manual_seed(4321 + head_dim)
    lens_q = torch.randint(1, 400, (5,), generator=gen).tolist() + [0, 128, 1]
    lens_k = torch.randint(1, 500, (5,), generator=gen).tolist() + [7, 128, 0]
    cu_q, cu_k = (torch.tensor([0] + torch.tensor(n).cumsum(0).tolist(), dtype=torch.int32, device="cuda")
                  for n in (lens_q, lens_k))
    q = rand(sum(lens_q), hq, head_dim).requires_grad_()
    k, v = (rand(sum(lens_k), hk, head_dim).requires_grad_() for _ in range(2))
    return q, k, v, cu_q, cu_k, max(lens_q), max(lens_k)


def check_varlen_grads(q, k, v, cu_q, cu_k, dout, grads, causal, window, what):
    """Each sequence's gradients against the dense reference on its slices."""
    dq, dk, dv = grads
    for b in range(cu_q.shape[0] - 1):
        qs, qe, ks, ke = cu_q[b].item(), cu_q[b + 1].item(), cu_k[b].item(), cu_k[b + 1].item()
        if qe == qs or ke == ks:  # no scores: zero gradients
            for name, g in (("dq", dq[qs:qe]), ("dk", dk[ks:ke]), ("dv", dv[ks:ke])):
                assert torch.all(g == 0), f"{what} seq {b} {name} not zero"
            continue
        args = (q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], dout[None, qs:qe], causal, window)
        ref = ref_grads(*args, upcast=True)
        lowp = ref_grads(*args, upcast=False)
        for name, got, r, lp in zip(("dq", "dk", "dv"), (dq[None, qs:qe], dk[None, ks:ke], dv[None, ks:ke]), ref, lowp):
            assert_close_to_ref(got, r, lp, f"{what} seq {b} {name}")


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("mask", MASKS)
def test_bwd_varlen_through_autograd(mask, head_dim):
    q, k, v, cu_q, cu_k, max_q, max_k = varlen_batch(head_dim)
    causal, window = mask == "causal", ((100, 7) if mask == "local" else (-1, -1))
    out = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=causal, window_size=window)
    dout = torch.randn_like(out)
    out.backward(dout)
    torch.cuda.synchronize()
    check_varlen_grads(q, k, v, cu_q, cu_k, dout, (q.grad, k.grad, v.grad), causal, window, f"varlen {mask}")


def test_bwd_varlen_deterministic():
    q, k, v, cu_q, cu_k, max_q, max_k = varlen_batch(128, hq=8, hk=2)
    out, lse = flash_attn_varlen_func(q, k, v, cu_q, cu_k, max_q, max_k, causal=True, return_lse=True)
    dout = torch.randn_like(out)
    kw = dict(causal=True, deterministic=True, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max_q,
              max_seqlen_k=max_k)
    first = attn_bwd(dout, q, k, v, out, lse, **kw)
    again = attn_bwd(dout, q, k, v, out, lse, **kw)
    for name, a, b in zip(("dq", "dk", "dv"), first, again):
        assert torch.equal(a, b), f"varlen {name} differs between deterministic runs"
    check_varlen_grads(q, k, v, cu_q, cu_k, dout, first, True, (-1, -1), "varlen deterministic")


@pytest.mark.parametrize("heads", [(8, 8), (8, 1), (16, 2)], ids=lambda h: f"{h[0]}q{h[1]}kv")
@pytest.mark.parametrize("head_dim", [128, 256])
def test_bwd_gqa_reduces_over_the_group(heads, head_dim):
    hq, hk = heads
    check_bwd(rand(2, 300, hq, head_dim), rand(2, 555, hk, head_dim), rand(2, 555, hk, head_dim), causal=True)


def test_bwd_custom_scale_and_strided_inputs():
    # The scale enters three places (exp2 argument, dK epilogue, dQ postprocess).
    check_bwd(rand(2, 400, 4, 64), rand(2, 300, 4, 64), rand(2, 300, 4, 64), causal=True, scale=0.3)
    qkv = rand(2, 513, 3, 6, 128)  # packed projections: q, k, v are strided views
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    dout = rand(2, 6, 513, 128).transpose(1, 2)  # (B, S, H, D) view of a (B, H, S, D) tensor
    assert not q.is_contiguous() and not dout.is_contiguous()
    check_bwd(q, k, v, causal=False, dout=dout)


def test_bwd_fp16_and_fully_masked_rows():
    q, k, v = (rand(1, s, 2, 64, dtype=torch.float16) for s in (300, 100, 100))
    dq, dk, dv = check_bwd(q, k, v, causal=True)  # rows 0..199 see no key
    assert torch.all(dq[:, :200] == 0)


@pytest.mark.parametrize("softcap", [0.0, 3.0])
def test_autograd_through_flash_attn_func(softcap):
    q, k, v = (rand(2, s, h, 128).requires_grad_() for s, h in ((333, 8), (444, 2), (444, 2)))
    out = flash_attn_func(q, k, v, causal=True, softcap=softcap)
    dout = torch.randn_like(out)
    out.backward(dout)
    ref = ref_grads(q, k, v, dout, True, (-1, -1), upcast=True, softcap=softcap)
    lowp = ref_grads(q, k, v, dout, True, (-1, -1), upcast=False, softcap=softcap)
    for name, t, r, lp in zip(("dq", "dk", "dv"), (q, k, v), ref, lowp):
        assert_close_to_ref(t.grad, r, lp, name)


def test_backward_op_opcheck():
    q, k, v = rand(2, 100, 4, 64), rand(2, 130, 2, 64), rand(2, 130, 2, 64)
    out, lse = flash_attn_func(q, k, v, causal=True, return_lse=True)
    args = (torch.randn_like(out), q, k, v, out, lse, None, None, 100, 130, 0.125, 1 << 30, 0, 0.0, "causal")
    torch.library.opcheck(torch.ops.cudadent42.attn_bwd.default, args,
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static",
                                      "test_aot_dispatch_dynamic"))
    fwd_args = (q.requires_grad_(), k.requires_grad_(), v.requires_grad_(), None, None, 100, 130, 0.125, 1 << 30, 0,
                0.0, "causal", "")
    torch.library.opcheck(torch.ops.cudadent42.attn_fwd.default, fwd_args,
                          test_utils=("test_schema", "test_autograd_registration", "test_aot_dispatch_dynamic"))


def test_compile_fullgraph_forward_and_backward():
    def block(x, wq):
        q = (x @ wq).view(x.shape[0], x.shape[1], 4, 64)
        return flash_attn_func(q, q, q, causal=True).flatten(2) + x

    x, wq = rand(2, 256, 256), (rand(256, 256) * 0.05).requires_grad_()
    eager_grad = torch.autograd.grad(block(x, wq).float().square().sum(), wq)[0]
    compiled = torch.compile(block, fullgraph=True)
    compiled_grad = torch.autograd.grad(compiled(x, wq).float().square().sum(), wq)[0]
    # Inductor keeps fused intermediates (y = attn + x, 2y) in fp32 where
    # eager rounds them to bf16, so elements differ by bf16 ulps of the
    # gradient's scale (|grad| up to ~10^3 here): compare against that scale.
    # (A CPU emulation with reference kernels in place of ours differs by 0.5%.)
    err = (compiled_grad.float() - eager_grad.float()).abs().max().item()
    assert err <= 2e-2 * eager_grad.float().abs().max().item(), err


@pytest.mark.parametrize("head_dim", [64, 128, 256])
@pytest.mark.parametrize("mask", MASKS)
def test_deterministic_mode_is_bitwise_reproducible(mask, head_dim):
    q, k, v = rand(2, 700, 8, head_dim), rand(2, 900, 2, head_dim), rand(2, 900, 2, head_dim)
    causal, window = mask == "causal", ((200, 30) if mask == "local" else (-1, -1))
    out, lse = flash_attn_func(q, k, v, causal=causal, window_size=window, return_lse=True)
    dout = torch.randn_like(out)
    first = attn_bwd(dout, q, k, v, out, lse, causal=causal, window_size=window, deterministic=True)
    for _ in range(3):
        again = attn_bwd(dout, q, k, v, out, lse, causal=causal, window_size=window, deterministic=True)
        for name, a, b in zip(("dq", "dk", "dv"), first, again):
            assert torch.equal(a, b), f"{name} differs between deterministic runs"
    ref = ref_grads(q, k, v, dout, causal, window, upcast=True)
    lowp = ref_grads(q, k, v, dout, causal, window, upcast=False)
    for name, got, r, lp in zip(("dq", "dk", "dv"), first, ref, lowp):
        assert_close_to_ref(got, r, lp, f"deterministic {name}")


def test_compiled_block_forward_and_backward_in_a_cuda_graph():
    # A GQA attention block compiled with fullgraph=True, its forward and
    # backward captured in one CUDA graph, replayed on new input: the graph's
    # gradients equal an eager step's on that input.
    from cudadent42.layers import MultiheadAttention

    torch.manual_seed(0)
    block = MultiheadAttention(256, n_heads=4, n_kv_heads=2, device="cuda", dtype=torch.bfloat16)
    compiled = torch.compile(block, fullgraph=True)
    x = rand(2, 200, 256)

    def step():
        compiled(x).float().square().mean().backward()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (JIT loads, compilation) outside the capture
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    block.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    x.copy_(rand(2, 200, 256))
    for p in block.parameters():
        p.grad.zero_()
    graph.replay()
    torch.cuda.synchronize()
    replayed = [p.grad.clone() for p in block.parameters()]
    block.zero_grad(set_to_none=True)
    block(x).float().square().mean().backward()
    for got, want in zip(replayed, (p.grad for p in block.parameters())):
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)
