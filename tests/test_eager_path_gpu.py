"""The eager call path on the GPU (ops/attention.py plans): bitwise the same as the
custom op route, correct under CUDA graph capture (forward and backward) and on
side streams, and a cached plan never reuses another call's pointers."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from cudadent42 import flash_attn_func, flash_attn_varlen_func

pytestmark = pytest.mark.gpu


def rand(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, device="cuda", dtype=dtype)


class _PassThrough(TorchDispatchMode):
    """Any active dispatch mode sends calls through the custom ops."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _fwd_bwd(q, k, v, dout, **kw):
    ins = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = flash_attn_func(*ins, **kw)
    return (out,) + torch.autograd.grad(out, ins, dout)


@pytest.mark.parametrize("kw", [dict(causal=True), dict(window_size=(100, 30), softcap=4.0), dict(deterministic=True)])
def test_eager_equals_the_op_route_bitwise(kw):
    q, k, v = rand(2, 333, 8, 128), rand(2, 444, 2, 128), rand(2, 444, 2, 128)
    dout = rand(2, 333, 8, 128)
    eager = _fwd_bwd(q, k, v, dout, **kw)
    with _PassThrough():
        via_op = _fwd_bwd(q, k, v, dout, **kw)
    # dQ is summed with atomics: the gradients are bitwise reproducible only when deterministic
    names = ("out", "dq", "dk", "dv") if kw.get("deterministic") else ("out",)
    for name, a, b in zip(names, eager, via_op):
        assert torch.equal(a, b), name


def test_plan_reuse_sees_new_tensors_each_call():
    q = rand(1, 256, 4, 64)
    outs = [flash_attn_func(q * s, q, q, causal=True) for s in (1.0, 2.0)]
    again = flash_attn_func(q * 2.0, q, q, causal=True)
    assert torch.equal(outs[1], again) and not torch.equal(outs[0], outs[1])


def test_eager_forward_and_backward_in_a_cuda_graph_and_on_a_side_stream():
    q, k, v = (rand(2, 300, 4, 64).requires_grad_() for _ in range(3))
    dout = rand(2, 300, 4, 64)

    def step():
        out = flash_attn_func(q, k, v, causal=True)
        return (out,) + torch.autograd.grad(out, (q, k, v), dout)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # plans built and kernels run on a side stream
        warm = step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    with torch.no_grad():
        for t in (q, k, v):
            t.copy_(torch.randn_like(t))
    graph.replay()
    torch.cuda.synchronize()
    fresh = step()
    for name, a, b in zip(("out", "dq", "dk", "dv"), captured, fresh):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2, msg=name)
    assert not torch.equal(warm[0], fresh[0])


def test_varlen_eager_backward():
    cu = torch.tensor([0, 100, 250], dtype=torch.int32, device="cuda")
    q, k, v = (rand(250, 4, 64).requires_grad_() for _ in range(3))
    out = flash_attn_varlen_func(q, k, v, cu, cu, 150, 150, causal=True)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), torch.ones_like(out))
    with _PassThrough():
        out2 = flash_attn_varlen_func(q, k, v, cu, cu, 150, 150, causal=True)
        dq2, dk2, dv2 = torch.autograd.grad(out2, (q, k, v), torch.ones_like(out2))
    assert torch.equal(out, out2)
    for a, b in ((dq, dq2), (dk, dk2), (dv, dv2)):
        torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)
