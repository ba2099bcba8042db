"""Fused MoE up-projection without a GPU: config names and validation, argument errors, the
fake (meta) implementation, the dSwiGLU of the torch backward, the float32 reference, and
that moe_experts keeps the staged path off Hopper."""
import pytest
import torch

from cudadent42 import families
from cudadent42.configs.base import ConfigError
from cudadent42.configs.moe_up import MoeUpConfig
from cudadent42.ops.moe import gather_tokens, routing_metadata, up_act, use_grouped_mm
from cudadent42.ops.moe_up import _new_outputs, check_inputs, dswiglu, weights_packed
from cudadent42.reference.grouped_gemm import grouped_mm_reference
from cudadent42.reference.moe import up_swiglu_reference

BF = torch.bfloat16


def test_names_round_trip_and_validate():
    for cfg in families.get("moe-up").default_configs() + [MoeUpConfig("fp16", 2), MoeUpConfig("bf16", 3)]:
        assert MoeUpConfig.from_name(cfg.name) == cfg
        assert cfg.validate() is cfg
        src = cfg.render()
        assert "moe_up_launch.hpp" in src and "MoeUpTraits<" in src and str(cfg.smem_bytes()) in src
    assert MoeUpConfig().name == "moeup_bf16_swiglu_st4"


@pytest.mark.parametrize("name,fragment", [
    ("moeup_bf16_swiglu_st5", "shared memory"),   # five stages of a 256-wide B tile exceed 227 KB
    ("moeup_bf16_swiglu_st1", "2..8"),
    ("moeup_fp32_swiglu_st4", "not a MoE up-projection config name"),
    ("moeup_bf16_gelu_st4", "not a MoE up-projection config name"),
    ("moeup_bf16_swiglu_st04", "not canonical"),
])
def test_bad_names(name, fragment):
    with pytest.raises(ConfigError, match=fragment):
        MoeUpConfig.from_name(name)


def test_smem_model():
    # A: 2 x 64x64 x stages, B: 256x64 x stages, C: 2 x 64x64 x 2 buffers, 16-bit; barriers.
    assert MoeUpConfig(stages=4).smem_bytes() == 230400
    assert MoeUpConfig(stages=4).smem_bytes() <= 227 * 1024 < MoeUpConfig(stages=5).smem_bytes()


def case(T=10, k=2, H=16, F=8, E=3, dtype=BF, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, H, generator=g).to(dtype)
    w = torch.randn(E, 2 * F, H, generator=g).to(dtype)
    ids = torch.randint(0, E, (T, k), generator=g)
    r = routing_metadata(ids, E)
    return x, w, (r.order // k).to(torch.int32), r.inverse, r.offs, k, r


def test_check_inputs_accepts_a_good_case():
    x, w, gi, inv, offs, k, _ = case()
    check_inputs(x, w, gi, inv, offs, k)
    assert weights_packed(w) and not weights_packed(w.transpose(1, 2))


BAD = [  # (mutation, exception, message fragment)
    (lambda a: a.update(x=a["x"].float()), TypeError, "bfloat16 or float16"),
    (lambda a: a.update(w=a["w"].half()), TypeError, "bfloat16 or float16"),
    (lambda a: a.update(x=a["x"][:, :8]), ValueError, "H=8"),
    (lambda a: a.update(x=torch.randn(10, 12).to(BF), w=torch.randn(3, 16, 12).to(BF)), ValueError, "multiples of 8"),
    (lambda a: a.update(w=torch.randn(3, 12, 16).to(BF)), ValueError, "multiples of 8"),  # F = 6
    (lambda a: a.update(w=a["w"].transpose(0, 1).contiguous().transpose(0, 1)), ValueError, "packed experts"),
    (lambda a: a.update(x=a["x"].t().contiguous().t()), ValueError, "H contiguous"),
    (lambda a: a.update(gi=a["gi"].long()), TypeError, "gather_idx must be 1-D int32"),
    (lambda a: a.update(offs=a["offs"].long()), TypeError, "offs must be int32"),
    (lambda a: a.update(offs=a["offs"][:2]), TypeError, "offs must be int32"),
    (lambda a: a.update(inv=a["inv"][:3]), ValueError, "inverse"),
    (lambda a: a.update(k=3), ValueError, "T\\*top_k"),
    (lambda a: a.update(x=None), TypeError, "x must be a torch.Tensor"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_check_inputs_errors(i):
    mutate, exc, fragment = BAD[i]
    x, w, gi, inv, offs, k, _ = case()
    a = dict(x=x, w=w, gi=gi, inv=inv, offs=offs, k=k)
    mutate(a)
    with pytest.raises(exc, match=fragment):
        check_inputs(a["x"], a["w"], a["gi"], a["inv"], a["offs"], a["k"])


def test_fake_shapes_on_meta():
    x, w, gi, inv, offs, k, _ = case(T=7, k=3, H=24, F=16, E=4)
    h, pre = torch.ops.cudadent42.moe_up_swiglu(x.to("meta"), w.to("meta"), gi.to("meta"), inv.to("meta"),
                                                offs.to("meta"), k)
    assert h.shape == (21, 16) and pre.shape == (21, 32) and h.dtype == BF and h.device.type == "meta"
    h2, pre2 = _new_outputs(x, w, gi)
    assert h2.shape == h.shape and pre2.shape == pre.shape


def test_dswiglu_matches_autograd():
    pre = torch.randn(9, 12, dtype=torch.float64, requires_grad=True)
    gate, up = pre.chunk(2, -1)
    h = torch.nn.functional.silu(gate) * up
    dh = torch.randn_like(h)
    dpre_extra = torch.randn_like(pre)
    (want,) = torch.autograd.grad((h * dh).sum() + (pre * dpre_extra).sum(), pre)
    got = dswiglu(dh, dpre_extra, pre.detach())
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dswiglu(dh, None, pre.detach()), want - dpre_extra, rtol=1e-5, atol=1e-5)


def test_reference_matches_the_staged_path():
    x, w, gi, inv, offs, k, r = case(T=33, k=3, H=16, F=8, E=5)
    h, pre = up_swiglu_reference(x, w, gi, offs)
    with use_grouped_mm(lambda a, b, o: grouped_mm_reference(a, b, o)):
        staged = up_act(gather_tokens(x.float(), r), w.float(), r)
    torch.testing.assert_close(h, staged, rtol=1e-5, atol=1e-5)
    assert pre.shape == (99, 16)


def test_reference_zeroes_rows_past_offs():
    x, w, _, _, _, k, _ = case(T=6, k=2, H=16, F=8, E=3)
    ids = torch.tensor([[0, 9], [1, 2], [9, 9], [2, 0], [1, 1], [0, 2]])  # 9: sentinel (expert parallelism)
    r = routing_metadata(ids, 3)
    h, pre = up_swiglu_reference(x, w, (r.order // k).to(torch.int32), r.offs)
    tail = int(r.offs[-1])
    assert tail == 9 and (h[tail:] == 0).all() and (pre[tail:] == 0).all() and (pre[:tail] != 0).any()


def test_family_case_and_reference_on_cpu():
    fam = families.get("moe-up")
    p = dict(fam.problem_defaults, T=21, k=2, H=16, F=8, E=4)
    c = fam.make_case(p, device="cpu")
    h, pre = fam.reference(c, True)
    assert h.shape == (42, 8) and pre.shape == (42, 16) and int(c["offs"][-1]) == 42
    assert fam.flops(p) == 2.0 * 42 * 16 * 16
    assert fam.table_key(p).startswith("moe-up|bf16|")
