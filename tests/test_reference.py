"""cudadent42.reference on CPU: the attention reference against PyTorch's own
math (SDPA's math backend, autograd), its mask alignment, GQA and varlen
identities; the GEMM reference; the tolerance rule."""
import math

import pytest
import torch
import torch.nn.functional as F

from cudadent42 import reference as R


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


def sdpa(q, k, v, causal=False, scale=None):
    """PyTorch's math SDPA on (B, S, H, D) tensors (top-left causal mask)."""
    o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                       scale=scale)
    return o.transpose(1, 2)


@pytest.mark.parametrize("causal", [False, True])
def test_square_attention_matches_sdpa_math(causal):
    q, k, v = (rand(2, 37, 3, 16, dtype=torch.float64) for _ in range(3))
    out, lse = R.attention(q.float(), k.float(), v.float(), causal=causal, return_lse=True)
    with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
        want = sdpa(q, k, v, causal)
    torch.testing.assert_close(out.double(), want, atol=1e-5, rtol=1e-5)
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(16)
    if causal:
        s = s.masked_fill(torch.ones(37, 37, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(lse.double(), torch.logsumexp(s, -1), atol=1e-5, rtol=1e-5)


def test_masks_are_bottom_right_aligned():
    keep = R.visible(2, 5, causal=True, window=(-1, -1), device="cpu")
    # the last query row sees every key, the first all but the last one
    assert keep.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]
    keep = R.visible(5, 2, causal=True, window=(-1, -1), device="cpu")
    assert keep.sum(1).tolist() == [0, 0, 0, 1, 2]
    keep = R.visible(4, 4, causal=False, window=(1, 0), device="cpu")
    assert keep.sum(1).tolist() == [1, 2, 2, 2]


def test_non_square_causal_equals_the_last_rows_of_the_square_problem():
    """Bottom-right alignment: Sq < Sk queries are the last Sq rows of a square causal problem."""
    q, k, v = rand(1, 10, 2, 8), rand(1, 10, 2, 8), rand(1, 10, 2, 8)
    full = R.attention(q, k, v, causal=True)
    part = R.attention(q[:, 6:], k, v, causal=True)
    torch.testing.assert_close(part, full[:, 6:])


def test_fully_masked_rows_give_zero_out_inf_lse_and_no_gradient():
    q, k, v = rand(1, 6, 2, 8), rand(1, 3, 2, 8), rand(1, 3, 2, 8)
    out, lse = R.attention(q, k, v, causal=True, return_lse=True)
    assert torch.all(out[:, :3] == 0) and torch.all(lse[..., :3] == float("inf"))
    assert torch.isfinite(lse[..., 3:]).all()
    dq, dk, dv = R.attention_grads(q, k, v, rand(1, 6, 2, 8), causal=True)
    assert torch.all(dq[:, :3] == 0) and all(torch.isfinite(g).all() for g in (dq, dk, dv))


def test_gqa_equals_repeated_heads():
    q, k, v = rand(2, 9, 6, 8), rand(2, 11, 2, 8), rand(2, 11, 2, 8)
    rep = [t.repeat_interleave(3, dim=2) for t in (k, v)]
    for kw in (dict(causal=True), dict(window=(3, 1)), dict(softcap=2.0)):
        o, l = R.attention(q, k, v, return_lse=True, **kw)
        o2, l2 = R.attention(q, *rep, return_lse=True, **kw)
        torch.testing.assert_close(o, o2)
        torch.testing.assert_close(l, l2)


def test_softcap_caps_the_scores():
    q, k = rand(1, 4, 1, 8) * 10, rand(1, 5, 1, 8) * 10
    s = R.scores(q, k, softcap=3.0)
    assert s.abs().max() <= 3.0 and not torch.equal(s, R.scores(q, k))


@pytest.mark.parametrize("kw", [dict(), dict(causal=True), dict(window=(4, 2)), dict(softcap=2.5, causal=True),
                                dict(scale=0.3)])
def test_gradients_match_autograd_through_sdpa_style_math(kw):
    q, k, v = rand(2, 7, 4, 8), rand(2, 12, 2, 8), rand(2, 12, 2, 8)  # GQA 4:2, Sq != Sk
    dout = rand(2, 7, 4, 8)
    got = R.attention_grads(q, k, v, dout, **kw)
    # independent: float64 autograd through an explicit formula
    x = [t.double().requires_grad_() for t in (q, k, v)]
    kk, vv = (t.repeat_interleave(2, dim=2) for t in x[1:])
    s = torch.einsum("bqhd,bkhd->bhqk", x[0], kk) * kw.get("scale", 1 / math.sqrt(8))
    if kw.get("softcap"):
        s = kw["softcap"] * torch.tanh(s / kw["softcap"])
    keep = R.visible(7, 12, kw.get("causal", False), kw.get("window", (-1, -1)), "cpu")
    p = torch.softmax(s.masked_fill(~keep, float("-inf")), -1)
    o = torch.einsum("bhqk,bkhd->bqhd", p, vv)
    want = torch.autograd.grad(o, x, dout.double())
    for g, w in zip(got, want):
        torch.testing.assert_close(g.double(), w, atol=1e-5, rtol=1e-4)


def test_low_precision_baseline_rounds_like_the_dtype():
    q, k, v = (rand(1, 33, 2, 16, dtype=torch.bfloat16) for _ in range(3))
    ref = R.attention(q, k, v, causal=True)
    lowp = R.attention(q, k, v, causal=True, upcast=False)
    assert ref.dtype == torch.float32 and lowp.dtype == torch.bfloat16
    err = (lowp.float() - ref).abs().max().item()
    assert 0 < err < 0.05
    dq, dk, dv = R.attention_grads(q, k, v, rand(1, 33, 2, 16, dtype=torch.bfloat16), causal=True, upcast=False)
    assert dq.dtype == dk.dtype == dv.dtype == torch.bfloat16


def test_varlen_equals_per_sequence_calls():
    lens_q, lens_k = [5, 0, 9, 3], [7, 4, 9, 0]
    cu_q, cu_k = (torch.tensor([0] + torch.tensor(n).cumsum(0).tolist(), dtype=torch.int32) for n in (lens_q, lens_k))
    q, k, v = rand(sum(lens_q), 4, 8), rand(sum(lens_k), 2, 8), rand(sum(lens_k), 2, 8)
    dout = rand(sum(lens_q), 4, 8)
    kw = dict(causal=True, window=(-1, -1))
    out, lse = R.attention_varlen(q, k, v, cu_q, cu_k, return_lse=True, **kw)
    grads = R.attention_varlen_grads(q, k, v, dout, cu_q, cu_k, **kw)
    assert out.shape == q.shape and lse.shape == (4, q.shape[0])
    for b in range(4):
        qs, qe, ks, ke = cu_q[b].item(), cu_q[b + 1].item(), cu_k[b].item(), cu_k[b + 1].item()
        if qe == qs or ke == ks:
            assert torch.all(out[qs:qe] == 0) and torch.all(lse[:, qs:qe] == float("inf"))
            assert torch.all(grads[0][qs:qe] == 0) and torch.all(grads[1][ks:ke] == 0)
            continue
        o, l = R.attention(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], return_lse=True, **kw)
        torch.testing.assert_close(out[qs:qe], o[0])
        torch.testing.assert_close(lse[:, qs:qe], l[0])
        g = R.attention_grads(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], dout[None, qs:qe], **kw)
        for got, want in zip((grads[0][qs:qe], grads[1][ks:ke], grads[2][ks:ke]), g):
            torch.testing.assert_close(got, want[0])


def test_gemm_reference():
    a, b = rand(17, 24, dtype=torch.bfloat16), rand(24, 8, dtype=torch.bfloat16)
    ref, lowp = R.gemm(a, b), R.gemm(a, b, upcast=False)
    assert ref.dtype == torch.float32 and lowp.dtype == torch.bfloat16
    torch.testing.assert_close(ref, a.float() @ b.float())


def test_tolerance_rule():
    ref = torch.zeros(4)
    lowp = torch.tensor([0.0, 0.1, 0.0, 0.0])
    assert R.within_tolerance(torch.full((4,), 0.2), ref, lowp) == (True, pytest.approx(0.2))
    ok, err = R.within_tolerance(torch.full((4,), 0.21), ref, lowp)
    assert not ok and err == pytest.approx(0.21)
    assert not R.within_tolerance(torch.tensor([0.0, float("nan"), 0, 0]), ref, lowp)[0]
    ok, _ = R.within_tolerance((ref, torch.full((4,), 0.3)), (ref, ref), (lowp, lowp))
    assert not ok  # tuples: each element must pass
    R.assert_close_to_ref(torch.full((4,), 0.2), ref, lowp)
    with pytest.raises(AssertionError, match="dq: max abs error"):
        R.assert_close_to_ref(torch.full((4,), 0.3), ref, lowp, "dq")
    with pytest.raises(AssertionError, match="NaN"):
        R.assert_close_to_ref(torch.tensor([float("nan")] * 4), ref, lowp)
