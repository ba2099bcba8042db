"""Compile-smoke of the fused MoE up-projection: nvcc builds the default config ptxas-clean and
the SASS holds the fast path (wgmma, TMA loads of B and stores of h/pre, cp.async gathers of x,
the setmaxnreg split). No GPU needed."""
import os
import re

import pytest

from cudadent42 import families
from cudadent42.jit import load, toolchain
from cudadent42.jit.sass import dump_sass, sass_stats

pytestmark = pytest.mark.compile


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    try:
        toolchain.find_nvcc()
    except toolchain.ToolchainError as e:
        pytest.fail(f"compile-smoke needs nvcc: {e}")
    os.environ["CUDADENT42_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return load(families.get("moe-up").default_configs()[0])
    finally:
        os.environ.pop("CUDADENT42_CACHE_DIR")


def test_ptxas_clean(kernel):
    meta = kernel.meta
    assert meta["spill_stores"] == 0 and meta["spill_loads"] == 0, meta
    assert not meta["c7510"] and not meta["serialized"], meta["warnings"]


def test_sass_has_the_gather_and_hopper_instructions(kernel):
    sass = dump_sass(kernel.dir / "kernel.so")
    stats = sass_stats(sass)
    assert stats["HGMMA"] > 0 and "HGMMA.64x256x16" in sass, "no 64x256 warpgroup MMA (gate|up tile)"
    assert stats["UTMALDG"] >= 2, "B's gate and up boxes are TMA loads"
    assert stats["UTMASTG"] > 0, "no TMA store epilogue"
    assert len(re.findall(r"\bLDGSTS\b", sass)) >= 8, "x rows are gathered with cp.async (8 per thread and stage)"
    assert stats["LDL"] == 0 and stats["STL"] == 0, "local memory traffic"
    assert stats["USETMAXREG"] >= 2, "setmaxnreg split missing"
