"""cudadent42.layers: rotary embedding and the attention module (CPU via the
SDPA path; the cudadent42 path on an sm_90 GPU)."""
import math

import pytest
import torch

from cudadent42.layers import MultiheadAttention, RotaryEmbedding


def test_rotary_matches_complex_rotation():
    torch.manual_seed(0)
    B, S, H, D = 2, 7, 3, 8
    x = torch.randn(B, S, H, D)
    rot = RotaryEmbedding(D, base=100.0)
    got = rot(x)
    # rotate-half pairing: element i pairs with i + D/2, angle t * base^(-2i/D)
    half = D // 2
    z = torch.complex(x[..., :half], x[..., half:])
    ang = torch.arange(S)[:, None].float() * (100.0 ** (-torch.arange(half).float() * 2 / D))[None]
    zr = z * torch.polar(torch.ones_like(ang), ang)[None, :, None, :]
    want = torch.cat((zr.real, zr.imag), dim=-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # relative positions: <R(t1) q, R(t2) k> depends on t1 - t2 only
    q, k = torch.randn(D), torch.randn(D)
    def at(v, t):
        return rot(v.expand(1, t + 1, 1, D).contiguous())[0, t, 0]
    assert math.isclose(float(at(q, 5) @ at(k, 3)), float(at(q, 9) @ at(k, 7)), rel_tol=1e-4)


def test_module_shapes_gqa_and_errors():
    m = MultiheadAttention(256, n_heads=4, n_kv_heads=2, attn_impl="sdpa")
    assert m.qkv.out_features == (4 + 2 * 2) * 64 and m.proj.in_features == 256
    x = torch.randn(2, 33, 256, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and m.qkv.weight.grad is not None
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        MultiheadAttention(256, n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="not supported by cudadent42"):
        MultiheadAttention(320, n_heads=4)  # head dim 80
    with pytest.raises(ValueError, match="window_size"):
        MultiheadAttention(256, n_heads=4, window_size=(64, 0), attn_impl="sdpa")


def test_sdpa_path_is_causal():
    torch.manual_seed(0)
    m = MultiheadAttention(128, n_heads=2, attn_impl="sdpa")
    x = torch.randn(1, 10, 128)
    y1 = m(x)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(1, 4, 128)  # the future must not change the past
    torch.testing.assert_close(m(x2)[:, :6], y1[:, :6])


@pytest.mark.gpu
def test_cudadent42_path_matches_sdpa_forward_and_backward():
    torch.manual_seed(0)
    ours = MultiheadAttention(1024, n_heads=16, n_kv_heads=4, device="cuda", dtype=torch.bfloat16)
    ref = MultiheadAttention(1024, n_heads=16, n_kv_heads=4, attn_impl="sdpa", device="cuda", dtype=torch.bfloat16)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 333, 1024, device="cuda", dtype=torch.bfloat16)
    xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    yo, yr = ours(xo), ref(xr)
    torch.testing.assert_close(yo, yr, atol=3e-2, rtol=3e-2)
    g = torch.randn_like(yo)
    yo.backward(g)
    yr.backward(g)
    torch.testing.assert_close(xo.grad, xr.grad, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(ours.qkv.weight.grad, ref.qkv.weight.grad, atol=1e-1, rtol=5e-2)
