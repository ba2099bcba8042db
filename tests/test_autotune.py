"""Autotune on first use (tune/autotune.py) and the profiler ranges around launches."""
import pytest
import torch

from cudadent42.configs.select import select
from cudadent42.tune import autotune, table

GPU = "NVIDIA H100 80GB HBM3"
GEMM_P = dict(dtype="bf16", b_major="k", M=4096, N=4096, K=4096)
ATTN_P = dict(dtype="bf16", head_dim=128, mask="causal", softcap=False, varlen=False, seqlen=8192)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CUDADENT42_AUTOTUNE", raising=False)
    monkeypatch.setattr(table, "SHIPPED", tmp_path / "shipped.json")
    table.reload()
    autotune.forget()
    yield tmp_path
    table.reload()
    autotune.forget()


@pytest.fixture
def fake_tune(monkeypatch):
    """Replaces the sweep with one that records a fixed winner, and counts calls."""
    from cudadent42.tune import sweep

    calls = []

    def tune(family, problem, log=print, **kw):
        calls.append((family, problem, kw))
        name = "gemm_bf16_bk_m128_n128_k64_st6_g8" if family == "gemm" else "attn_fwd_bf16_hd128_m128_n96_st2_wg2_causal"
        table.record(table.problem_key(family, **problem), GPU, name)
        return dict(config=name)

    monkeypatch.setattr(sweep, "tune", tune)
    monkeypatch.setattr(autotune, "safe_now", lambda: True)
    return calls


def test_disabled_by_default_uses_heuristic(fake_tune):
    cfg = select("gemm", GPU, sizes={}, **GEMM_P)
    assert not fake_tune and cfg.name == "gemm_bf16_bk_m128_n256_k64_st4_g8"


def test_env_var_tunes_once_then_uses_the_table(fake_tune, monkeypatch):
    monkeypatch.setenv("CUDADENT42_AUTOTUNE", "1")
    with pytest.warns(UserWarning, match="autotuning"):
        cfg = select("gemm", GPU, sizes={}, **GEMM_P)
    assert cfg.name == "gemm_bf16_bk_m128_n128_k64_st6_g8"
    assert select("gemm", GPU, sizes={}, **GEMM_P).name == cfg.name
    assert len(fake_tune) == 1  # persisted: no second tuning run
    family, problem, kw = fake_tune[0]
    assert problem["M"] == 4096 and kw["limit"] == 8 and kw["deadline"] is not None
    table.reload()  # a fresh process reads it from the user's table
    assert table.lookup(table.problem_key("gemm", **GEMM_P), GPU) == cfg.name


def test_argument_scope_and_env_off(fake_tune, monkeypatch):
    monkeypatch.setenv("CUDADENT42_AUTOTUNE", "0")
    assert not autotune.enabled()
    with autotune.requested(True):
        assert autotune.enabled()
        with pytest.warns(UserWarning):
            cfg = select("attn-fwd", GPU, sizes=dict(batch=4, heads=32), **ATTN_P)
    assert not autotune.enabled()
    assert cfg.name == "attn_fwd_bf16_hd128_m128_n96_st2_wg2_causal"
    problem = fake_tune[0][1]
    # the fp32 reference check is bounded: batch x heads x seqlen^2 <= 2^30
    assert problem["batch"] * problem["heads"] * problem["seqlen"] ** 2 <= 1 << 30


def test_never_tunes_while_compiling_or_capturing(monkeypatch):
    from cudadent42.tune import sweep

    monkeypatch.setattr(sweep, "tune", lambda *a, **k: pytest.fail("tuned while tracing"))
    monkeypatch.setenv("CUDADENT42_AUTOTUNE", "1")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not autotune.safe_now()
    assert select("gemm", GPU, sizes={}, **GEMM_P).name == "gemm_bf16_bk_m128_n256_k64_st4_g8"


def test_untunable_variants_and_failures_fall_back(monkeypatch):
    from cudadent42.tune import sweep

    assert autotune.tuning_problem("attn-fwd", dict(ATTN_P, varlen=True), dict(batch=1, heads=1)) is None
    assert autotune.tuning_problem("attn-fwd", dict(ATTN_P, mask="local"), dict(batch=1, heads=1)) is None

    def boom(*a, **k):
        raise RuntimeError("nvcc exploded")

    monkeypatch.setattr(sweep, "tune", boom)
    monkeypatch.setattr(autotune, "safe_now", lambda: True)
    monkeypatch.setenv("CUDADENT42_AUTOTUNE", "1")
    with pytest.warns(UserWarning, match="failed"):
        cfg = select("gemm", GPU, sizes={}, **GEMM_P)
    assert cfg.name == "gemm_bf16_bk_m128_n256_k64_st4_g8"


def test_kernel_range_names_the_config_in_profiler_traces():
    from cudadent42.runtime import kernel_range

    with kernel_range("gemm_x"):  # profiler off: no range, no cost
        pass
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        with kernel_range("attn_fwd_bf16_hd128_m128_n128_st2_wg2"):
            torch.ones(1)
    assert any(e.name == "cudadent42::attn_fwd_bf16_hd128_m128_n128_st2_wg2" for e in prof.events())


@pytest.mark.gpu
def test_autotune_argument_end_to_end_on_gpu(monkeypatch):
    """gemm(autotune=True) on an untuned shape class: a real (tiny) sweep runs, its winner is
    persisted, and the next call uses it without tuning again."""
    from cudadent42 import gemm
    from cudadent42.ops.gemm import resolve_config
    from cudadent42.tune import sweep

    monkeypatch.setenv("CUDADENT42_AUTOTUNE_POINTS", "2")
    a = torch.randn(1000, 512, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(768, 512, device="cuda", dtype=torch.bfloat16)
    with pytest.warns(UserWarning, match="autotuning"):
        c = gemm(a, w.t(), autotune=True)
    torch.testing.assert_close(c.float(), a.float() @ w.float().t(), atol=0.5, rtol=2e-2)
    key = table.problem_key("gemm", dtype="bf16", b_major="k", M=1000, N=768, K=512)
    tuned = table.lookup(key, torch.cuda.get_device_name())
    assert tuned is not None
    monkeypatch.setattr(sweep, "tune", lambda *a, **k: pytest.fail("tuned twice"))
    assert resolve_config(a, w.t(), None).name == tuned
    gemm(a, w.t(), autotune=True)
