"""Cache keys follow each kernel's own include closure: an edit reaches exactly the configs whose
translation unit includes the edited file (no nvcc run: the nvcc version is pinned)."""
import shutil

import pytest

from cudadent42.configs.defaults import default_configs
from cudadent42.configs.grouped_gemm import GroupedGemmConfig
from cudadent42.jit import digest, toolchain
from cudadent42.jit.includes import closure

FAMILIES = ("gemm", "attn-fwd", "attn-bwd", "grouped-gemm")
ALL = set(FAMILIES)


@pytest.fixture
def csrc_copy(monkeypatch, tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(toolchain.csrc_dir(), copy)
    monkeypatch.setattr(toolchain, "csrc_dir", lambda: copy)
    monkeypatch.setattr(toolchain, "nvcc_version", lambda nvcc=None: "13.0.88")
    monkeypatch.delenv("CUDADENT42_NVCC_FLAGS", raising=False)
    return copy


def _configs(fam):
    if fam == "grouped-gemm":  # not among default_configs yet
        return [GroupedGemmConfig(), GroupedGemmConfig(mode="k", a_major="m", b_major="n", tile_n=128, stages=6)]
    return default_configs(fam)


def _digests() -> dict[str, dict[str, str]]:
    return {fam: {c.name: digest(c) for c in _configs(fam)} for fam in FAMILIES}


def _edit(path, line="// an edit\n"):
    with open(path, "a") as f:
        f.write(line)


# (edited file under csrc/, families whose keys must change; the others must not)
EDITS = [
    ("kernels/attention/softmax.hpp", {"attn-fwd", "attn-bwd"}),
    ("kernels/attention/bwd_kernel.hpp", {"attn-bwd"}),
    ("kernels/attention/fwd_args.h", {"attn-fwd", "attn-bwd"}),  # the backward TU includes the forward launch
    ("kernels/gemm/gemm_traits.hpp", {"gemm"}),
    ("cute/tile_scheduler.hpp", {"gemm"}),
    ("kernels/grouped_gemm/ggemm_scheduler.hpp", {"grouped-gemm"}),
    ("cute/abi.h", ALL),
    ("cute/warp_roles.hpp", ALL),
]


@pytest.mark.parametrize("rel,changed", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_changes_exactly_the_keys_that_include_it(csrc_copy, rel, changed):
    before = _digests()
    _edit(csrc_copy / rel)
    after = _digests()
    for fam in FAMILIES:
        moved = {name for name in before[fam] if before[fam][name] != after[fam][name]}
        if fam in changed:
            assert moved == set(before[fam]), f"{rel}: {fam} keys that did not change: {set(before[fam]) - moved}"
        else:
            assert not moved, f"{rel} is not included by {fam}, yet these keys changed: {sorted(moved)}"


def test_a_new_unincluded_file_changes_no_key(csrc_copy):
    before = _digests()
    (csrc_copy / "kernels" / "attention" / "notes.hpp").write_text("// not included anywhere\n")
    assert _digests() == before


def test_closure_resolution(tmp_path):
    root = tmp_path / "csrc"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.hpp").write_text('#include "y.hpp"  // next to x\n#include <a/z.hpp>\n#include <vector>\n')
    (root / "a" / "y.hpp").write_text('#pragma once\n  #  include "a/x.hpp"  // a cycle\n')
    (root / "a" / "z.hpp").write_text('// #include "a/never.hpp" is a comment\n')
    (root / "a" / "never.hpp").write_text("")
    src = '#include "a/x.hpp"\n#include "cute/tensor.hpp"  // CUTLASS: not under csrc\n'
    assert [p.as_posix() for p in closure(src, root)] == ["a/x.hpp", "a/y.hpp", "a/z.hpp"]

