"""GEMM on the GPU: correctness vs fp32, errors, opcheck, compile, graphs."""
import pytest
import torch

import cudadent42
from cudadent42 import GemmConfig, reference
from cudadent42.ops.gemm import gemm_out
from cudadent42.reference import assert_close_to_ref

pytestmark = pytest.mark.gpu

SHAPES = [  # (M, N, K): ragged on every axis, tiny and large
    (1, 8, 8), (17, 24, 40), (113, 136, 72), (1000, 1016, 520), (128, 256, 64),
    (257, 8, 4096), (4097, 1032, 2056), (2048, 2048, 1024), (64, 4096, 8),
]


def make_b(K, N, b_major, dtype, device="cuda"):
    if b_major == "k":
        return torch.randn(N, K, device=device, dtype=dtype).t()  # K contiguous
    return torch.randn(K, N, device=device, dtype=dtype)


def check(a, b, config=None):
    out = torch.full((a.shape[0], b.shape[1]), float("nan"), device="cuda", dtype=a.dtype)
    gemm_out(a, b, out, config)  # poisoned output: every element must be written
    torch.cuda.synchronize()
    ref, lowp = reference.gemm(a, b), reference.gemm(a, b, upcast=False)
    assert_close_to_ref(out, ref, lowp, what=f"gemm {tuple(a.shape)}x{tuple(b.shape)}")
    return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("b_major", ["k", "n"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gemm_matches_fp32_reference(shape, b_major, dtype):
    M, N, K = shape
    a = torch.randn(M, K, device="cuda", dtype=dtype)
    check(a, make_b(K, N, b_major, dtype))


EXPLICIT_CONFIGS = [  # non-default corners of the config space (scripts/gpu_check.sh pre-builds them)
    GemmConfig(wg_m=128, tile_n=128, stages=3), GemmConfig(tile_n=192, stages=4),
    GemmConfig(tile_n=64, stages=8), GemmConfig(stages=2, group_m=1),
    GemmConfig(b_major="n", wg_m=128, tile_n=128, stages=3), GemmConfig(b_major="n", tile_n=192, stages=4),
]


@pytest.mark.parametrize("cfg", EXPLICIT_CONFIGS, ids=lambda c: c.name)
def test_gemm_explicit_configs(cfg):
    a = torch.randn(1000, 1000 - 8 * 3, device="cuda", dtype=torch.bfloat16)
    b = make_b(a.shape[1], 776, cfg.b_major, torch.bfloat16)
    check(a, b, cfg)


def test_gemm_strided_views():
    big = torch.randn(300, 520, device="cuda", dtype=torch.bfloat16)
    a = big[:, :256]  # row stride 520, not contiguous
    wbig = torch.randn(200, 264, device="cuda", dtype=torch.bfloat16)
    b = wbig[:136, :256].t()  # K-major with padded rows
    check(a, b)
    bn = torch.randn(256, 400, device="cuda", dtype=torch.bfloat16)[:, 8:144]  # N-major, offset 16 B
    check(a, bn)


def test_gemm_results_are_stable_across_runs():
    a = torch.randn(2048, 1024, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(1024, 2048, device="cuda", dtype=torch.bfloat16)
    first = cudadent42.gemm(a, b)
    for _ in range(3):
        assert torch.equal(first, cudadent42.gemm(a, b)), "moving result between identical runs: a race"


def test_gemm_empty_and_zero_k():
    a = torch.randn(0, 64, device="cuda", dtype=torch.bfloat16)
    assert cudadent42.gemm(a, torch.randn(64, 16, device="cuda", dtype=torch.bfloat16)).shape == (0, 16)
    a = torch.randn(16, 0, device="cuda", dtype=torch.bfloat16)
    out = cudadent42.gemm(a, torch.randn(0, 16, device="cuda", dtype=torch.bfloat16))
    assert out.shape == (16, 16) and torch.all(out == 0)


def test_gemm_bad_inputs():
    a = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="bfloat16 or float16"):
        cudadent42.gemm(a.float(), a.float())
    with pytest.raises(TypeError):
        cudadent42.gemm(a, a.half())
    with pytest.raises(ValueError, match="inner dimensions"):
        cudadent42.gemm(a, torch.randn(32, 64, device="cuda", dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="multiples of 8"):
        cudadent42.gemm(torch.randn(64, 60, device="cuda", dtype=torch.bfloat16),
                        torch.randn(60, 64, device="cuda", dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="row-major"):
        cudadent42.gemm(a.t(), a)
    with pytest.raises(ValueError, match="one contiguous dimension"):
        cudadent42.gemm(a, torch.randn(64, 128, device="cuda", dtype=torch.bfloat16)[:, ::2])
    with pytest.raises(ValueError, match="multiple of 16 bytes"):
        cudadent42.gemm(torch.randn(64, 68, device="cuda", dtype=torch.bfloat16)[:, :64], a)
    with pytest.raises(ValueError, match="16-byte"):
        cudadent42.gemm(torch.randn(64 * 64 + 1, device="cuda", dtype=torch.bfloat16)[1:].view(64, 64), a)
    with pytest.raises(cudadent42.UnsupportedDeviceError, match="CUDA device"):
        cudadent42.gemm(a.cpu(), a.cpu())
    with pytest.raises(ValueError, match="b_major"):
        cudadent42.gemm(a, a, config=GemmConfig(b_major="k"))  # a is N-major as B
    with pytest.raises(cudadent42.ConfigError):
        cudadent42.gemm(a, a, config="gemm_bf16_bn_m128_n512_k64_st4_g8")


def test_gemm_opcheck():
    a = torch.randn(136, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(64, 72, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    torch.library.opcheck(torch.ops.cudadent42.gemm.default, (a, b, ""))


def test_gemm_autograd_matches_reference():
    a = torch.randn(200, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(96, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(200, 96, device="cuda", dtype=torch.bfloat16)
    cudadent42.gemm(a, w.t()).backward(g)
    a32, w32 = a.detach().float().requires_grad_(), w.detach().float().requires_grad_()
    (a32 @ w32.t()).backward(g.float())
    al, wl = a.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    (al @ wl.t()).backward(g)
    assert_close_to_ref(a.grad, a32.grad, al.grad, "dA")
    assert_close_to_ref(w.grad, w32.grad, wl.grad, "dW")


def test_gemm_torch_compile_fullgraph():
    def f(x, w):
        return torch.nn.functional.gelu(cudadent42.gemm(x, w.t())) * 2

    x = torch.randn(256, 128, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(512, 128, device="cuda", dtype=torch.bfloat16)
    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(x, w), f(x, w))


def test_gemm_cuda_graph_capture_and_replay():
    x = torch.randn(512, 256, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(256, 384, device="cuda", dtype=torch.bfloat16)
    cudadent42.gemm(x, w)  # build + load outside capture
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        cudadent42.gemm(x, w)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = cudadent42.gemm(x, w)
    x.copy_(torch.randn_like(x))
    w.copy_(torch.randn_like(w))
    g.replay()
    torch.cuda.synchronize()
    assert_close_to_ref(y, x.float() @ w.float(), x @ w, "graph replay")
