"""Attention backward config (csrc/kernels/attention/bwd_*): 2 consumer
warpgroups; 128 keys per CTA at head dims 64-128 (bwd_traits.hpp), 64 keys
with the head dim split between the warpgroups at 192/256
(bwd_wide_traits.hpp); query rows per step (64, or 128 at head dim 64) and
the Q/dO pipeline depth are tunable."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .base import DTYPES, SMEM_LIMIT_BYTES, ConfigError, check, check_canonical, generated_header, round_up

BWD_HEAD_DIMS = (64, 96, 128, 192, 256)
WIDE_HEAD_DIMS = (192, 256)  # dK + dV of 64 keys x D (D regs/thread) do not fit: split D (bwd_wide_traits.hpp)
BWD_MASKS = ("none", "causal", "local")
BLOCK_MS = (64, 128)  # 128 only at head dim 64 (register budget)
_MASK_ENUM = {"none": "kNone", "causal": "kCausal", "local": "kLocal"}
_NAME_RE = re.compile(r"^attn_bwd_(?P<dtype>bf16|fp16)_hd(?P<head_dim>\d+)_m(?P<block_m>\d+)_n(?P<block_n>\d+)_st(?P<stages>\d+)"
                      r"(?:_(?P<mask>causal|local))?(?P<varlen>_varlen)?(?P<softcap>_softcap)?(?P<det>_det)?$")


@dataclass(frozen=True)
class AttnBwdConfig:
    dtype: str = "bf16"
    head_dim: int = 128
    mask: str = "none"
    deterministic: bool = False  # dQ added in a fixed key-block order: bitwise reproducible gradients
    stages: int = 2  # Q / dO (+ row statistics) pipeline depth
    block_m: int = 64  # query rows per step
    softcap: bool = False  # scores = softcap * tanh(scale * q.k / softcap), as the forward
    varlen: bool = False  # packed sequences with cu_seqlens (flash_attn_varlen_func)

    family = "attn-bwd"

    @property
    def wide(self) -> bool:
        return self.head_dim in WIDE_HEAD_DIMS

    @property
    def block_n(self) -> int:
        """Keys per CTA: fixed by the variant."""
        return 64 if self.wide else 128

    @property
    def name(self) -> str:
        n = f"attn_bwd_{self.dtype}_hd{self.head_dim}_m{self.block_m}_n{self.block_n}_st{self.stages}"
        n = n if self.mask == "none" else f"{n}_{self.mask}"
        n = n + "_varlen" if self.varlen else n
        n = n + "_softcap" if self.softcap else n
        return n + "_det" if self.deterministic else n

    @classmethod
    @functools.lru_cache(maxsize=64)
    def from_name(cls, name: str) -> "AttnBwdConfig":
        m = _NAME_RE.match(name)
        if not m:
            raise ConfigError(f"not an attention-backward config name: {name!r} (expected e.g. {cls().name})")
        d = m.groupdict()
        cfg = cls(dtype=d["dtype"], head_dim=int(d["head_dim"]), mask=d["mask"] or "none",
                  deterministic=bool(d["det"]), stages=int(d["stages"]), block_m=int(d["block_m"]),
                  softcap=bool(d["softcap"]), varlen=bool(d["varlen"])).validate()
        if int(d["block_n"]) != cfg.block_n:
            raise ConfigError(f"{name!r}: head dim {cfg.head_dim} runs {cfg.block_n} keys per CTA, not {d['block_n']}")
        return check_canonical(cfg, name)

    def key(self) -> str:
        return repr(self)

    def smem_bytes(self) -> int:
        m, n = self.block_m, self.block_n
        q = round_up(m * self.head_dim * self.stages * 2, 1024)
        kv = round_up(n * self.head_dim * 2, 1024)
        if self.wide:  # P^T and dS^T tiles; dQ goes to global memory with atomics
            ds, dq = 2 * round_up(n * m * 2, 1024), 0
        else:  # dS^T tiles (two, by step parity, except with softcap), fp32 dQ tile for the bulk reduce
            ds, dq = (1 if self.softcap else 2) * round_up(n * m * 2, 1024), m * self.head_dim * 4
        return round_up(2 * q + 2 * kv + ds + dq + 2 * self.stages * m * 4 + 16 * self.stages + 64, 1024)

    def validate(self) -> "AttnBwdConfig":
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if self.head_dim not in BWD_HEAD_DIMS:
            problems.append(f"head_dim={self.head_dim} not in {BWD_HEAD_DIMS}")
        if self.mask not in BWD_MASKS:
            problems.append(f"mask {self.mask!r} not in {BWD_MASKS}")
        if self.block_m not in BLOCK_MS:
            problems.append(f"block_m={self.block_m} not in {BLOCK_MS}")
        elif self.block_m == 128 and self.head_dim != 64:
            problems.append("block_m=128 needs head_dim=64 (dK/dV, S^T and dP^T must fit in registers)")
        elif self.block_m == 128 and self.softcap:
            problems.append("block_m=128 with softcap spills (the tanh derivative is kept from P^T to dS^T)")
        if not 2 <= self.stages <= 4:
            problems.append(f"stages={self.stages} must be in 2..4")
        if not problems and self.smem_bytes() > SMEM_LIMIT_BYTES:
            problems.append(f"needs {self.smem_bytes()} bytes of shared memory > {SMEM_LIMIT_BYTES}")
        check("attention-backward", self.name, problems)
        return self

    def _traits(self) -> str:
        mask = f"cd42::attn::MaskKind::{_MASK_ENUM[self.mask]}"
        flags = [str(f).lower() for f in (self.softcap, self.varlen)]
        if self.wide:
            return (f"using Traits = cd42::attn::BwdWideTraits<{DTYPES[self.dtype]}, {self.head_dim}, {mask}, "
                    f"{str(self.deterministic).lower()}, {self.stages}, {', '.join(flags)}>")
        return (f"using Traits = cd42::attn::BwdTraits<{DTYPES[self.dtype]}, {self.head_dim}, {mask}, "
                f"{str(self.deterministic).lower()}, {self.stages}, {self.block_m}, {', '.join(flags)}>")

    def render(self) -> str:
        self.validate()
        return generated_header(self) + f"""#include "kernels/attention/bwd_launch.hpp"

{self._traits()};
static_assert(Traits::kSmemBytes <= {self.smem_bytes()}, "python smem model is out of date");

CD42_DEFINE_COMMON_EXPORTS("{self.name}")
CD42_DEFINE_ATTN_BWD_EXPORTS(Traits)
"""
