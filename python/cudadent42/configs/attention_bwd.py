"""Attention backward config (csrc/kernels/attention/bwd_*): 128 keys per CTA,
2 consumer warpgroups; query rows per step (64, or 128 at head dim 64) and
the Q/dO pipeline depth are tunable."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .base import DTYPES, SMEM_LIMIT_BYTES, check, generated_header, round_up

BWD_HEAD_DIMS = (64, 96, 128)  # dK + dV accumulators (D regs/thread) must fit next to S, dP, dQ
BWD_MASKS = ("none", "causal", "local")
BLOCK_N = 128
BLOCK_MS = (64, 128)  # 128 only at head dim 64 (register budget)
_MASK_ENUM = {"none": "kNone", "causal": "kCausal", "local": "kLocal"}
_NAME_RE = re.compile(r"^attn_bwd_(?P<dtype>bf16|fp16)_hd(?P<head_dim>\d+)_m(?P<block_m>\d+)_n128_st(?P<stages>\d+)"
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
    def name(self) -> str:
        n = f"attn_bwd_{self.dtype}_hd{self.head_dim}_m{self.block_m}_n{BLOCK_N}_st{self.stages}"
        n = n if self.mask == "none" else f"{n}_{self.mask}"
        n = n + "_varlen" if self.varlen else n
        n = n + "_softcap" if self.softcap else n
        return n + "_det" if self.deterministic else n

    @classmethod
    @functools.lru_cache(maxsize=64)
    def from_name(cls, name: str) -> "AttnBwdConfig":
        from .base import ConfigError

        m = _NAME_RE.match(name)
        if not m:
            raise ConfigError(f"not an attention-backward config name: {name!r} (expected e.g. {cls().name})")
        d = m.groupdict()
        return cls(dtype=d["dtype"], head_dim=int(d["head_dim"]), mask=d["mask"] or "none",
                   deterministic=bool(d["det"]), stages=int(d["stages"]), block_m=int(d["block_m"]),
                   softcap=bool(d["softcap"]), varlen=bool(d["varlen"])).validate()

    def key(self) -> str:
        return repr(self)

    def smem_bytes(self) -> int:
        m = self.block_m
        q = round_up(m * self.head_dim * self.stages * 2, 1024)
        kv = round_up(BLOCK_N * self.head_dim * 2, 1024)
        ds = round_up(BLOCK_N * m * 2, 1024)
        dq = m * self.head_dim * 4  # fp32 dQ tile for the bulk reduce
        return round_up(2 * q + 2 * kv + ds + dq + 2 * self.stages * m * 4 + 16 * self.stages + 64, 1024)

    def validate(self) -> "AttnBwdConfig":
        problems = []
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} not in {sorted(DTYPES)}")
        if self.head_dim not in BWD_HEAD_DIMS:
            problems.append(f"head_dim={self.head_dim} not in {BWD_HEAD_DIMS} (backward v1)")
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

    def render(self) -> str:
        self.validate()
        return generated_header(self) + f"""#include "kernels/attention/bwd_launch.hpp"

using Traits = cd42::attn::BwdTraits<{DTYPES[self.dtype]}, {self.head_dim}, cd42::attn::MaskKind::{_MASK_ENUM[self.mask]},
                                     {str(self.deterministic).lower()}, {self.stages}, {self.block_m},
                                     {str(self.softcap).lower()}, {str(self.varlen).lower()}>;
static_assert(Traits::kSmemBytes <= {self.smem_bytes()}, "python smem model is out of date");

CD42_DEFINE_COMMON_EXPORTS("{self.name}")
CD42_DEFINE_ATTN_BWD_EXPORTS(Traits)
"""
