"""Attention forward config (csrc/kernels/attention)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .base import DTYPES, SMEM_LIMIT_BYTES, ConfigError, check, check_canonical, generated_header, round_up

HEAD_DIMS = (64, 96, 128, 192, 256)
MASKS = ("none", "causal", "local")
BLOCK_M = 128  # two consumer warpgroups x 64 rows, fixed by the kernel
# fp32 S + fp32 O + bf16 P registers per consumer thread must leave room for
# addresses and softmax state under the 240-register consumer budget.
MAX_FRAGMENT_REGS = 200

_NAME_RE = re.compile(
    r"^attn_fwd_(?P<dtype>bf16|fp16)_hd(?P<head_dim>\d+)_m128_n(?P<block_n>\d+)_st(?P<stages>\d+)_wg2"
    r"(?:_(?P<mask>causal|local))?(?P<softcap>_softcap)?(?P<varlen>_varlen)?(?P<pvwait>_pvwait)?$"
)
_MASK_ENUM = {"none": "kNone", "causal": "kCausal", "local": "kLocal"}


@dataclass(frozen=True)
class AttnFwdConfig:
    dtype: str = "bf16"
    head_dim: int = 128
    block_n: int = 128  # keys per K/V pipeline stage
    stages: int = 2
    mask: str = "none"  # "causal" and "local" run the same windowed code path
    softcap: bool = False
    varlen: bool = False
    # Softmax of block n under the PV wgmma of block n+1 (FlashAttention-3's
    # intra-warpgroup overlap), with warps whose rows kept their max skipping
    # O's rescale (softmax.hpp). False leaves ptxas free to place the PV
    # wait, which it puts ahead of the softmax, and rescales O every block
    # (name suffix "_pvwait").
    softmax_under_pv: bool = True

    family = "attn-fwd"

    @property
    def name(self) -> str:
        n = f"attn_fwd_{self.dtype}_hd{self.head_dim}_m{BLOCK_M}_n{self.block_n}_st{self.stages}_wg2"
        if self.mask != "none":
            n += f"_{self.mask}"
        if self.softcap:
            n += "_softcap"
        if self.varlen:
            n += "_varlen"
        if not self.softmax_under_pv:
            n += "_pvwait"
        return n

    @classmethod
    @functools.lru_cache(maxsize=256)  # explicit config names are parsed once, not on every call
    def from_name(cls, name: str) -> "AttnFwdConfig":
        m = _NAME_RE.match(name)
        if not m:
            raise ConfigError(f"not an attention-forward config name: {name!r} (expected e.g. {cls().name})")
        d = m.groupdict()
        cfg = cls(dtype=d["dtype"], head_dim=int(d["head_dim"]), block_n=int(d["block_n"]),
                  stages=int(d["stages"]), mask=d["mask"] or "none", softcap=bool(d["softcap"]),
                  varlen=bool(d["varlen"]), softmax_under_pv=not d["pvwait"]).validate()
        return check_canonical(cfg, name)

    def key(self) -> str:
        return repr(self)

    def separate_o(self) -> bool:
        """O gets its own smem buffer when it fits and D > 64 (mirrors FwdTraits::kSeparateO)."""
        e = 2
        return self.head_dim > 64 and 2 * BLOCK_M * self.head_dim * e + 2 * self.block_n * self.head_dim * self.stages * e + 2048 \
            <= SMEM_LIMIT_BYTES

    def smem_bytes(self) -> int:
        e = 2
        q = round_up(BLOCK_M * self.head_dim * e, 1024)
        o = q if self.separate_o() else 1024
        kv = 2 * round_up(self.block_n * self.head_dim * self.stages * e, 1024)
        barriers = 16 * (1 + 2 * self.stages) + 32 + 8
        return round_up(q + o + kv + barriers, 1024)

    def fragment_regs(self) -> int:
        return self.block_n // 2 + self.head_dim // 2 + self.block_n // 4

    def validate(self) -> "AttnFwdConfig":
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if self.head_dim not in HEAD_DIMS:
            problems.append(f"head_dim={self.head_dim} not in {HEAD_DIMS}")
        if self.block_n % 16 or not 16 <= self.block_n <= 256:
            problems.append(f"block_n={self.block_n} must be a multiple of 16 in [16, 256]")
        if not 2 <= self.stages <= 4:
            problems.append(f"stages={self.stages} must be in 2..4")
        if self.mask not in MASKS:
            problems.append(f"mask {self.mask!r} not in {MASKS}")
        if not problems:
            if self.fragment_regs() > MAX_FRAGMENT_REGS:
                problems.append(f"S/O/P fragments need {self.fragment_regs()} registers per thread "
                                f"> {MAX_FRAGMENT_REGS} (register budget)")
            if self.smem_bytes() > SMEM_LIMIT_BYTES:
                problems.append(f"needs {self.smem_bytes()} bytes of shared memory > {SMEM_LIMIT_BYTES}")
        check("attention", self.name, problems)
        return self

    def render(self) -> str:
        self.validate()
        return generated_header(self) + f"""#include "kernels/attention/fwd_launch.hpp"

using Traits = cd42::attn::FwdTraits<{DTYPES[self.dtype]}, {self.head_dim}, {self.block_n}, {self.stages},
                                     cd42::attn::MaskKind::{_MASK_ENUM[self.mask]}, {str(self.softcap).lower()},
                                     {str(self.varlen).lower()}, {str(self.softmax_under_pv).lower()}>;
static_assert(Traits::kSmemBytes <= {self.smem_bytes()}, "python smem model is out of date");

CD42_DEFINE_COMMON_EXPORTS("{self.name}")
CD42_DEFINE_ATTN_FWD_EXPORTS(Traits)
"""
