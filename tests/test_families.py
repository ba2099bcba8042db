"""The kernel-family registry (families/): what each family declares holds
together, on CPU (no kernel runs: make_case/reference run on CPU tensors)."""
import ctypes
import dataclasses
from pathlib import Path

import pytest
import torch

from cudadent42 import families

FAMILIES = families.all()
CSRC = Path(__file__).resolve().parent.parent / "csrc" / "kernels"
SMALL = {"M": 64, "N": 48, "K": 32, "seqlen": 24, "batch": 2, "heads": 2}


def small_problem(fam):
    return {k: SMALL.get(k, v) for k, v in fam.problem_defaults.items()}


def test_registry_lookup():
    assert {"gemm", "attn-fwd", "attn-bwd"} <= set(families.names())
    assert families.get("gemm") is families.get(families.get("gemm"))
    with pytest.raises(ValueError, match="unknown family 'moe'; known families: .*gemm"):
        families.get("moe")
    with pytest.raises(ValueError, match="registered twice"):
        families.register(dataclasses.replace(families.get("gemm")))


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_family_declarations_hold_together(fam):
    assert fam.config_class.family == fam.name
    fields = {f.name for f in dataclasses.fields(fam.config_class)}
    assert set(fam.fixed_fields) <= fields and set(fam.space) <= fields
    assert set(fam.problem_defaults) == set(fam.problem_fields) | set(fam.size_fields)
    p = fam.problem_defaults
    cfg = fam.heuristic(p)
    assert isinstance(cfg, fam.config_class) and cfg.validate() is cfg
    assert all(getattr(cfg, f) == p[f] for f in fam.fixed_fields), "the heuristic must serve the problem"
    assert fam.config_from_name(cfg.name) == cfg
    key = fam.table_key(p)
    assert key.startswith(fam.name + "|") and key == fam.table_key(dict(p, **{f: p[f] for f in fam.size_fields}))
    assert fam.flops(p) > 0
    defaults = fam.default_configs()
    assert defaults and all(isinstance(c, fam.config_class) and c.validate() for c in defaults)
    for name, values in fam.space.items():
        assert values and len({type(v) for v in values}) == 1, name


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_runner_structs_and_kernel_name_resolve(fam):
    assert callable(families.resolve(fam.runner))
    for ref in fam.c_structs:
        assert issubclass(families.resolve(ref), ctypes.Structure), ref
    sources = "".join(p.read_text() for p in CSRC.rglob("*.hpp"))
    assert f"{fam.kernel_regex}<T><<<" in sources or f"{fam.kernel_regex}(" in sources


@pytest.mark.parametrize("fam", FAMILIES, ids=lambda f: f.name)
def test_case_and_reference_on_cpu(fam):
    p = small_problem(fam)
    case = fam.make_case(p, device="cpu")
    ref, lowp = fam.reference(case, True), fam.reference(case, False)
    for r, lp in zip(ref if isinstance(ref, tuple) else (ref,), lowp if isinstance(lowp, tuple) else (lowp,)):
        assert r.dtype == torch.float32 and lp.dtype in (torch.bfloat16, torch.float16) and r.shape == lp.shape
        assert torch.isfinite(r).all()


def test_resolve_rejects_malformed_references():
    with pytest.raises(ValueError, match="module:attribute"):
        families.resolve("cudadent42.ops.gemm.tuning_run")


def test_problem_fields_are_checked():
    fam = families.get("gemm")
    with pytest.raises(ValueError, match="missing K; unknown k"):
        fam.check_problem(dict(dtype="bf16", b_major="k", M=1, N=1, k=1))
