"""Template-parameter spaces of the kernel families, pruned statically."""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from ..configs.attention import AttnFwdConfig
from ..configs.attention_bwd import AttnBwdConfig
from ..configs.base import ConfigError
from ..configs.gemm import GemmConfig

# Every value the kernels accept; validate() decides which combinations fit.
GEMM_SPACE = dict(wg_m=(64, 128), tile_n=(64, 128, 192, 256), stages=(2, 3, 4, 5, 6, 8), group_m=(1, 4, 8, 16))
# softmax_under_pv: where the overlapped step waits for its PV wgmma (the
# better placement differs by head dim; H200: off 2-10% faster at D=64, on
# 2-11% faster at D=128 and D=256).
ATTN_FWD_SPACE = dict(block_n=(48, 64, 80, 96, 112, 128, 144, 160, 176, 192), stages=(2, 3, 4),
                      softmax_under_pv=(True, False))
ATTN_BWD_SPACE = dict(stages=(2, 3, 4), block_m=(64, 128))
SPACES = {"gemm": GEMM_SPACE, "attn-fwd": ATTN_FWD_SPACE, "attn-bwd": ATTN_BWD_SPACE}
CONFIG_CLASSES = {"gemm": GemmConfig, "attn-fwd": AttnFwdConfig, "attn-bwd": AttnBwdConfig}


@dataclass
class Space:
    family: str
    candidates: list = field(default_factory=list)
    pruned: Counter = field(default_factory=Counter)  # reason -> count

    def summary(self) -> str:
        total = len(self.candidates) + sum(self.pruned.values())
        lines = [f"{self.family}: {total} points, {len(self.candidates)} kept, {sum(self.pruned.values())} pruned"]
        lines += [f"  pruned {n:>4}: {reason}" for reason, n in self.pruned.most_common()]
        return "\n".join(lines)


def _reason(err: ConfigError) -> str:
    """A short, config-independent label for why a point was pruned."""
    labels = []
    for part in str(err).split(": ", 1)[-1].split("; "):
        if "shared memory" in part:
            labels.append("shared memory > 227 KB")
        elif "register" in part or "accumulators" in part:
            labels.append("register budget")
        else:
            labels.append(part.split("=")[0].strip() + " not supported")
    return " + ".join(labels)


def enumerate_space(family: str, fixed: dict, overrides: dict | None = None) -> Space:
    """All configs of `family` with the problem-determined fields in `fixed`
    (e.g. dtype, b_major / head_dim, mask, softcap, varlen) and the tunable
    fields taken from the family's space (or `overrides`, same keys)."""
    if family not in SPACES:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(SPACES)}")
    cls = CONFIG_CLASSES[family]
    space = dict(SPACES[family], **(overrides or {}))
    out = Space(family)
    keys = list(space)
    for values in itertools.product(*(space[k] for k in keys)):
        cfg = cls(**fixed, **dict(zip(keys, values)))
        try:
            out.candidates.append(cfg.validate())
        except ConfigError as e:
            out.pruned[_reason(e)] += 1
    return out
