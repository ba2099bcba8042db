"""Fused MoE up-projection (gather + grouped GEMM + SwiGLU) on the GPU: h and the pre-activation
against the float32 per-expert reference (tolerance rule), every row written (rows past offs[-1]
zero), empty experts, all tokens on one expert, T*k not a multiple of 8, H = 2880, F not a
multiple of the 128-column tile, fp16, gradients, determinism, no host sync, CUDA-graph replay,
opcheck, and moe_experts on the fused path against the staged one."""
import pytest
import torch

from cudadent42.ops.moe import moe_experts, routing_metadata, use_fused_up
from cudadent42.ops.moe_up import moe_up_swiglu, moe_up_swiglu_out
from cudadent42.reference import assert_close_to_ref
from cudadent42.reference.moe import experts_reference, up_swiglu_reference

pytestmark = pytest.mark.gpu
DT = torch.bfloat16


def make(T, H, F, E, k, ids=None, dtype=DT, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(T, H, device="cuda", generator=g).to(dtype)
    w = (torch.randn(E, 2 * F, H, device="cuda", generator=g) / H ** 0.5).to(dtype)
    if ids is None:
        ids = torch.rand(T, E, device="cuda", generator=g).argsort(-1)[:, :k]
    r = routing_metadata(ids.to("cuda"), E)
    return x, w, (r.order // k).to(torch.int32), r.inverse, r.offs, k


def check(x, w, gi, inv, offs, k, what):
    """Poisoned outputs: every element written; within tolerance of the float32 reference."""
    rows, F = gi.numel(), w.shape[1] // 2
    h = torch.full((rows, F), float("nan"), device="cuda", dtype=x.dtype)
    pre = torch.full((rows, 2 * F), float("nan"), device="cuda", dtype=x.dtype)
    moe_up_swiglu_out(x, w, gi, offs, h, pre)
    torch.cuda.synchronize()
    ref_h, ref_pre = up_swiglu_reference(x, w, gi, offs)
    lowp_h, lowp_pre = up_swiglu_reference(x, w, gi, offs, dtype=x.dtype)
    assert_close_to_ref(pre, ref_pre, lowp_pre, what=f"{what}: pre")
    assert_close_to_ref(h, ref_h, lowp_h, what=f"{what}: h")
    tail = int(offs[-1])
    assert (h[tail:] == 0).all() and (pre[tail:] == 0).all(), f"{what}: rows past offs[-1] must be zero"
    return h, pre


@pytest.mark.parametrize("T,H,F,E,k", [
    (1000, 256, 128, 8, 2),      # balanced, one column tile
    (333, 512, 256, 64, 3),      # T*k = 999: not a multiple of 8 or of the 128-row tile
    (517, 2880, 360, 32, 4),     # H = 2880 (gpt-oss): partial last K block; F = 360: partial column tile
    (129, 1024, 512, 128, 8),    # many experts, several empty
    (7, 64, 8, 4, 1),            # fewer rows than one tile, F = 8
    (4096, 2048, 768, 128, 8),   # Qwen3-30B-A3B-like widths
])
def test_matches_reference(T, H, F, E, k):
    check(*make(T, H, F, E, k), what=f"T={T} H={H} F={F} E={E} k={k}")


def test_fp16():
    check(*make(301, 384, 136, 16, 2, dtype=torch.float16), what="fp16")


def test_empty_experts():
    T, E, k = 500, 16, 2
    ids = torch.randint(0, 4, (T, k)) * 4  # only experts 0, 4, 8, 12 (duplicates across slots allowed)
    check(*make(T, 256, 128, E, k, ids=ids), what="empty experts")


def test_all_tokens_on_one_expert():
    T, E, k = 777, 8, 1
    ids = torch.full((T, k), 5)
    check(*make(T, 512, 256, E, k, ids=ids), what="one expert")


def test_sentinel_ids_give_zero_rows():
    T, E, k = 301, 8, 2
    ids = torch.randint(0, E + 3, (T, k))  # ids >= E: left by expert parallelism, sorted past offs[-1]
    check(*make(T, 256, 128, E, k, ids=ids), what="sentinels")


def test_deterministic_and_sync_free():
    args = make(2000, 1024, 384, 32, 4)
    torch.cuda.set_sync_debug_mode("error")
    try:
        h1, p1 = moe_up_swiglu(*args)
        h2, p2 = moe_up_swiglu(*args)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.equal(h1, h2) and torch.equal(p1, p2)


def test_gradients():
    x, w, gi, inv, offs, k = make(403, 256, 136, 8, 3)
    x.requires_grad_()
    w.requires_grad_()
    h, pre = moe_up_swiglu(x, w, gi, inv, offs, k)
    dh = torch.randn_like(h)
    ours = torch.autograd.grad(h, (x, w), dh)
    ref_h, _ = up_swiglu_reference(x, w, gi, offs)
    lowp_h, _ = up_swiglu_reference(x, w, gi, offs, dtype=DT)
    r32 = torch.autograd.grad(ref_h, (x, w), dh.float())
    rlp = torch.autograd.grad(lowp_h, (x, w), dh)
    for a, b, c, name in zip(ours, r32, rlp, ("x", "w_gate_up")):
        assert_close_to_ref(a, b, c, what=f"grad {name}")


def test_cuda_graph_replay():
    x, w, gi, inv, offs, k = make(600, 512, 256, 16, 2)
    h0, p0 = moe_up_swiglu(x, w, gi, inv, offs, k)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        h, pre = moe_up_swiglu(x, w, gi, inv, offs, k)
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    want_h, want_pre = moe_up_swiglu(x, w, gi, inv, offs, k)
    assert torch.equal(h, want_h) and torch.equal(pre, want_pre) and not torch.equal(h, h0)


def test_opcheck():
    x, w, gi, inv, offs, k = make(100, 128, 64, 4, 2)
    torch.library.opcheck(torch.ops.cudadent42.moe_up_swiglu.default, (x, w, gi, inv, offs, k))


@pytest.mark.parametrize("T,H,F,E,k", [(1000, 256, 128, 8, 2), (517, 2880, 256, 32, 4)])
def test_moe_experts_fused_matches_reference_and_staged(T, H, F, E, k):
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(T, H, device="cuda", generator=g).to(DT).requires_grad_()
    wg = (torch.randn(E, 2 * F, H, device="cuda", generator=g) / H ** 0.5).to(DT).requires_grad_()
    wd = (torch.randn(E, H, F, device="cuda", generator=g) / F ** 0.5).to(DT).requires_grad_()
    weights = torch.rand(T, k, device="cuda", generator=g).softmax(-1)
    ids = torch.rand(T, E, device="cuda", generator=g).argsort(-1)[:, :k].to(torch.int32)
    with use_fused_up(True):
        out = moe_experts(x, weights, ids, wg, wd)  # fused up-projection on Hopper
    with use_fused_up(False):
        staged = moe_experts(x, weights, ids, wg, wd)
    ref = experts_reference(x, weights, ids, wg, wd)
    lowp = experts_reference(x, weights, ids, wg, wd, dtype=DT)
    assert_close_to_ref(out, ref.detach(), lowp.detach(), what="fused")
    assert_close_to_ref(staged, ref.detach(), lowp.detach(), what="staged")
    gout = torch.randn_like(out)
    ours = torch.autograd.grad(out, (x, wg, wd), gout)
    r32 = torch.autograd.grad(ref, (x, wg, wd), gout.float(), retain_graph=True)
    rlp = torch.autograd.grad(lowp, (x, wg, wd), gout)
    for a, b, c, name in zip(ours, r32, rlp, ("x", "w_gate_up", "w_down")):
        assert_close_to_ref(a, b, c, what=f"fused grad {name}")
