"""Template-parameter spaces of the kernel families (families/*.py: `space`), pruned statically."""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from .. import families
from ..configs.base import ConfigError


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


def check_overrides(family: str, overrides: dict) -> None:
    """ValueError naming a field that is not tunable in `family`, or a value of the wrong type."""
    space = families.get(family).space
    for key, values in overrides.items():
        if key not in space:
            raise ValueError(f"{family} has no tunable field {key!r}; tunable: {', '.join(space)}")
        want = type(space[key][0])
        for v in values:
            if type(v) is not want:
                raise ValueError(f"{family} field {key} takes {want.__name__} values (e.g. "
                                 f"{','.join(str(x).lower() if want is bool else str(x) for x in space[key][:3])}); "
                                 f"got {v!r}")


def enumerate_space(family: str, fixed: dict, overrides: dict | None = None) -> Space:
    """All configs of `family` with the problem-determined fields in `fixed`
    (e.g. dtype, b_major / head_dim, mask, softcap, varlen) and the tunable
    fields taken from the family's space (or `overrides`, same keys)."""
    fam = families.get(family)
    overrides = overrides or {}
    check_overrides(fam.name, overrides)
    space = dict(fam.space, **overrides)
    out = Space(fam.name)
    keys = list(space)
    for values in itertools.product(*(space[k] for k in keys)):
        cfg = fam.config_class(**fixed, **dict(zip(keys, values)))
        try:
            out.candidates.append(cfg.validate())
        except ConfigError as e:
            out.pruned[_reason(e)] += 1
    return out
