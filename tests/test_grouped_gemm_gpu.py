"""Grouped GEMM on the GPU: every torch._grouped_mm form against a float32
per-group loop (tolerance rule), skewed/empty/one-group routing, odd sizes,
both operand layouts, gradients, opcheck, compile, graphs, no host sync."""
import pytest
import torch

import cudadent42
from cudadent42.ops.grouped_gemm import grouped_gemm_out, new_output
from cudadent42.reference import assert_close_to_ref
from cudadent42.reference.grouped_gemm import group_sizes, grouped_mm_reference, offsets

pytestmark = pytest.mark.gpu
DT = torch.bfloat16


def matrix(rows, cols, row_major=True, batch=None):
    """A (batch,) rows x cols bf16 matrix, row- or column-major."""
    lead = () if batch is None else (batch,)
    if row_major:
        return torch.randn(*lead, rows, cols, device="cuda", dtype=DT)
    return torch.randn(*lead, cols, rows, device="cuda", dtype=DT).transpose(-2, -1)


def check_form(a, b, offs, what):
    """Poisoned output: every in-group element written and within tolerance;
    rows/columns past offs[-1] left as they were (torch._grouped_mm's rule)."""
    form = {(2, 3): "m", (3, 2): "n", (2, 2): "k", (3, 3): "none"}[(a.dim(), b.dim())]
    out = new_output(a, b, offs, form).fill_(float("nan"))
    grouped_gemm_out(a, b, offs, out, form)
    torch.cuda.synchronize()
    ref = grouped_mm_reference(a, b, offs)
    lowp = grouped_mm_reference(a, b, offs, dtype=DT)
    inside = ~torch.isnan(ref)
    assert not torch.isnan(out[inside]).any(), f"{what}: unwritten elements inside the groups"
    if form != "n":  # 3Dx2D runs transposed and copies whole columns: past offs[-1] stays unspecified
        assert torch.isnan(out[~inside]).all(), f"{what}: elements past offs[-1] were written"
    assert_close_to_ref(out[inside], ref[inside], lowp[inside], what=what)
    return out


@pytest.mark.parametrize("kind", ["balanced", "skewed", "one"])
@pytest.mark.parametrize("G", [1, 8, 128, 256])
@pytest.mark.parametrize("b_row_major", [True, False])
def test_2d_3d_routing(kind, G, b_row_major):
    T, K, N = 4093, 512, 384  # T not a multiple of 8 or of the tile
    gen = torch.Generator().manual_seed(G)
    a = matrix(T, K)
    b = matrix(K, N, b_row_major, batch=G)
    offs = offsets(group_sizes(T - 5, G, kind, gen), "cuda")  # 5 rows past offs[-1]
    check_form(a, b, offs, f"2Dx3D G={G} {kind} b_row_major={b_row_major}")


@pytest.mark.parametrize("T,K,N", [(1, 8, 8), (17, 2880, 5760), (1000, 2880, 2880), (333, 1000, 1032),
                                   (2050, 136, 64), (96, 64, 200)])
@pytest.mark.parametrize("a_row_major", [True, False])
def test_2d_3d_sizes(T, K, N, a_row_major):
    if not a_row_major and T % 8:
        pytest.skip("a column-major (T contiguous) needs T % 8 == 0 for TMA; the error is tested on CPU")
    G = 4
    gen = torch.Generator().manual_seed(T)
    a = matrix(T, K, a_row_major)
    b = matrix(K, N, True, batch=G)
    offs = offsets(group_sizes(T, G, "skewed", gen), "cuda")
    check_form(a, b, offs, f"2Dx3D T={T} K={K} N={N}")


@pytest.mark.parametrize("kind", ["balanced", "skewed", "one"])
@pytest.mark.parametrize("G", [1, 8, 128])
@pytest.mark.parametrize("b_row_major", [True, False])
def test_3d_2d(kind, G, b_row_major):
    M, K, T = 264, 640, 4096
    gen = torch.Generator().manual_seed(G + 7)
    a = matrix(M, K, True, batch=G)
    b = matrix(K, T, b_row_major)
    offs = offsets(group_sizes(T - 24, G, kind, gen), "cuda")
    check_form(a, b, offs, f"3Dx2D G={G} {kind}")


@pytest.mark.parametrize("kind", ["balanced", "skewed", "one"])
@pytest.mark.parametrize("G", [1, 8, 128, 256])
@pytest.mark.parametrize("a_row_major,b_row_major", [(False, True), (True, True), (False, False)])
def test_2d_2d_weight_gradient(kind, G, a_row_major, b_row_major):
    M, N, T = 2880, 768, 8192  # M = gpt-oss's hidden size
    gen = torch.Generator().manual_seed(G + 11)
    a = matrix(M, T, a_row_major)   # e.g. x^T: (H, tokens), H contiguous when a_row_major is False
    b = matrix(T, N, b_row_major)   # dY: (tokens, N)
    offs = offsets(group_sizes(T - 40, G, kind, gen), "cuda")
    check_form(a, b, offs, f"2Dx2D G={G} {kind} a_row_major={a_row_major} b_row_major={b_row_major}")


@pytest.mark.parametrize("G,M,K,N", [(1, 7, 64, 8), (5, 300, 2880, 264), (16, 128, 256, 512)])
def test_3d_3d(G, M, K, N):
    check_form(matrix(M, K, batch=G), matrix(K, N, False, batch=G), None, f"3Dx3D {G}x{M}x{K}x{N}")


def test_zero_tail_writes_zeros():
    """The gradient path (zero_tail) writes zeros past offs[-1]."""
    T, K, N, G = 1000, 128, 256, 6
    a, b = matrix(T, K), matrix(K, N, batch=G)
    offs = offsets([100, 0, 300, 50, 200, 150], "cuda")  # ends at 800
    out = new_output(a, b, offs, "m").fill_(float("nan"))
    grouped_gemm_out(a, b, offs, out, "m", zero_tail=True)
    torch.cuda.synchronize()
    assert (out[800:] == 0).all()
    assert not torch.isnan(out[:800]).any()


def _ref_grads(a, b, offs, grad):
    a32 = a.detach().float().requires_grad_()
    b32 = b.detach().float().requires_grad_()
    out = grouped_mm_reference(a32, b32, offs, fill=0.0)
    out.backward(grad.float())
    return a32.grad, b32.grad


def _lowp_grads(a, b, offs, grad):
    a_ = a.detach().clone().requires_grad_()
    b_ = b.detach().clone().requires_grad_()
    grouped_mm_reference(a_, b_, offs, dtype=DT, fill=0.0).backward(grad)
    return a_.grad, b_.grad


@pytest.mark.parametrize("form", ["m", "n", "k", "none"])
def test_gradients(form):
    G = 8
    gen = torch.Generator().manual_seed(3)
    if form == "m":
        a, b = matrix(1003, 256), matrix(256, 384, False, batch=G)
        offs = offsets(group_sizes(1000, G, "skewed", gen), "cuda")
    elif form == "n":
        a, b = matrix(136, 256, batch=G), matrix(256, 1024)
        offs = offsets(group_sizes(1000, G, "skewed", gen), "cuda")
    elif form == "k":
        a, b = matrix(256, 2048, False), matrix(2048, 384)
        offs = offsets(group_sizes(2000, G, "skewed", gen), "cuda")
    else:
        a, b, offs = matrix(136, 256, batch=G), matrix(256, 200, batch=G), None
    a.requires_grad_()
    b.requires_grad_()
    out = cudadent42.grouped_gemm(a, b, offs)
    grad = torch.randn_like(out)
    out.backward(grad)
    ra, rb = _ref_grads(a, b, offs, grad)
    la, lb = _lowp_grads(a, b, offs, grad)
    assert_close_to_ref(a.grad, ra, la, what=f"{form}: da")
    assert_close_to_ref(b.grad, rb, lb, what=f"{form}: db")


def test_strided_offsets_read_as_values():
    """offs may be a strided view (e.g. every other entry of a longer tensor): the values count, not the storage."""
    T, K, N, G = 1000, 256, 128, 8
    a, b = matrix(T, K), matrix(K, N, batch=G)
    dense = offsets(group_sizes(T, G, "skewed", torch.Generator().manual_seed(3)), "cuda")
    strided = torch.stack([dense, torch.full_like(dense, -7)], 1).reshape(-1)[::2]
    assert strided.stride(0) == 2 and torch.equal(strided, dense)
    assert torch.equal(cudadent42.grouped_gemm(a, b, strided), cudadent42.grouped_gemm(a, b, dense))


def test_bitwise_reproducible():
    G = 64
    gen = torch.Generator().manual_seed(5)
    a, b = matrix(8192, 1024), matrix(1024, 768, batch=G)
    offs = offsets(group_sizes(8192, G, "skewed", gen), "cuda")
    first = cudadent42.grouped_gemm(a, b, offs)
    for _ in range(3):
        assert torch.equal(cudadent42.grouped_gemm(a, b, offs), first)


def test_no_host_sync_forward_backward():
    G = 16
    a = matrix(2048, 256).requires_grad_()
    b = matrix(256, 512, batch=G).requires_grad_()
    offs = offsets(group_sizes(2048, G, "skewed", torch.Generator().manual_seed(1)), "cuda")
    cudadent42.grouped_gemm(a, b, offs).sum().backward()  # build/load outside the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = cudadent42.grouped_gemm(a, b, offs)
        out.backward(torch.ones_like(out))
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_cuda_graph_replay_follows_new_offsets():
    G = 8
    a, b = matrix(1024, 256), matrix(256, 256, batch=G)
    offs = offsets(group_sizes(1024, G, "balanced"), "cuda")
    cudadent42.grouped_gemm(a, b, offs)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = cudadent42.grouped_gemm(a, b, offs)
    offs.copy_(offsets(group_sizes(1024, G, "skewed", torch.Generator().manual_seed(2)), "cuda"))
    a.copy_(torch.randn_like(a))
    graph.replay()
    torch.cuda.synchronize()
    ref = grouped_mm_reference(a, b, offs)
    assert_close_to_ref(out, ref, grouped_mm_reference(a, b, offs, dtype=DT), what="graph replay")


def test_torch_compile_fullgraph():
    G = 4
    a = matrix(512, 128).requires_grad_()
    b = matrix(128, 256, batch=G).requires_grad_()
    offs = offsets([100, 200, 0, 212], "cuda")

    @torch.compile(fullgraph=True)
    def f(a, b, offs):
        return cudadent42.grouped_gemm(a, b, offs).float().square().sum()

    f(a, b, offs).backward()
    ga, gb = a.grad.clone(), b.grad.clone()
    a.grad = b.grad = None
    cudadent42.grouped_gemm(a, b, offs).float().square().sum().backward()
    assert torch.allclose(ga.float(), a.grad.float(), atol=1e-2, rtol=1e-2)
    assert torch.allclose(gb.float(), b.grad.float(), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("form", ["m", "k", "none"])
def test_opcheck(form):
    G = 4
    if form == "m":
        args = (matrix(200, 64).requires_grad_(), matrix(64, 128, batch=G).requires_grad_(),
                offsets([50, 50, 50, 50], "cuda"))
    elif form == "k":
        args = (matrix(64, 256, False).requires_grad_(), matrix(256, 128).requires_grad_(),
                offsets([64, 64, 64, 64], "cuda"))
    else:
        args = (matrix(64, 64, batch=G).requires_grad_(), matrix(64, 128, batch=G).requires_grad_(), None)
    torch.library.opcheck(torch.ops.cudadent42.grouped_gemm.default, args)


def test_matches_torch_grouped_mm():
    """Same values as torch._grouped_mm where both compute (bf16 in, bf16 out)."""
    if not hasattr(torch, "_grouped_mm"):
        pytest.skip("torch._grouped_mm not in this torch")
    G = 8
    a, b = matrix(2048, 512), matrix(512, 256, False, batch=G)
    offs = offsets(group_sizes(2048, G, "skewed", torch.Generator().manual_seed(9)), "cuda")
    ours = cudadent42.grouped_gemm(a, b, offs)
    theirs = torch._grouped_mm(a, b, offs)
    ref = grouped_mm_reference(a, b, offs)
    assert_close_to_ref(ours, ref, theirs, what="vs torch._grouped_mm")
