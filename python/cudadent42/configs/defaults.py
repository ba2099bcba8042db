"""The configs the heuristics can pick: what `cudadent42 build` pre-builds
and what CI's ptxas/SASS checks must hold for (each family declares its own)."""
from __future__ import annotations

from .. import families


def default_configs(family: str | None = None) -> list:
    """Every family's default configs, or those of `family` (ValueError naming the known families)."""
    if family is None:
        return [c for f in families.all() for c in f.default_configs()]
    return families.get(family).default_configs()
