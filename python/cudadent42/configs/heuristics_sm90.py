"""Default config choice on sm_90 when no tuned entry exists.

Each choice states the measurement behind it. The big tile (128x256, four
stages) keeps the tensor cores fed on large problems; narrow outputs use a
128-wide N tile so more CTAs get work.
"""
from __future__ import annotations

from .attention import AttnFwdConfig
from .attention_bwd import AttnBwdConfig
from .base import ConfigError
from .gemm import GemmConfig
from .grouped_gemm import GroupedGemmConfig


def gemm_config(dtype: str, b_major: str, M: int, N: int, K: int, num_sms: int = 132) -> GemmConfig:
    tiles_256 = -(-M // 128) * -(-N // 256)
    if N <= 128 or tiles_256 < num_sms // 2:
        return GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=128, stages=6)
    return GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=256, stages=4)


def grouped_gemm_config(dtype: str, mode: str, a_major: str, b_major: str, N: int) -> GroupedGemmConfig:
    """128x256 tiles with 4 stages (the dense GEMM's large-problem choice);
    128-wide N tiles with 6 stages where N itself is narrow."""
    tile_n, stages = (128, 6) if N <= 128 else (256, 4)
    return GroupedGemmConfig(dtype=dtype, mode=mode, a_major=a_major, b_major=b_major, tile_n=tile_n, stages=stages)


# (head_dim) -> (block_n, stages): the K/V block is as wide as shared memory
# (Q + 2 stages of K and V) and the register budget allow while softmax still
# overlaps PV. D=256: N=64 overlaps in every variant and ran at 674 TFLOP/s
# vs 471 for N=80 (H100 sweep, S=8192).
_ATTN_FWD_TILES = {64: (128, 3), 96: (128, 2), 128: (128, 2), 192: (80, 2), 256: (64, 2)}


def attn_bwd_config(dtype: str, head_dim: int, mask: str, deterministic: bool = False, softcap: bool = False,
                    varlen: bool = False):
    """Backward: 128 query rows per step at D=64 (half-size GEMMs there leave
    the per-step barriers and stores exposed with 64), 64 rows otherwise and
    with softcap (its tanh derivative, kept from P to dS, spills at 128)."""
    return AttnBwdConfig(dtype=dtype, head_dim=head_dim, mask=mask, deterministic=deterministic,
                         block_m=128 if head_dim == 64 and not softcap else 64, softcap=softcap, varlen=varlen)


def _softmax_under_pv(head_dim: int) -> bool:
    """Whether the overlapped step waits for its PV wgmma only after the
    softmax, which also turns on the O-rescale skip (FwdTraits). Measured on
    an H200: off at D=64 (+5-10% off, the PV GEMM is short and the P
    conversion interleaves with the exponentials only when ptxas may place
    the wait; with the skip still 2-4% better off); on at D=128 and D=256
    (2 reps at 4k-16k: D=128 causal +2-6% over off, which had won by 1-3%
    before the skip existed; D=256 +5-11%, D=128 non-causal +2-3% from the
    skip). D=96 follows D=128, D=192 follows D=256; the same for every
    mask."""
    return head_dim > 64


def attn_fwd_config(dtype: str, head_dim: int, mask: str, softcap: bool, varlen: bool):
    if head_dim not in _ATTN_FWD_TILES:
        raise ConfigError(f"attention forward: head_dim={head_dim} not in {tuple(_ATTN_FWD_TILES)}")
    block_n, stages = _ATTN_FWD_TILES[head_dim]
    return AttnFwdConfig(dtype=dtype, head_dim=head_dim, block_n=block_n, stages=stages, mask=mask,
                         softcap=softcap, varlen=varlen, softmax_under_pv=_softmax_under_pv(head_dim))
