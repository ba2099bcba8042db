"""The configs the heuristics can pick: what `cudadent42 build` pre-builds
and what CI's ptxas/SASS checks must hold for."""
from __future__ import annotations

from .gemm import GemmConfig


def default_gemm_configs() -> list[GemmConfig]:
    out = []
    for dtype in ("bf16", "fp16"):
        for b_major in ("k", "n"):
            out.append(GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=256, stages=4))
            out.append(GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=128, stages=6))
    return out


def default_attn_fwd_configs():
    from .heuristics_sm90 import attn_fwd_config
    from .attention import HEAD_DIMS

    return [attn_fwd_config(dtype, d, mask, softcap=False, varlen=False)
            for dtype in ("bf16", "fp16") for d in HEAD_DIMS for mask in ("none", "causal", "local")]


def default_attn_bwd_configs():
    from .attention_bwd import BWD_HEAD_DIMS, BWD_MASKS
    from .heuristics_sm90 import attn_bwd_config

    return [attn_bwd_config(dtype, d, mask)
            for dtype in ("bf16", "fp16") for d in BWD_HEAD_DIMS for mask in BWD_MASKS]


FAMILIES = {"gemm": default_gemm_configs, "attn-fwd": default_attn_fwd_configs, "attn-bwd": default_attn_bwd_configs}


def default_configs(family: str | None = None):
    if family is None:
        return [c for fn in FAMILIES.values() for c in fn()]
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family]()
