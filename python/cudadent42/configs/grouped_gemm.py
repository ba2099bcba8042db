"""Grouped-GEMM config (torch._grouped_mm forms) on sm_90a (csrc/kernels/grouped_gemm)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .base import DTYPES, MAX_ACCUMULATOR_REGS, SMEM_LIMIT_BYTES, ConfigError, check, generated_header, round_up

# Which dimension the offsets cut, as in torch._grouped_mm: "m" 2D x 3D (a's
# rows), "n" 3D x 2D (b's columns), "k" 2D x 2D (the reduction), "none" 3D x 3D.
MODES = {"none": "kNone", "m": "kM", "n": "kN", "k": "kK"}
_NAME_RE = re.compile(
    r"^ggemm_(?P<dtype>bf16|fp16)_rag(?P<mode>none|m|n|k)_a(?P<a_major>[km])_b(?P<b_major>[kn])"
    r"_m(?P<tile_m>\d{1,4})_n(?P<tile_n>\d{1,4})_k(?P<tile_k>\d{1,4})_st(?P<stages>\d{1,2})$"
)
CONSUMER_WARPGROUPS = 2


@dataclass(frozen=True)
class GroupedGemmConfig:
    dtype: str = "bf16"
    mode: str = "m"  # see MODES
    a_major: str = "k"  # "k": A's K contiguous; "m": A's M contiguous
    b_major: str = "k"  # "k": B's K contiguous ([N, K] rows); "n": B's N contiguous ([K, N] rows)
    wg_m: int = 64  # rows per consumer warpgroup (tile M = 2 * wg_m)
    tile_n: int = 256
    tile_k: int = 64
    stages: int = 4

    family = "grouped-gemm"

    @property
    def tile_m(self) -> int:
        return CONSUMER_WARPGROUPS * self.wg_m

    @property
    def name(self) -> str:
        return (f"ggemm_{self.dtype}_rag{self.mode}_a{self.a_major}_b{self.b_major}_m{self.tile_m}"
                f"_n{self.tile_n}_k{self.tile_k}_st{self.stages}")

    @classmethod
    @functools.lru_cache(maxsize=256)
    def from_name(cls, name: str) -> "GroupedGemmConfig":
        m = _NAME_RE.match(name) if isinstance(name, str) else None
        if not m:
            raise ConfigError(f"not a grouped-GEMM config name: {name!r} (expected e.g. {cls().name})")
        d = m.groupdict()
        tile_m = int(d.pop("tile_m"))
        if tile_m % CONSUMER_WARPGROUPS:
            raise ConfigError(f"{name}: tile M must be a multiple of {CONSUMER_WARPGROUPS}")
        strs = ("dtype", "mode", "a_major", "b_major")
        cfg = cls(wg_m=tile_m // CONSUMER_WARPGROUPS, **{k: (v if k in strs else int(v)) for k, v in d.items()})
        return cfg.validate()

    def key(self) -> str:
        return repr(self)

    def elem_bytes(self) -> int:
        return 2

    def smem_bytes(self) -> int:
        """Mirrors GroupedGemmTraits::SharedStorage (each array 1024-aligned)."""
        e = self.elem_bytes()
        a = CONSUMER_WARPGROUPS * round_up(self.wg_m * self.tile_k * self.stages * e, 1024)
        b = round_up(self.tile_n * self.tile_k * self.stages * e, 1024)
        c = CONSUMER_WARPGROUPS * round_up(self.wg_m * 64 * 2 * e, 1024)
        barriers = 2 * 8 * self.stages
        return round_up(a + b + c + barriers, 1024)

    def accumulator_regs(self) -> int:
        return self.wg_m * self.tile_n // 128

    def validate(self) -> "GroupedGemmConfig":
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if self.mode not in MODES:
            problems.append(f"mode {self.mode!r} not in {sorted(MODES)}")
        if self.a_major not in ("k", "m"):
            problems.append(f"a_major {self.a_major!r} must be 'k' or 'm'")
        if self.b_major not in ("k", "n"):
            problems.append(f"b_major {self.b_major!r} must be 'k' or 'n'")
        if self.wg_m not in (64, 128):
            problems.append(f"wg_m={self.wg_m}: one or two 64-row wgmma atoms per warpgroup")
        if self.tile_n not in (64, 128, 192, 256):
            problems.append(f"tile_n={self.tile_n} must be one of 64/128/192/256 (wgmma N, 64-col epilogue chunks)")
        if self.tile_k * self.elem_bytes() != 128:
            problems.append(f"tile_k={self.tile_k}: a K tile must span one 128-byte swizzle row (64 for 16-bit)")
        if (self.mode, self.a_major) in (("m", "m"), ("k", "k")) or (self.mode, self.b_major) in (("n", "n"), ("k", "k")):
            problems.append(f"mode {self.mode} with a_major={self.a_major}, b_major={self.b_major}: the ragged dimension "
                            "must not be an operand's contiguous one (ops/grouped_gemm.py ragged_strided)")
        if not 2 <= self.stages <= 8:
            problems.append(f"stages={self.stages} must be in 2..8")
        if not problems:
            if self.accumulator_regs() > MAX_ACCUMULATOR_REGS:
                problems.append(f"{self.accumulator_regs()} fp32 accumulators per thread exceed "
                                f"{MAX_ACCUMULATOR_REGS} (register budget)")
            if self.smem_bytes() > SMEM_LIMIT_BYTES:
                problems.append(f"needs {self.smem_bytes()} bytes of shared memory > {SMEM_LIMIT_BYTES}")
        check("grouped-GEMM", self.name, problems)
        return self

    def render(self) -> str:
        """The one translation unit that instantiates exactly this kernel."""
        self.validate()
        return generated_header(self) + f"""#include "kernels/grouped_gemm/ggemm_launch.hpp"

using Traits = cd42::ggemm::GroupedGemmTraits<{DTYPES[self.dtype]}, {str(self.a_major == 'k').lower()},
    {str(self.b_major == 'k').lower()}, cd42::ggemm::Ragged::{MODES[self.mode]}, {self.wg_m}, {self.tile_n},
    {self.tile_k}, {self.stages}>;
static_assert(Traits::kSmemBytes <= {self.smem_bytes()}, "python smem model is out of date");

CD42_DEFINE_COMMON_EXPORTS("{self.name}")
CD42_DEFINE_GROUPED_GEMM_EXPORTS(Traits)
"""
