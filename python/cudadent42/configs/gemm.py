"""GEMM config: C[M,N] = A[M,K] @ B[K,N] on sm_90a (csrc/kernels/gemm)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .base import (DTYPES, MAX_ACCUMULATOR_REGS, SMEM_LIMIT_BYTES, ConfigError, check, check_canonical,
                   generated_header, round_up)

_NAME_RE = re.compile(
    r"^gemm_(?P<dtype>bf16|fp16)_b(?P<b_major>[kn])_m(?P<tile_m>\d+)_n(?P<tile_n>\d+)"
    r"_k(?P<tile_k>\d+)_st(?P<stages>\d+)_g(?P<group_m>\d+)$"
)
CONSUMER_WARPGROUPS = 2  # fixed by the kernel: each owns wg_m rows of the tile
# Tile-rows per rasterization group. The sweep space stops at 16; the bound
# keeps a hand-written name from carrying an absurd int template argument.
MAX_GROUP_M = 64


@dataclass(frozen=True)
class GemmConfig:
    dtype: str = "bf16"  # input/output dtype; accumulation is fp32
    b_major: str = "k"  # "k": B stored [N,K] (K contiguous); "n": B stored [K,N]
    wg_m: int = 64  # rows per consumer warpgroup (tile M = 2 * wg_m)
    tile_n: int = 256
    tile_k: int = 64
    stages: int = 4  # TMA pipeline depth
    group_m: int = 8  # tile-rows per rasterization group (L2 reuse)

    family = "gemm"

    @property
    def tile_m(self) -> int:
        return CONSUMER_WARPGROUPS * self.wg_m

    @property
    def name(self) -> str:
        return (f"gemm_{self.dtype}_b{self.b_major}_m{self.tile_m}_n{self.tile_n}_k{self.tile_k}"
                f"_st{self.stages}_g{self.group_m}")

    @classmethod
    @functools.lru_cache(maxsize=256)  # explicit config names are parsed once, not on every call
    def from_name(cls, name: str) -> "GemmConfig":
        m = _NAME_RE.match(name)
        if not m:
            raise ConfigError(f"not a GEMM config name: {name!r} (expected e.g. {cls().name})")
        d = m.groupdict()
        tile_m = int(d.pop("tile_m"))
        if tile_m % CONSUMER_WARPGROUPS:
            raise ConfigError(f"{name}: tile M must be a multiple of {CONSUMER_WARPGROUPS}")
        cfg = cls(dtype=d["dtype"], b_major=d["b_major"], wg_m=tile_m // CONSUMER_WARPGROUPS,
                  **{k: int(v) for k, v in d.items() if k not in ("dtype", "b_major")})
        return check_canonical(cfg.validate(), name)

    def key(self) -> str:
        return repr(self)

    def elem_bytes(self) -> int:
        return 2

    def smem_bytes(self) -> int:
        """Mirrors GemmTraits::SharedStorage (each operand array 1024-aligned)."""
        e = self.elem_bytes()
        a = CONSUMER_WARPGROUPS * round_up(self.wg_m * self.tile_k * self.stages * e, 1024)
        b = round_up(self.tile_n * self.tile_k * self.stages * e, 1024)
        c = CONSUMER_WARPGROUPS * round_up(self.wg_m * 64 * 2 * e, 1024)
        barriers = 2 * 8 * self.stages
        return round_up(a + b + c + barriers, 1024)

    def accumulator_regs(self) -> int:
        return self.wg_m * self.tile_n // 128

    def validate(self) -> "GemmConfig":
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if self.b_major not in ("k", "n"):
            problems.append(f"b_major {self.b_major!r} must be 'k' or 'n'")
        if self.wg_m not in (64, 128):
            problems.append(f"wg_m={self.wg_m}: one or two 64-row wgmma atoms per warpgroup")
        if self.tile_n not in (64, 128, 192, 256):
            problems.append(f"tile_n={self.tile_n} must be one of 64/128/192/256 (wgmma N, 64-col epilogue chunks)")
        if self.tile_k * self.elem_bytes() != 128:
            problems.append(f"tile_k={self.tile_k}: a K tile must span one 128-byte swizzle row (64 for 16-bit)")
        if not 2 <= self.stages <= 8:
            problems.append(f"stages={self.stages} must be in 2..8")
        if not 1 <= self.group_m <= MAX_GROUP_M:
            problems.append(f"group_m={self.group_m} must be in 1..{MAX_GROUP_M}")
        if not problems:
            if self.accumulator_regs() > MAX_ACCUMULATOR_REGS:
                problems.append(f"{self.accumulator_regs()} fp32 accumulators per thread exceed "
                                f"{MAX_ACCUMULATOR_REGS} (register budget)")
            if self.smem_bytes() > SMEM_LIMIT_BYTES:
                problems.append(f"needs {self.smem_bytes()} bytes of shared memory > {SMEM_LIMIT_BYTES}")
        check("GEMM", self.name, problems)
        return self

    def render(self) -> str:
        """The one translation unit that instantiates exactly this kernel."""
        self.validate()
        return generated_header(self) + f"""#include "kernels/gemm/gemm_launch.hpp"

using Traits = cd42::gemm::GemmTraits<{DTYPES[self.dtype]}, {str(self.b_major == 'k').lower()}, {self.wg_m},
                                      {self.tile_n}, {self.tile_k}, {self.stages}, {self.group_m}>;
static_assert(Traits::kSmemBytes <= {self.smem_bytes()}, "python smem model is out of date");

CD42_DEFINE_COMMON_EXPORTS("{self.name}")
CD42_DEFINE_GEMM_EXPORTS(Traits)
"""
