"""Fused MoE up-projection config on sm_90a (csrc/kernels/moe): gathers x rows by the routing
order with cp.async, SwiGLU in the epilogue, stores h and the pre-activation.

The tile is fixed by the design (128 gathered rows, 128 h columns = a 256-wide gate|up wgmma
tile, K 64); what varies is the dtype and the pipeline depth.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .base import DTYPES, SMEM_LIMIT_BYTES, ConfigError, check, check_canonical, generated_header, round_up

_NAME_RE = re.compile(r"^moeup_(?P<dtype>bf16|fp16)_swiglu_st(?P<stages>\d{1,2})$")
CONSUMER_WARPGROUPS = 2
WG_M, HALF_N, TILE_K, CHUNK_N = 64, 128, 64, 64


@dataclass(frozen=True)
class MoeUpConfig:
    dtype: str = "bf16"
    stages: int = 4

    family = "moe-up"

    tile_m = CONSUMER_WARPGROUPS * WG_M  # gathered rows per tile
    tile_f = HALF_N  # h columns per tile (the wgmma tile is gate|up: 2 * tile_f wide)

    @property
    def name(self) -> str:
        return f"moeup_{self.dtype}_swiglu_st{self.stages}"

    @classmethod
    @functools.lru_cache(maxsize=64)
    def from_name(cls, name: str) -> "MoeUpConfig":
        m = _NAME_RE.match(name) if isinstance(name, str) else None
        if not m:
            raise ConfigError(f"not a MoE up-projection config name: {name!r} (expected e.g. {cls().name})")
        cfg = cls(dtype=m["dtype"], stages=int(m["stages"])).validate()
        return check_canonical(cfg, name)

    def key(self) -> str:
        return repr(self)

    def elem_bytes(self) -> int:
        return 2

    def smem_bytes(self) -> int:
        """Mirrors MoeUpTraits::SharedStorage (each array 1024-aligned, then 2 barriers per stage)."""
        e = self.elem_bytes()
        a = CONSUMER_WARPGROUPS * round_up(WG_M * TILE_K * self.stages * e, 1024)
        b = round_up(2 * HALF_N * TILE_K * self.stages * e, 1024)
        c = CONSUMER_WARPGROUPS * round_up(WG_M * CHUNK_N * 2 * e, 1024)
        barriers = 2 * 8 * self.stages
        return round_up(a + b + c + barriers, 1024)

    def validate(self) -> "MoeUpConfig":
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if not isinstance(self.stages, int) or not 2 <= self.stages <= 8:
            problems.append(f"stages={self.stages} must be in 2..8 (the gather arrives one stage late: >= 2)")
        elif self.smem_bytes() > SMEM_LIMIT_BYTES:
            problems.append(f"needs {self.smem_bytes()} bytes of shared memory > {SMEM_LIMIT_BYTES}")
        check("MoE up-projection", self.name, problems)
        return self

    def render(self) -> str:
        """The one translation unit that instantiates exactly this kernel."""
        self.validate()
        return generated_header(self) + f"""#include "kernels/moe/moe_up_launch.hpp"

using Traits = cd42::moe::MoeUpTraits<{DTYPES[self.dtype]}, {self.stages}>;
static_assert(Traits::kSmemBytes <= {self.smem_bytes()}, "python smem model is out of date");

CD42_DEFINE_COMMON_EXPORTS("{self.name}")
CD42_DEFINE_MOE_UP_EXPORTS(Traits)
"""
