"""MoE layer on the CPU with the float32 reference grouped GEMM injected: routing rules,
routing metadata, the expert layer and its gradients against the per-expert loop."""
import pytest
import torch

from cudadent42.nn import MoE
from cudadent42.ops.moe import moe_experts, moe_route, routing_metadata, use_grouped_mm
from cudadent42.reference.grouped_gemm import grouped_mm_reference
from cudadent42.reference.moe import experts_reference, route_reference
from cudadent42.reference import assert_close_to_ref


def _ref_mm(a, b, offs):
    return grouped_mm_reference(a, b, offs, dtype=a.dtype)


@pytest.fixture(autouse=True)
def reference_grouped_mm():
    with use_grouped_mm(_ref_mm):
        yield


def _close(a, b, what, rtol=1e-4):
    err = (a.float() - b.float()).abs().max().item()
    scale = b.float().abs().max().item() + 1e-6
    assert err <= rtol * scale, f"{what}: max abs error {err:.3e} vs scale {scale:.3e}"


@pytest.mark.parametrize("score,renorm,n_group,topk_group,bias,E,k", [
    ("softmax", True, None, None, False, 8, 2),
    ("softmax", False, None, None, False, 64, 8),
    ("sigmoid", True, 8, 4, True, 256, 8),
    ("sigmoid", True, 4, 2, False, 16, 3),
    ("sigmoid", False, None, None, True, 32, 1),
])
def test_routing_matches_reference(score, renorm, n_group, topk_group, bias, E, k):
    g = torch.Generator().manual_seed(E * 10 + k)
    logits = torch.randn(53, E, generator=g, requires_grad=True)
    eb = torch.randn(E, generator=g) * 0.1 if bias else None
    kw = dict(score=score, renormalize=renorm, n_group=n_group, topk_group=topk_group, expert_bias=eb)
    r = moe_route(logits, k, **kw)
    w, ids = route_reference(logits, k, **kw)
    assert r.ids.dtype == torch.int32 and r.weights.dtype == torch.float32
    assert torch.equal(r.ids.long(), ids)
    _close(r.weights, w, "weights", 1e-6)
    if renorm:
        _close(r.weights.sum(-1), torch.ones(53), "renormalised sum", 1e-6)
    gw = torch.randn(w.shape, generator=g)
    (a,) = torch.autograd.grad(r.weights, logits, gw)
    (b,) = torch.autograd.grad(w, logits, gw)
    _close(a, b, "logits grad", 1e-5)


def test_bias_affects_selection_only():
    logits = torch.zeros(4, 8)
    logits[:, 0] = 1.0
    bias = torch.zeros(8)
    bias[5] = 10.0
    r = moe_route(logits, 1, score="sigmoid", expert_bias=bias, renormalize=False)
    assert (r.ids == 5).all()
    _close(r.weights, torch.full((4, 1), 0.5), "unbiased weight", 1e-6)


@pytest.mark.parametrize("E,k,sentinel", [(8, 2, False), (16, 4, True), (256, 8, True)])
def test_metadata_consistency(E, k, sentinel):
    g = torch.Generator().manual_seed(E)
    ids = torch.randint(0, E + (3 if sentinel else 0), (29, k), generator=g, dtype=torch.int32)
    r = routing_metadata(ids, E)
    flat = ids.reshape(-1).long()
    valid = flat < E
    assert r.counts.dtype == torch.int32 and r.offs.dtype == torch.int32
    assert torch.equal(r.counts.long(), torch.bincount(flat[valid], minlength=E))
    assert torch.equal(r.offs.long(), r.counts.long().cumsum(0))
    assert torch.equal(r.order[r.inverse], torch.arange(flat.numel()))
    keys = torch.where(valid, flat, E)[r.order] * flat.numel() + r.order  # expert, then t*k + j
    assert (keys[1:] > keys[:-1]).all()
    assert (r.inverse[~valid] >= r.offs[-1]).all()


def _layer_case(T, H, Fh, E, k, dtype=torch.float32, ids=None, seed=0, transposed=False, bias=False):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, H, generator=g)).to(dtype).requires_grad_()
    up = (E, H, 2 * Fh) if transposed else (E, 2 * Fh, H)
    dn = (E, Fh, H) if transposed else (E, H, Fh)
    wg = (torch.randn(up, generator=g) / H ** 0.5).to(dtype).requires_grad_()
    wd = (torch.randn(dn, generator=g) / Fh ** 0.5).to(dtype).requires_grad_()
    logits = torch.randn(T, E, generator=g, requires_grad=True)
    bg = (torch.randn(E, 2 * Fh, generator=g) * 0.1).to(dtype).requires_grad_() if bias else None
    bd = (torch.randn(E, H, generator=g) * 0.1).to(dtype).requires_grad_() if bias else None
    return x, wg, wd, logits, bg, bd


def _run(x, wg, wd, logits, k, ids=None, activation="swiglu", transposed=False, bg=None, bd=None):
    weights = moe_route(logits, k).weights if ids is None else logits.softmax(-1)[:, :k]
    if ids is None:
        ids = moe_route(logits, k).ids
    ours = moe_experts(x, weights, ids, wg, wd, activation=activation, is_transposed=transposed,
                       gate_up_bias=bg, down_bias=bd)
    ref = experts_reference(x, weights, ids, wg, wd, activation=activation, is_transposed=transposed,
                            gate_up_bias=bg, down_bias=bd)
    return ours, ref


@pytest.mark.parametrize("T,H,Fh,E,k", [(37, 64, 32, 8, 1), (61, 48, 24, 16, 4), (45, 2880, 16, 8, 2),
                                        (13, 32, 16, 256, 8), (9, 32, 16, 64, 8)])
def test_experts_and_grads_match_loop(T, H, Fh, E, k):
    x, wg, wd, logits, _, _ = _layer_case(T, H, Fh, E, k)
    ours, ref = _run(x, wg, wd, logits, k)
    _close(ours, ref, "output")
    gout = torch.randn_like(ref)
    for a, b, name in zip(torch.autograd.grad(ours, (x, wg, wd, logits), gout, retain_graph=True),
                          torch.autograd.grad(ref, (x, wg, wd, logits), gout), ("x", "w_gate_up", "w_down", "logits")):
        _close(a, b, f"grad {name}")


@pytest.mark.parametrize("case", ["one_expert", "sentinel", "gpt_oss"])
def test_special_routings(case):
    T, H, Fh, E, k = 21, 32, 16, 8, 2
    transposed = bias = case == "gpt_oss"
    x, wg, wd, logits, bg, bd = _layer_case(T, H, Fh, E, k, transposed=transposed, bias=bias)
    ids = None
    if case == "one_expert":
        ids = torch.stack([torch.full((T,), 3), torch.full((T,), 5)], 1).to(torch.int32)  # 6 experts empty
    elif case == "sentinel":
        ids = torch.randint(0, E + 2, (T, k), generator=torch.Generator().manual_seed(1), dtype=torch.int32)
    act = "gpt_oss" if case == "gpt_oss" else "swiglu"
    ours, ref = _run(x, wg, wd, logits, k, ids, act, transposed, bg, bd)
    assert torch.isfinite(ours).all()
    _close(ours, ref, "output")
    params = [p for p in (x, wg, wd, logits, bg, bd) if p is not None]
    gout = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, params, gout, retain_graph=True), torch.autograd.grad(ref, params, gout)):
        assert torch.isfinite(a).all()
        _close(a, b, f"grad ({case})")


def test_bf16_tolerance_rule():
    x, wg, wd, logits, _, _ = _layer_case(40, 64, 32, 8, 2, dtype=torch.bfloat16)
    r = moe_route(logits, 2)
    ours = moe_experts(x, r.weights, r.ids, wg, wd, routing=r)
    ref = experts_reference(x, r.weights, r.ids, wg, wd)
    lowp = experts_reference(x, r.weights, r.ids, wg, wd, dtype=torch.bfloat16)
    assert_close_to_ref(ours, ref.detach(), lowp.detach())


def test_deterministic_bitwise():
    x, wg, wd, logits, _, _ = _layer_case(33, 64, 32, 16, 4, dtype=torch.bfloat16)
    results = []
    for _ in range(2):
        r = moe_route(logits, 4)
        out = moe_experts(x, r.weights, r.ids, wg, wd, routing=r)
        results.append((out, *torch.autograd.grad(out.float().square().sum(), (x, wg, wd, logits))))
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_bad_inputs_raise():
    x, wg, wd, logits, _, _ = _layer_case(8, 32, 16, 4, 2)
    r = moe_route(logits, 2)
    with pytest.raises(ValueError, match="expected w_gate_up"):
        moe_experts(x, r.weights, r.ids, wg[:, :-2], wd)
    with pytest.raises(ValueError, match="activation"):
        moe_experts(x, r.weights, r.ids, wg, wd, activation="gelu")
    with pytest.raises(ValueError, match="top_k"):
        moe_route(logits, 5)
    with pytest.raises(ValueError, match="n_group"):
        moe_route(logits, 2, score="sigmoid", n_group=3, topk_group=1)


@pytest.mark.parametrize("score,shared", [("softmax", 0), ("sigmoid", 2)])
def test_module_forward_backward(score, shared):
    torch.manual_seed(0)
    kw = dict(n_group=4, topk_group=2) if score == "sigmoid" else {}
    m = MoE(32, 16, 8, 2, score=score, shared_experts=shared, **kw)
    x = torch.randn(2, 7, 32)
    out, aux = m(x)
    assert out.shape == x.shape and aux.dim() == 0 and aux.item() >= 1.0 - 1e-5
    (out.square().mean() + 0.01 * aux).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.router.weight.grad.abs().sum() > 0
    m2 = MoE(32, 16, 8, 2, aux_loss=None)
    assert isinstance(m2(x), torch.Tensor)


def test_bench_torch_layer_matches_ours():
    from cudadent42.bench.moe import ours_moe, torch_moe

    g = torch.Generator().manual_seed(3)
    x, rw = torch.randn(50, 32, generator=g), torch.randn(8, 32, generator=g)
    wg, wd = torch.randn(8, 32, 32, generator=g) / 6, torch.randn(8, 32, 16, generator=g) / 4
    prior = torch.randn(8, generator=g)
    _close(torch_moe(x, rw, wg, wd, 2, prior), ours_moe(x, rw, wg, wd, 2, prior), "bench torch layer")
