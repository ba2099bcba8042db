"""CPU tests: config naming, parsing, validation, code generation, heuristics."""
import pytest

from cudadent42 import AttnFwdConfig, ConfigError, GemmConfig
from cudadent42.configs.defaults import default_configs
from cudadent42.configs.heuristics_sm90 import attn_fwd_config, gemm_config


def test_gemm_name_round_trips():
    for cfg in default_configs("gemm") + [GemmConfig(wg_m=128, tile_n=128, stages=3, group_m=4, dtype="fp16")]:
        assert GemmConfig.from_name(cfg.name) == cfg
    assert GemmConfig().name == "gemm_bf16_bk_m128_n256_k64_st4_g8"


def test_attn_name_round_trips():
    for cfg in default_configs("attn-fwd") + [AttnFwdConfig(mask="local", softcap=True, varlen=True)]:
        assert AttnFwdConfig.from_name(cfg.name) == cfg
    assert AttnFwdConfig(mask="causal").name == "attn_fwd_bf16_hd128_m128_n128_st2_wg2_causal"
    pvwait = AttnFwdConfig(mask="causal", softmax_under_pv=False)
    assert pvwait.name == "attn_fwd_bf16_hd128_m128_n128_st2_wg2_causal_pvwait"
    assert AttnFwdConfig.from_name(pvwait.name) == pvwait


def test_attn_softmax_under_pv_reaches_the_kernel():
    """The flag is a template argument of the generated source (so the two
    variants are different cache entries), true by default."""
    assert "true>;" in AttnFwdConfig().render().replace(" ", "").replace("\n", "")
    assert "false,false,false>;" in AttnFwdConfig(softmax_under_pv=False).render().replace(" ", "").replace("\n", "")


@pytest.mark.parametrize("bad,why", [
    (dict(tile_n=512), "tile_n"), (dict(stages=1), "stages"), (dict(dtype="fp8"), "dtype"),
    (dict(wg_m=96), "wg_m"), (dict(wg_m=128, tile_n=256), "accumulators"),
    (dict(stages=8, tile_n=256), "shared memory"),
])
def test_gemm_impossible_configs_are_rejected(bad, why):
    with pytest.raises(ConfigError, match=why):
        GemmConfig(**bad).validate()


@pytest.mark.parametrize("bad,why", [
    (dict(head_dim=80), "head_dim"), (dict(block_n=72), "block_n"), (dict(stages=5), "stages"),
    (dict(mask="sliding"), "mask"), (dict(head_dim=256, block_n=128), "registers"),
    (dict(head_dim=256, block_n=80, stages=3), "shared memory"),
])
def test_attn_impossible_configs_are_rejected(bad, why):
    with pytest.raises(ConfigError, match=why):
        AttnFwdConfig(**bad).validate()


def test_bad_names_are_rejected():
    with pytest.raises(ConfigError, match="not a GEMM config name"):
        GemmConfig.from_name("gemm_bf16")
    with pytest.raises(ConfigError, match="not an attention-forward config name"):
        AttnFwdConfig.from_name("attn_fwd_bf16_hd128")


def test_every_default_config_is_valid_and_renders_one_kernel():
    for cfg in default_configs():
        src = cfg.validate().render()
        assert src.count("using Traits =") == 1 and cfg.name in src
        assert cfg.smem_bytes() <= 227 * 1024


def test_heuristics_pick_valid_configs_for_every_supported_case():
    for dtype in ("bf16", "fp16"):
        for d in (64, 96, 128, 192, 256):
            for mask in ("none", "causal", "local"):
                for softcap in (False, True):
                    for varlen in (False, True):
                        cfg = attn_fwd_config(dtype, d, mask, softcap, varlen).validate()
                        assert (cfg.head_dim, cfg.mask, cfg.softcap, cfg.varlen) == (d, mask, softcap, varlen)
        for shape in ((1, 8, 8), (8192, 8192, 8192), (16384, 1024, 4096)):
            gemm_config(dtype, "k", *shape).validate()


def test_attn_bwd_config_names_and_limits():
    from cudadent42.configs.attention_bwd import AttnBwdConfig

    c = AttnBwdConfig(dtype="fp16", head_dim=96, mask="local")
    assert c.name == "attn_bwd_fp16_hd96_m64_n128_st2_local"
    assert AttnBwdConfig.from_name(c.name) == c
    assert AttnBwdConfig.from_name("attn_bwd_bf16_hd64_m64_n128_st3_det") == AttnBwdConfig(
        head_dim=64, stages=3, deterministic=True)
    with pytest.raises(ConfigError, match="stages=5"):
        AttnBwdConfig(stages=5).validate()
    assert AttnBwdConfig(head_dim=128, stages=3).smem_bytes() <= 227 * 1024
    with pytest.raises(ConfigError, match="shared memory"):  # with the fp32 dQ tile, 4 stages do not fit at D=128
        AttnBwdConfig(head_dim=128, stages=4).validate()
    assert c.smem_bytes() <= 227 * 1024
    m128 = AttnBwdConfig.from_name("attn_bwd_bf16_hd64_m128_n128_st2_causal")
    assert (m128.block_m, m128.head_dim, m128.mask) == (128, 64, "causal")
    with pytest.raises(ConfigError, match="block_m=128 needs head_dim=64"):
        AttnBwdConfig(head_dim=128, block_m=128).validate()
    sc = AttnBwdConfig.from_name("attn_bwd_bf16_hd128_m64_n128_st2_causal_softcap_det")
    assert (sc.softcap, sc.deterministic, sc.mask) == (True, True, "causal") and sc.name.endswith("_softcap_det")
    with pytest.raises(ConfigError, match="softcap spills"):
        AttnBwdConfig(head_dim=64, block_m=128, softcap=True).validate()
    with pytest.raises(ConfigError, match="head_dim=80"):
        AttnBwdConfig(head_dim=80).validate()
    # Head dims 192/256: 64 keys per CTA, head dim split between the warpgroups.
    wide = AttnBwdConfig(head_dim=256, mask="causal", varlen=True)
    assert wide.name == "attn_bwd_bf16_hd256_m64_n64_st2_causal_varlen" and AttnBwdConfig.from_name(wide.name) == wide
    assert wide.smem_bytes() <= 227 * 1024
    with pytest.raises(ConfigError, match="64 keys per CTA"):
        AttnBwdConfig.from_name("attn_bwd_bf16_hd256_m64_n128_st2")
    with pytest.raises(ConfigError, match="shared memory"):
        AttnBwdConfig(head_dim=256, stages=3).validate()
    with pytest.raises(ConfigError, match="block_m=128"):
        AttnBwdConfig(head_dim=192, block_m=128).validate()
    with pytest.raises(ConfigError, match="not an attention-backward config"):
        AttnBwdConfig.from_name("attn_bwd_bf16_hd64")
