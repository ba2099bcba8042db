"""The eager call path of the attention ops, on CPU with a stand-in kernel object
(tests/stub_kernel.py): what each launch receives, which work is done once per
key, and that every route (eager, autograd, the custom op, torch.compile
tracing) hands the kernels the same argument blocks."""
import ctypes
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import stub_kernel
from cudadent42 import flash_attn_func, flash_attn_varlen_func, scaled_dot_product_attention
from cudadent42.ops import attention as A
from cudadent42.ops import attention_bwd as B
from cudadent42.tune import table

pytestmark = pytest.mark.skipif(not stub_kernel.available(), reason="needs gcc for the stub kernel object")
U = A.UNBOUNDED


@pytest.fixture(scope="module")
def stub_lib():
    return stub_kernel.build_library()


@pytest.fixture
def stub(monkeypatch, stub_lib):
    return stub_kernel.install(monkeypatch.setattr, stub_lib)


def rand(*shape, grad=False):
    return torch.randn(*shape, dtype=torch.bfloat16).requires_grad_(grad)


def fields(s, skip_pointers=True):
    return {n: getattr(s, n) for n, t in s._fields_ if not (skip_pointers and t is ctypes.c_void_p)}


def test_forward_argument_block(stub):
    qkv = rand(2, 300, 12, 64)
    q, k, v = qkv.split([8, 2, 2], dim=2)  # strided views of one projection (GQA 4:1)
    out, lse = flash_attn_func(q, k, v, causal=True, return_lse=True)
    a = stub.last(stub_kernel.FWD, A._FwdArgs)
    assert (a.q, a.k, a.v, a.o, a.lse) == tuple(t.data_ptr() for t in (q, k, v, out, lse))
    assert a.tile_counter and not a.split_ws and not a.cu_seqlens_q
    assert (a.q_batch_stride, a.q_row_stride, a.q_head_stride) == qkv.stride()[:3]
    assert (a.o_batch_stride, a.o_row_stride, a.o_head_stride) == (300 * 8 * 64, 8 * 64, 64)
    assert (a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.total_q) == (2, 8, 2, 300, 300, 600)
    assert (a.window_left, a.window_right, a.num_sms) == (U, 0, 132)
    assert a.softmax_scale == pytest.approx(1 / math.sqrt(64)) and a.softcap == 0
    assert out.shape == q.shape and out.is_contiguous() and lse.shape == (2, 8, 300)


def test_one_plan_per_key(stub, monkeypatch):
    builds = []
    real = A._build_fwd_plan
    monkeypatch.setattr(A, "_build_fwd_plan", lambda *a, **kw: builds.append(1) or real(*a, **kw))
    q = rand(1, 128, 4, 64)
    for _ in range(3):
        flash_attn_func(q, q, q, causal=True)
    assert len(builds) == 1 and len(stub.loaded) == 1 and stub.calls(stub_kernel.FWD) >= 3
    flash_attn_func(q, q, q, causal=False)  # another mask: another key, another config
    flash_attn_func(rand(1, 128, 8, 64)[:, :, ::2], q, q, causal=True)  # other strides: another key
    assert len(builds) == 3
    monkeypatch.setattr(table, "version", table.version + 1)  # a tuned entry was recorded: choose again
    flash_attn_func(q, q, q, causal=True)
    assert len(builds) == 4


def test_forward_and_backward_through_autograd(stub):
    q, k, v = rand(1, 200, 4, 128, grad=True), rand(1, 260, 2, 128, grad=True), rand(1, 260, 2, 128, grad=True)
    out = flash_attn_func(q, k, v, window_size=(50, 20), softcap=3.0)
    assert isinstance(out.grad_fn, A._AttnFunction._backward_cls)  # eager: no dispatcher node
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
    a = stub.last(stub_kernel.BWD, B._BwdArgs)
    pre = stub.last(stub_kernel.PRE, B._PreArgs)
    post = stub.last(stub_kernel.POST, B._BwdArgs)
    assert (a.dq, a.dk, a.dv) == (dq.data_ptr(), dk.data_ptr(), dv.data_ptr())
    assert (a.q, a.k, a.v) == (q.data_ptr(), k.data_ptr(), v.data_ptr())
    assert fields(post, False) == fields(a, False)
    # dsum | lse_log2 | dq_accum: one allocation, each part at a multiple of 512 bytes, the same in both blocks
    assert (pre.dsum, pre.lse_log2, pre.dq_accum) == (a.dsum, a.lse_log2, a.dq_accum)
    assert a.dsum < a.lse_log2 < a.dq_accum and (a.lse_log2 - a.dsum) % 512 == 0 and (a.dq_accum - a.dsum) % 512 == 0
    assert not a.dq_semaphore and a.softcap == 3.0 and (a.window_left, a.window_right) == (50, 20)
    assert dq.shape == q.shape and dk.shape == k.shape and dv.shape == v.shape


def test_deterministic_backward_gets_a_semaphore(stub):
    q = rand(1, 128, 4, 64, grad=True)
    out = flash_attn_func(q, q, q, causal=True, deterministic=True)
    torch.autograd.grad(out, (q,), torch.randn_like(out))
    assert stub.last(stub_kernel.BWD, B._BwdArgs).dq_semaphore


class _Log(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


CALLS = {
    "dense": lambda q, k, v: flash_attn_func(q, k, v, causal=True, softmax_scale=0.2),
    "window": lambda q, k, v: flash_attn_func(q, k, v, window_size=(33, 7), softcap=2.0),
    "varlen": lambda q, k, v: flash_attn_varlen_func(
        q[0], k[0], v[0], torch.tensor([0, 60, 100], dtype=torch.int32), torch.tensor([0, 90, 140], dtype=torch.int32),
        60, 90, causal=True),
    "sdpa": lambda q, k, v: scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                         is_causal=True, enable_gqa=True),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_every_route_launches_the_same_blocks(stub, name):
    """Eager (no dispatcher), the custom op (taken under a dispatch mode, as FlopCounterMode or fake
    tensors would) and torch.compile's traced op give the kernels identical argument blocks."""
    call = CALLS[name]
    q, k, v = rand(1, 100, 4, 64), rand(1, 140, 2, 64), rand(1, 140, 2, 64)

    def fwd_bwd(fn):
        ins = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        out = fn(*ins)
        torch.autograd.grad(out, ins, torch.ones_like(out))
        return [fields(stub.last(s, st)) for s, st in ((0, A._FwdArgs), (1, B._PreArgs), (2, B._BwdArgs))]

    eager = fwd_bwd(call)
    with _Log() as log:
        via_op = fwd_bwd(call)
    assert "cudadent42.attn_fwd.default" in log.ops and "cudadent42.attn_bwd.default" in log.ops
    torch._dynamo.reset()
    compiled = fwd_bwd(torch.compile(call, backend="aot_eager", fullgraph=True))
    assert eager == via_op == compiled


def test_profiler_sees_the_config_range(stub):
    q = rand(1, 128, 4, 64)
    flash_attn_func(q, q, q)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        flash_attn_func(q, q, q)
    assert any(e.name.startswith("cudadent42::attn_fwd_bf16_hd64") for e in prof.events())
