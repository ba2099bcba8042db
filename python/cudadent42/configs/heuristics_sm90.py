"""Default config choice on sm_90 when no tuned entry exists.

Measured rationale lives in benchmarks/NOTES.md. The big tile (128x256, four
stages) keeps the tensor cores fed on large problems; narrow outputs use a
128-wide N tile so more CTAs get work.
"""
from __future__ import annotations

from .gemm import GemmConfig


def gemm_config(dtype: str, b_major: str, M: int, N: int, K: int, num_sms: int = 132) -> GemmConfig:
    tiles_256 = -(-M // 128) * -(-N // 256)
    if N <= 128 or tiles_256 < num_sms // 2:
        return GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=128, stages=6)
    return GemmConfig(dtype=dtype, b_major=b_major, wg_m=64, tile_n=256, stages=4)
