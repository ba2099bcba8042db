"""Grouped GEMM without a GPU: argument errors, config names, output shapes,
and the float32 reference itself."""
import re

import pytest
import torch

from cudadent42.configs.base import ConfigError
from cudadent42.configs.grouped_gemm import GroupedGemmConfig
from cudadent42.ops.grouped_gemm import check_inputs, new_output
from cudadent42.reference.grouped_gemm import group_sizes, grouped_mm_reference, offsets

BF = torch.bfloat16


def t(*shape, dtype=BF):
    return torch.randn(*shape).to(dtype)


OFFS4 = torch.tensor([1, 2, 3, 4], dtype=torch.int32)

BAD = [  # (a, b, offs, exception, message fragment)
    (None, t(4, 8, 8), OFFS4, TypeError, "a must be a torch.Tensor"),
    (t(4, 8), "b", OFFS4, TypeError, "b must be a torch.Tensor"),
    (t(8), t(4, 8, 8), OFFS4, ValueError, "2-D or 3-D"),
    (t(4, 8, dtype=torch.float32), t(4, 8, 8, dtype=torch.float32), OFFS4, TypeError, "bfloat16 or float16"),
    (t(4, 8), t(4, 8, 8, dtype=torch.float16), OFFS4, TypeError, "bfloat16 or float16"),
    (t(4, 16), t(4, 8, 8), OFFS4, ValueError, "contraction dims differ"),
    (t(4, 8), t(4, 8, 8), None, TypeError, "offs"),
    (t(4, 8), t(4, 8, 8), OFFS4.long(), TypeError, "int32"),
    (t(4, 8), t(4, 8, 8), OFFS4.view(2, 2), TypeError, "1-D"),
    (t(4, 8), t(3, 8, 8), OFFS4, ValueError, "b.shape[0]"),
    (t(3, 8, 8), t(8, 16), OFFS4, ValueError, "a.shape[0]"),
    (t(4, 8, 8), t(4, 8, 8), OFFS4, ValueError, "offs must be None"),
    (t(3, 8, 8), t(4, 8, 8), None, ValueError, "batch sizes differ"),
    (t(4, 12), t(4, 12, 8), OFFS4, ValueError, "multiple of 8"),           # K = 12: a's rows unaligned
    (t(4, 8), t(4, 8, 12), OFFS4, ValueError, "multiple of 8"),            # N = 12: b's rows unaligned
    (t(4, 16)[:, ::2], t(4, 8, 8), OFFS4, ValueError, "unit stride"),      # no contiguous dim
    (t(8, 5).t(), t(8, 16), OFFS4, ValueError, "multiple of 8"),            # 2Dx2D: a column-major, stride 5
    (t(4, 8), t(0, 8, 8), OFFS4[:0], ValueError, "at least one group"),    # 2Dx3D with no groups
]


@pytest.mark.parametrize("a,b,offs,exc,frag", BAD)
def test_bad_inputs_raise_clear_errors(a, b, offs, exc, frag):
    with pytest.raises(exc, match=re.escape(frag)):
        check_inputs(a, b, offs)


def test_out_dtype_must_match():
    with pytest.raises(TypeError, match="out_dtype"):
        check_inputs(t(4, 8), t(4, 8, 8), OFFS4, out_dtype=torch.float32)


@pytest.mark.parametrize("a,b,offs,shape", [
    (t(10, 8), t(4, 8, 16), OFFS4, (10, 16)),
    (t(4, 6, 8), t(8, 20), OFFS4, (6, 20)),
    (t(6, 16), t(16, 12), OFFS4, (4, 6, 12)),
    (t(3, 6, 8), t(3, 8, 12), None, (3, 6, 12)),
])
def test_output_shape_and_padded_stride(a, b, offs, shape):
    out = new_output(a, b, offs, check_inputs(a, b, offs) if shape[-1] % 8 == 0 else
                     {(2, 3): "m", (3, 2): "n", (2, 2): "k", (3, 3): "none"}[(a.dim(), b.dim())])
    assert tuple(out.shape) == shape
    assert out.stride(-1) == 1 and out.stride(-2) % 8 == 0  # 16-byte rows, as torch._grouped_mm allocates


def test_config_names_round_trip_and_reject():
    for cfg in (GroupedGemmConfig(), GroupedGemmConfig(mode="k", a_major="m", b_major="n", tile_n=128, stages=6)):
        assert GroupedGemmConfig.from_name(cfg.name) == cfg
        assert "GroupedGemmTraits" in cfg.render()
    for bad in ("ggemm_bf16_ragx_ak_bk_m128_n256_k64_st4", "ggemm_bf16_ragm_ak_bk_m128_n256_k64_st4000000",
                "ggemm_bf16_ragm_ak_bk_m128_n320_k64_st4", "ggemm_bf16_ragm_ak_bk_m128_n256_k64_st9", 42):
        with pytest.raises(ConfigError):
            GroupedGemmConfig.from_name(bad)
    with pytest.raises(ConfigError, match="shared memory"):
        GroupedGemmConfig(stages=8).validate()


@pytest.mark.parametrize("kind", ["balanced", "skewed", "one"])
@pytest.mark.parametrize("G", [1, 8, 128])
def test_group_sizes_cover_total(kind, G):
    sizes = group_sizes(1000, G, kind, torch.Generator().manual_seed(0))
    assert len(sizes) == G and sum(sizes) == 1000 and min(sizes) >= 0
    if kind == "skewed" and G >= 20:
        assert sizes.count(0) >= 1


def test_reference_forms_agree_with_each_other():
    """2Dx3D, 3Dx2D and 2Dx2D are transposes/sums of one another."""
    G, T, K, N = 3, 10, 8, 16
    a, b = torch.randn(T, K), torch.randn(G, K, N)
    offs = offsets([3, 0, 6], "cpu")  # ends 3, 3, 9
    out = grouped_mm_reference(a, b, offs)
    assert torch.allclose(out[:3], a[:3] @ b[0]) and torch.allclose(out[3:9], a[3:9] @ b[2])
    assert torch.isnan(out[9:]).all()
    out_n = grouped_mm_reference(b.transpose(1, 2).contiguous(), a.t().contiguous(), offs)  # (N, T)
    assert torch.allclose(out_n[:, :9], out[:9].t(), atol=1e-5)
    wg = grouped_mm_reference(a.t(), torch.randn(T, N), offs)
    assert wg.shape == (G, K, N) and (wg[1] == 0).all()  # empty group: zero gradient
