"""Sweep space enumeration/pruning and the tuned table (CPU), plus an
end-to-end tiny tune on the GPU (marker gpu)."""
import json
import multiprocessing as mp

import pytest

from cudadent42.configs.select import select
from cudadent42.tune import enumerate_space, table

GPU = "NVIDIA H100 80GB HBM3"
GEMM_P = dict(dtype="bf16", b_major="k", M=8192, N=8192, K=8192)


@pytest.fixture(autouse=True)
def isolated_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDADENT42_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(table, "SHIPPED", tmp_path / "shipped.json")
    table.reload()
    yield tmp_path
    table.reload()


def write_shipped(path, entries):
    path.write_text(json.dumps({"format": table.FORMAT, "entries": entries}))
    table.reload()


def test_enumeration_prunes_with_reasons():
    sp = enumerate_space("gemm", dict(dtype="bf16", b_major="k"))
    total = len(sp.candidates) + sum(sp.pruned.values())
    assert total == 2 * 4 * 6 * 4  # the whole GEMM_SPACE product
    assert sp.candidates and sp.pruned["shared memory > 227 KB"] > 0
    assert all(c.smem_bytes() <= 227 * 1024 for c in sp.candidates)
    assert "pruned" in sp.summary()


def test_enumeration_respects_overrides_and_fixed_fields():
    sp = enumerate_space("attn-fwd", dict(dtype="fp16", head_dim=256, mask="causal"),
                         dict(block_n=(64, 80, 128), stages=(2, 3)))
    names = {c.name for c in sp.candidates}
    kept = {"attn_fwd_fp16_hd256_m128_n64_st2_wg2_causal", "attn_fwd_fp16_hd256_m128_n80_st2_wg2_causal"}
    assert names == kept | {n + "_pvwait" for n in kept}  # softmax_under_pv is in the space too
    assert sum(sp.pruned.values()) == 8
    sp = enumerate_space("attn-fwd", dict(dtype="fp16", head_dim=256, mask="causal"),
                         dict(block_n=(64,), stages=(2,), softmax_under_pv=(False,)))
    assert [c.name for c in sp.candidates] == ["attn_fwd_fp16_hd256_m128_n64_st2_wg2_causal_pvwait"]
    with pytest.raises(ValueError, match="unknown family"):
        enumerate_space("moe", {})


def test_problem_keys_bucket_sizes():
    k1 = table.problem_key("gemm", **GEMM_P)
    assert k1 == table.problem_key("gemm", **dict(GEMM_P, M=5000)) != table.problem_key("gemm", **dict(GEMM_P, M=9000))
    ka = table.problem_key("attn-fwd", dtype="bf16", head_dim=128, mask="causal", softcap=False, varlen=False,
                           seqlen=3000)
    assert ka == "attn-fwd|bf16|hd128|causal|softcap0|varlen0|s4096"


def test_lookup_order_user_then_shipped_then_heuristic(isolated_tables):
    key = table.problem_key("gemm", **GEMM_P)
    heuristic = select("gemm", GPU, **GEMM_P)
    assert heuristic.name == "gemm_bf16_bk_m128_n256_k64_st4_g8"
    write_shipped(isolated_tables / "shipped.json",
                  {f"{GPU}|{key}": {"config": "gemm_bf16_bk_m128_n128_k64_st6_g8"}})
    assert select("gemm", GPU, **GEMM_P).name == "gemm_bf16_bk_m128_n128_k64_st6_g8"
    assert select("gemm", "NVIDIA H200", **GEMM_P).name == heuristic.name  # tables are per GPU model
    table.record(key, GPU, "gemm_bf16_bk_m128_n192_k64_st4_g8", tflops=700.0)
    assert select("gemm", GPU, **GEMM_P).name == "gemm_bf16_bk_m128_n192_k64_st4_g8"


def test_stale_table_entry_falls_back_to_heuristic(isolated_tables):
    key = table.problem_key("gemm", **GEMM_P)
    table.record(key, GPU, "gemm_bf16_bk_m128_n999_k64_st4_g8")
    with pytest.warns(UserWarning, match="ignoring tuned entry"):
        assert select("gemm", GPU, **GEMM_P).name == "gemm_bf16_bk_m128_n256_k64_st4_g8"


def test_record_persists_across_processes(isolated_tables):
    table.record("gemm|x", GPU, "cfg_a", tflops=1.0)
    table.reload()  # as a fresh process would
    assert table.lookup("gemm|x", GPU) == "cfg_a"
    data = json.loads(table.user_table_path().read_text())
    assert data["format"] == table.FORMAT and data["entries"][f"{GPU}|gemm|x"]["tflops"] == 1.0


def _record_many(prefix, n):
    for i in range(n):
        table.record(f"{prefix}|{i}", GPU, f"{prefix}_{i}")


def test_concurrent_writers_lose_nothing(isolated_tables):
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_record_many, args=(p, 15)) for p in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    table.reload()
    for p in ("a", "b", "c"):
        for i in range(15):
            assert table.lookup(f"{p}|{i}", GPU) == f"{p}_{i}"
    assert not list(table.user_table_path().parent.glob(".table-*")), "temp files left behind"


@pytest.mark.gpu
def test_tiny_tune_end_to_end_then_used(isolated_tables, tmp_path):
    import torch

    from cudadent42.ops.gemm import resolve_config, tuning_run
    from cudadent42.tune.sweep import tune

    problem = dict(dtype="bf16", b_major="k", M=1024, N=1024, K=512)
    best = tune("gemm", problem, run=tuning_run,
                space=dict(wg_m=(64,), tile_n=(128, 256), stages=(4,), group_m=(8,)),
                out_dir=str(tmp_path / "out"), log=lambda *_: None)
    assert best is not None and best["status"] == "timed"
    assert (tmp_path / "out" / "sweep.csv").exists() and (tmp_path / "out" / "sweep.json").exists()
    a = torch.randn(1024, 512, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(1024, 512, device="cuda", dtype=torch.bfloat16)
    assert resolve_config(a, w.t(), None).name == best["config"]


@pytest.mark.compile
def test_sweep_without_gpu_builds_ranks_and_writes_outputs(tmp_path):
    """The whole sweep path short of timing: enumerate, prune, build (nvcc),
    table, CSV/JSON. On a machine with an sm_90 GPU it would also time."""
    from cudadent42.runtime import hopper_available
    from cudadent42.tune.sweep import sweep

    if hopper_available():
        pytest.skip("covered by the GPU end-to-end tune test")
    logs = []
    rows = sweep("gemm", GEMM_P,  # the default for this shape is the one point kept
                 space=dict(wg_m=(64, 128), tile_n=(256,), stages=(4,), group_m=(8,)),
                 out_dir=str(tmp_path / "out"), log=logs.append)
    text = "\n".join(logs)
    assert "2 points, 1 kept, 1 pruned" in text and "register budget" in text
    assert len(rows) == 1 and rows[0]["status"] == "built" and rows[0]["is_default"]
    assert rows[0]["spill_bytes"] == 0 and rows[0]["registers"] > 0
    assert "not timed" in text
    data = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert data["points"][0]["config"] == "gemm_bf16_bk_m128_n256_k64_st4_g8"
    assert (tmp_path / "out" / "sweep.csv").read_text().startswith("config,")


def test_attn_bwd_family_space_key_and_default():
    from cudadent42.configs.attention_bwd import AttnBwdConfig

    sp = enumerate_space("attn-bwd", dict(dtype="bf16", head_dim=128, mask="causal", deterministic=False))
    # stages 4 needs 243 KB of shared memory at D=128 (with the dQ tile) and
    # 128-row steps need D=64: pruned, with the reasons
    assert [(c.stages, c.block_m) for c in sp.candidates] == [(2, 64), (3, 64)]
    assert sum(sp.pruned.values()) == 4 and "shared memory > 227 KB" in sp.pruned
    sp64 = enumerate_space("attn-bwd", dict(dtype="bf16", head_dim=64, mask="none", deterministic=False))
    # (128-row steps at 3 stages: 228 KB with the two dS^T buffers)
    assert sorted((c.stages, c.block_m) for c in sp64.candidates) == [(2, 64), (2, 128), (3, 64), (4, 64)]
    p = dict(dtype="bf16", head_dim=128, mask="causal", deterministic=False, seqlen=3000)
    assert table.problem_key("attn-bwd", **p) == "attn-bwd|bf16|hd128|causal|det0|s4096"
    assert select("attn-bwd", GPU, **p) == AttnBwdConfig(head_dim=128, mask="causal")
    table.record(table.problem_key("attn-bwd", **p), GPU, "attn_bwd_bf16_hd128_m64_n128_st3_causal")
    assert select("attn-bwd", GPU, **p).stages == 3  # tuned entries are used for the backward too


@pytest.mark.compile
def test_attn_bwd_sweep_without_gpu_builds(tmp_path):
    from cudadent42.runtime import hopper_available
    from cudadent42.tune.sweep import sweep

    if hopper_available():
        pytest.skip("the GPU end-to-end tune tests time real points")
    problem = dict(dtype="bf16", head_dim=64, mask="none", deterministic=False, seqlen=1024, batch=1, heads=4)
    rows = sweep("attn-bwd", problem, space=dict(stages=(2,), block_m=(128,)), log=lambda *_: None)
    assert len(rows) == 1 and rows[0]["status"] == "built" and rows[0]["spill_bytes"] == 0


@pytest.mark.gpu
def test_attn_bwd_tiny_tune_end_to_end(isolated_tables, monkeypatch):
    from cudadent42.ops.attention_bwd import tuning_run
    from cudadent42.tune.sweep import tune

    problem = dict(dtype="bf16", head_dim=64, mask="causal", deterministic=False, seqlen=512, batch=2, heads=4)
    best = tune("attn-bwd", problem, run=tuning_run, space=dict(stages=(2, 3), block_m=(64,)), log=lambda *_: None)
    assert best is not None and best["status"] == "timed"
    import torch

    assert select("attn-bwd", torch.cuda.get_device_name(), **{k: problem[k] for k in
                  ("dtype", "head_dim", "mask", "deterministic", "seqlen")}).name == best["config"]
