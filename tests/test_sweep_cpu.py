"""The sweep's check-and-time path with the `run(config, case)` the op layer
hands in, on CPU: the GPU, nvcc and the timer are faked, the family's
make_case / reference / tolerance rule are real (so a wrong kernel result is
caught exactly as on the GPU)."""
import dataclasses

import pytest
import torch

from cudadent42 import families
from cudadent42.configs.select import select
from cudadent42.families import registry
from cudadent42.tune import autotune, table
from cudadent42.tune import sweep as sweep_mod


class Built:
    ok, seconds, error, cached = True, 0.1, None, True


class Loaded:
    meta = {"registers": 168, "spill_stores": 0, "spill_loads": 0}


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(table, "SHIPPED", tmp_path / "shipped.json")
    table.reload()
    autotune.forget()
    monkeypatch.setattr(sweep_mod, "build", lambda cands, jobs=None: [Built() for _ in cands])
    monkeypatch.setattr(sweep_mod, "load", lambda cfg: Loaded())
    monkeypatch.setattr(sweep_mod, "hopper_available", lambda: True)
    monkeypatch.setattr(sweep_mod, "bench_ms", lambda fn, **kw: (fn(), 1.0)[1])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "FAKE GPU")
    for fam in families.all():  # inputs on the CPU
        monkeypatch.setitem(registry._families, fam.name,
                            dataclasses.replace(fam, make_case=lambda p, f=fam: f.make_case(p, device="cpu")))
    yield
    table.reload()
    autotune.forget()


GEMM_P = dict(dtype="bf16", b_major="n", M=64, N=48, K=32)


def test_gemm_sweep_checks_then_times_what_run_returns(fake_gpu):
    calls = []

    def run(cfg, case):  # a correct kernel, except at tile_n=128
        calls.append(cfg.name)
        out = torch.mm(case["a"], case["b"], out=case["out"])
        return out.zero_() if cfg.tile_n == 128 else out

    space = dict(wg_m=(64,), tile_n=(128, 256), stages=(4,), group_m=(8,))
    rows = sweep_mod.sweep("gemm", GEMM_P, run=run, space=space, log=lambda *_: None)
    status = {r["config"]: r["status"] for r in rows}
    assert status == {"gemm_bf16_bn_m128_n256_k64_st4_g8": "timed",  # the heuristic's default is added:
                      "gemm_bf16_bn_m128_n128_k64_st6_g8": "wrong result",
                      "gemm_bf16_bn_m128_n128_k64_st4_g8": "wrong result"}
    assert rows[0]["tflops"] > 0 and rows[0]["max_abs_err"] is not None and rows[0]["rank"] == 1
    assert sorted(calls).count("gemm_bf16_bn_m128_n256_k64_st4_g8") == 2  # checked once, then timed


def test_timing_without_run_is_a_clear_error(fake_gpu):
    with pytest.raises(ValueError, match="timing needs run=.*cudadent42.ops.gemm:tuning_run"):
        sweep_mod.sweep("gemm", GEMM_P, space=dict(wg_m=(64,), tile_n=(256,), stages=(4,), group_m=(8,)),
                        log=lambda *_: None)


@pytest.mark.parametrize("family, problem", [
    ("attn-fwd", dict(dtype="bf16", head_dim=64, mask="causal", softcap=True, varlen=False, seqlen=40, batch=1,
                      heads=2)),
    ("attn-bwd", dict(dtype="bf16", head_dim=64, mask="causal", deterministic=False, seqlen=40, batch=1, heads=2)),
])
def test_attention_sweeps_check_against_the_reference(fake_gpu, family, problem):
    fam = families.get(family)

    def run(cfg, case):  # the low-precision reference passes the rule by construction
        return fam.reference(case, False)

    space = dict(stages=(2,), block_m=(64,)) if family == "attn-bwd" else dict(block_n=(64,), stages=(2,),
                                                                               softmax_under_pv=(False,))
    rows = sweep_mod.sweep(family, problem, run=run, space=space, log=lambda *_: None)
    assert rows and all(r["status"] == "timed" for r in rows), rows


def test_autotune_hands_the_ops_run_to_the_sweep(fake_gpu, monkeypatch):
    """select(..., run=) on a tuned-table miss with autotuning on: the sweep times that run
    and the winner is recorded and used."""
    monkeypatch.setattr(autotune, "safe_now", lambda: True)
    monkeypatch.setenv("CUDADENT42_AUTOTUNE", "1")
    monkeypatch.setenv("CUDADENT42_AUTOTUNE_POINTS", "2")
    seen = []

    def run(cfg, case):
        seen.append(cfg.name)
        return torch.mm(case["a"], case["b"], out=case["out"])

    p = dict(GEMM_P)
    with pytest.warns(UserWarning, match="autotuning"):
        cfg = select("gemm", "FAKE GPU", sizes={}, run=run, **p)
    assert seen and cfg.name in seen
    assert table.lookup(table.problem_key("gemm", **p), "FAKE GPU") == cfg.name
