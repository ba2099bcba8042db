"""ncu profiling (tune/profile.py): CSV parsing, limiter rules, the ncu command,
errors, sweep tie-break and CLI wiring. CPU only: ncu itself is never run.

tests/fixtures/ncu_raw_sample.csv is SYNTHETIC: written by hand in the layout of
`ncu --csv --page raw` (==PROF== and program lines first, header row, units
row, one row per kernel), with plausible H100 numbers. A real capture from the
GPU machine goes in tests/fixtures/ncu_raw_h100.csv; the invariant test below
runs on it too when it exists.
"""
import json
import subprocess
from pathlib import Path

import pytest

from cudadent42 import cli
from cudadent42.tune import profile as prof
from cudadent42.tune import profile_target

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHETIC = FIXTURES / "ncu_raw_sample.csv"
REAL_H100 = FIXTURES / "ncu_raw_h100.csv"
ATTN_P = dict(dtype="bf16", head_dim=128, mask="none", softcap=False, varlen=False, seqlen=8192, batch=2, heads=16)
ATTN_CFG = "attn_fwd_bf16_hd128_m128_n128_st2_wg2"
STALL = prof.stall_metric


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    monkeypatch.setitem(prof._state, "skip_optional", False)


# ------------------------------------------------------------------ parsing
def test_parse_synthetic_fixture():
    rows = prof.parse_ncu_csv(SYNTHETIC.read_text())
    assert len(rows) == 2  # the units row is not a kernel
    gemm, attn = rows
    assert "gemm_kernel" in gemm["Kernel Name"] and "attn_fwd_kernel" in attn["Kernel Name"]
    assert attn["Kernel Name"].count(",") == 6  # commas inside a quoted cell survive
    assert attn[prof.DURATION] == 1_845_312.0  # "1,845,312" nsecond
    assert attn["l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum"] == 1_048_576.0
    assert gemm[prof.TENSOR_GMMA] is None and attn[prof.TENSOR_GMMA] == 63.9  # "n/a"
    assert attn["units"][prof.DURATION] == "nsecond" and attn["units"][prof.DRAM] == "%"
    assert attn["Block Size"] == "(384, 1, 1)"  # descriptive columns stay strings


@pytest.mark.parametrize("path", [SYNTHETIC, REAL_H100], ids=["synthetic", "real-h100"])
def test_fixture_invariants(path):
    if not path.exists():
        pytest.skip(f"{path.name} not captured yet (run `cudadent42 profile` under ncu on the H100)")
    rows = prof.parse_ncu_csv(path.read_text())
    assert rows, "no kernel row found"
    for r in rows:
        assert r[prof.DURATION] > 0
        for key in (prof.DURATION, prof.REGISTERS, prof.DRAM, prof.L2, prof.OCCUPANCY, STALL("barrier"),
                    STALL("long_scoreboard")):
            assert key in r, key
        assert any(r.get(t) is not None for t in prof.TENSOR), "no tensor-pipe metric"
        a = prof.analyse(r, 1e12, 700.0)
        assert a["duration_us"] > 0 and a["tflops"] > 0 and a["limiter"]


def test_parse_noise_units_and_trailing_output():
    text = "\n".join([
        "hello from the program",
        '"ID","Process ID","Kernel Name","gpu__time_duration.sum","dram__bytes.sum","lts__t_bytes.sum.per_second"',
        '"","","","usecond","Kbyte","Gbyte/second"',
        '"0","1","k(int, int)","1,234.5","2,048","3.5"',
        "==PROF== Disconnected from process 1",
        "more program output",
    ])
    (r,) = prof.parse_ncu_csv(text)
    assert r["gpu__time_duration.sum"] == pytest.approx(1_234_500.0)
    assert r["units"]["gpu__time_duration.sum"] == "nsecond"
    assert r["dram__bytes.sum"] == 2_048_000.0 and r["units"]["dram__bytes.sum"] == "byte"
    rate = "lts__t_bytes.sum.per_second"
    assert r[rate] == 3.5e9 and r["units"][rate] == "byte/second"
    assert prof.parse_ncu_csv("==PROF== nothing profiled\n") == []


def test_parse_details_page_long_format():
    text = "\n".join([
        '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Section Name",'
        '"Metric Name","Metric Unit","Metric Value"',
        '"0","1","p","h","gemm_kernel","1","7","Command line profiler metrics","gpu__time_duration.sum",'
        '"msecond","1.5"',
        '"0","1","p","h","gemm_kernel","1","7","Command line profiler metrics","launch__registers_per_thread",'
        '"register/thread","168"',
    ])
    (r,) = prof.parse_ncu_csv(text)
    assert r["gpu__time_duration.sum"] == 1.5e6 and r["launch__registers_per_thread"] == 168.0


# ------------------------------------------------------------------ analysis
def metrics(**kw):
    """A neutral kernel: nothing busy, stalls spread evenly; kw overrides (stall_<reason>=v)."""
    m = {prof.DURATION: 1e6, prof.TENSOR[0]: 50.0, prof.DRAM: 20.0, prof.L2: 20.0, prof.OCCUPANCY: 18.0,
         prof.REGISTERS: 168.0, STALL("selected"): 1.0}
    for r in ("barrier", "long_scoreboard", "wait", "gmma"):
        m[STALL(r)] = 0.5
    for k, v in kw.items():
        m[STALL(k[6:]) if k.startswith("stall_") else getattr(prof, k)] = v
    return m


def test_analyse_throughput_and_ceiling():
    a = prof.analyse(metrics(), flops=1e12, ceiling_tflops=800.0)  # 1e12 flop in 1 ms
    assert a["duration_us"] == 1000.0 and a["tflops"] == pytest.approx(1000.0)
    assert a["pct_ceiling"] == pytest.approx(125.0)
    assert prof.analyse(metrics(), 1e12, None)["pct_ceiling"] is None


def test_rule_tensor_bound():
    a = prof.analyse(metrics(TENSOR_GMMA=85.0), 1e11, 800.0)  # the busiest tensor reading counts
    assert a["limiter_kind"] == "compute" and a["limiter"].startswith("tensor-bound (tensor pipe 85%)")


def test_rule_near_ceiling_is_compute():
    a = prof.analyse(metrics(DURATION=1.3e6), 1e12, 800.0)  # 769 TFLOP/s = 96% of the ceiling
    assert a["limiter_kind"] == "compute" and "near the matmul ceiling (96%)" in a["limiter"]


def test_rule_memory_and_l2_bound():
    a = prof.analyse(metrics(DRAM=91.0), 1e11, 800.0)
    assert a["limiter_kind"] == "memory" and a["limiter"].startswith("memory-bound (DRAM 91%")
    a = prof.analyse(metrics(L2=83.0), 1e11, 800.0)
    assert a["limiter_kind"] == "memory" and a["limiter"].startswith("L2-bound")


def test_rule_dominant_stall():
    a = prof.analyse(metrics(stall_barrier=4.0), 1e11, 800.0)  # 4 / 5.5 = 73% of stalls
    assert a["limiter_kind"] == "sync"
    assert a["limiter"].startswith("stalls mostly on barrier wait") and "(barrier 73% of stalls)" in a["limiter"]
    assert a["top_stalls"] == "barrier 73%, long_scoreboard 9%"  # "selected" is not a stall
    a = prof.analyse(metrics(stall_long_scoreboard=3.0), 1e11, 800.0)
    assert a["limiter_kind"] == "latency" and a["limiter"].startswith("waiting for loads (TMA")


def test_rule_no_dominant_stall_and_notes():
    a = prof.analyse(metrics(THEORETICAL_OCCUPANCY=50.0), 1e11, 800.0, spill_bytes=64)
    assert a["limiter_kind"] == "unknown" and a["limiter"].startswith("no single limiter (top stall")
    assert "spills 64 B" in a["limiter"] and "achieved occupancy 18% of a possible 50%" in a["limiter"]
    assert "occupancy" not in prof.analyse(metrics(THEORETICAL_OCCUPANCY=18.75), 1e11, 800.0)["limiter"]


def test_analyse_synthetic_rows():
    gemm, attn = prof.parse_ncu_csv(SYNTHETIC.read_text())
    a = prof.analyse(attn, 4.0 * 2 * 16 * 8192**2 * 128, 750.0)
    assert a["tflops"] == pytest.approx(595.8, abs=0.1) and a["pct_ceiling"] == pytest.approx(79.4, abs=0.1)
    assert a["limiter_kind"] == "sync" and a["bank_conflicts"] == 1_048_576 + 65_536
    assert a["top_stalls"].startswith("barrier 5")
    assert prof.analyse(gemm, 2.0 * 8192**3, 750.0)["limiter"].startswith("tensor-bound (tensor pipe 86%)")


# ------------------------------------------------------------------ ncu command
def test_ncu_command():
    cmd = prof.ncu_command("attn-fwd", ATTN_CFG, ATTN_P, ncu="/opt/ncu")
    assert cmd[0] == "/opt/ncu"
    joined = " ".join(cmd)
    assert "--clock-control none" in joined and "--csv" in cmd and "--page raw" in joined
    assert "--print-units base" in joined and "--launch-count 1" in joined
    assert cmd[cmd.index("--kernel-name") + 1] == "regex:attn_fwd_kernel"
    assert cmd[cmd.index("--nvtx-include") + 1] == f"{prof.NVTX_RANGE}/" and "--nvtx" in cmd
    requested = cmd[cmd.index("--metrics") + 1].split(",")
    assert set(requested) == set(prof.METRICS + prof.OPTIONAL_METRICS)
    for m in (prof.DURATION, prof.DRAM, prof.L2, prof.OCCUPANCY, prof.REGISTERS, prof.DYNAMIC_SMEM, STALL("gmma"),
              *prof.TENSOR, *prof.BANK_CONFLICTS):
        assert m in requested
    i = cmd.index("-m")
    assert cmd[i + 1] == prof.TARGET_MODULE == "cudadent42.tune.profile_target"
    assert cmd[i + 2:i + 4] == ["attn-fwd", ATTN_CFG] and json.loads(cmd[i + 4]) == ATTN_P
    assert prof.ncu_command("gemm", "x", {}, metrics=["a.sum"])[cmd.index("--kernel-name") + 1] == "regex:gemm_kernel"


def test_kernel_regex_matches_the_kernel_sources():
    src = Path(__file__).parent.parent / "csrc" / "kernels"
    assert "attn_fwd_kernel<T><<<" in (src / "attention" / "fwd_launch.hpp").read_text()
    assert "gemm_kernel<T, Scheduler>" in (src / "gemm" / "gemm_launch.hpp").read_text()
    assert "grouped_gemm_kernel<T><<<" in (src / "grouped_gemm" / "ggemm_launch.hpp").read_text()


# ------------------------------------------------------------------ running (faked ncu)
def fake_build(monkeypatch, spills=0):
    monkeypatch.setattr(prof, "find_ncu", lambda: "ncu")
    monkeypatch.setattr(prof, "_build_meta", lambda cfgs: {
        c.name: {"registers": 168, "spill_stores": spills, "spill_loads": 0} for c in cfgs})


def fake_run(monkeypatch, reply):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        out, err = reply(cmd)
        return subprocess.CompletedProcess(cmd, 0, out, err)

    monkeypatch.setattr(prof.subprocess, "run", run)
    return calls


def test_missing_ncu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(prof.shutil, "which", lambda name: None)
    monkeypatch.setattr(prof, "_build_meta", lambda cfgs: pytest.fail("built before checking for ncu"))
    with pytest.raises(prof.ProfileError, match=r"`ncu`\) was not found on PATH"):
        prof.profile("attn-fwd", ATTN_P, [ATTN_CFG], ceiling_tflops=700.0, log=lambda *_: None)


def test_missing_ncu_from_the_cli(monkeypatch, capsys):
    monkeypatch.setattr(prof.shutil, "which", lambda name: None)
    from cudadent42.tune import sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "top_configs", lambda *a, **k: pytest.fail("swept before checking for ncu"))
    assert cli.main(["profile", "attn-fwd", "--config", ATTN_CFG, "--top", "3"]) == 2
    assert "not found on PATH" in capsys.readouterr().err


@pytest.mark.parametrize("output, match", [
    ("==ERROR== ERR_NVGPUCTRPERM - The user does not have permission to access NVIDIA GPU Performance Counters",
     "ERR_NVGPUCTRPERM"),
    ("==ERROR== LibraryNotLoaded: libnvperf_host.so", "could not load its libraries"),
])
def test_ncu_tool_failures_are_clear_errors(monkeypatch, output, match):
    fake_build(monkeypatch)
    fake_run(monkeypatch, lambda cmd: ("", output))
    with pytest.raises(prof.ProfileError, match=match):
        prof.profile("attn-fwd", ATTN_P, [ATTN_CFG], ceiling_tflops=700.0, log=lambda *_: None)


def test_profile_end_to_end_with_faked_ncu(monkeypatch, tmp_path):
    fake_build(monkeypatch, spills=8)
    calls = fake_run(monkeypatch, lambda cmd: (SYNTHETIC.read_text(), ""))
    logs = []
    rows = prof.profile("attn-fwd", ATTN_P, [ATTN_CFG], out_dir=str(tmp_path), ceiling_tflops=750.0,
                        log=logs.append)
    (r,) = rows
    assert r["status"] == "profiled" and "attn_fwd_kernel" in r["kernel"]  # the last (only) kernel row
    assert r["pct_ceiling"] == pytest.approx(79.4, abs=0.1) and r["spill_bytes"] == 8
    assert r["limiter"].startswith("stalls mostly on barrier wait") and "spills 8 B" in r["limiter"]
    assert "--clock-control" in calls[0] and ATTN_CFG in calls[0]
    text = "\n".join(logs)
    assert ATTN_CFG in text and "barrier" in text
    data = json.loads((tmp_path / "profile.json").read_text())
    assert data["rows"][0]["metrics"][prof.DURATION] == 1_845_312.0
    assert (tmp_path / "profile.csv").read_text().startswith("config,status,duration_us")


def test_optional_metrics_are_dropped_after_a_failure(monkeypatch):
    fake_build(monkeypatch)
    calls = fake_run(monkeypatch, lambda cmd: ("==ERROR== Failed to find metric sm__pipe_tensor_op_gmma_cycles"
                                               if prof.TENSOR_GMMA in " ".join(cmd) else SYNTHETIC.read_text(), ""))
    rows = prof.profile("attn-fwd", ATTN_P, [ATTN_CFG, "attn_fwd_bf16_hd128_m128_n64_st2_wg2"],
                        ceiling_tflops=750.0, log=lambda *_: None)
    assert [r["status"] for r in rows] == ["profiled", "profiled"]
    assert len(calls) == 3  # one failed try, then one run per config without the optional names


def test_target_failure_is_per_config_and_empty_output_is_an_error(monkeypatch):
    fake_build(monkeypatch)
    fake_run(monkeypatch, lambda cmd: ("", f"{prof.TARGET_ERROR} RuntimeError: wrong result"))
    (r,) = prof.profile("attn-fwd", ATTN_P, [ATTN_CFG], ceiling_tflops=750.0, log=lambda *_: None)
    assert r["status"] == "failed" and "wrong result" in r["error"]
    fake_run(monkeypatch, lambda cmd: ("==WARNING== No kernels were profiled.", ""))
    with pytest.raises(prof.ProfileError, match="profiled no attn_fwd_kernel launch"):
        prof.profile("attn-fwd", ATTN_P, [ATTN_CFG], ceiling_tflops=750.0, log=lambda *_: None)


def test_target_reports_its_own_failure(capsys):
    assert profile_target.main(["attn-fwd", "not_a_config", json.dumps(ATTN_P)]) == 3
    assert capsys.readouterr().err.startswith(prof.TARGET_ERROR)


# ------------------------------------------------------------------ choosing / pruning
def sweep_row(name, ms, status="timed", spill=0):
    return dict(config=name, time_ms=ms if status == "timed" else None, tflops=1 / ms if status == "timed" else None,
                status=status, spill_bytes=spill, is_default=False)


def fake_profile(monkeypatch, by_name):
    """by_name: config -> (limiter_kind, spill_bytes)."""
    def run(family, problem, configs, log=print, **kw):
        return [dict(config=c, status="profiled", limiter=f"{by_name[c][0]} limiter", limiter_kind=by_name[c][0],
                     spill_bytes=by_name[c][1]) for c in configs]

    monkeypatch.setattr(prof, "profile", run)


def test_prune_moves_flagged_configs_behind_clean_ones_within_3_percent(monkeypatch):
    rows = [sweep_row("a", 1.00), sweep_row("b", 1.02), sweep_row("c", 1.025), sweep_row("d", 1.10),
            sweep_row("e", 1.0, status="build failed")]
    fake_profile(monkeypatch, {"a": ("sync", 0), "b": ("compute", 0), "c": ("compute", 16), "d": ("memory", 0)})
    logs = []
    out = prof.prune_by_profile("attn-fwd", ATTN_P, rows, k=4, log=logs.append)
    assert [r["config"] for r in out] == ["b", "a", "c", "d", "e"]
    assert "not compute-bound: sync limiter" in out[1]["pruned_by_profile"]
    assert out[2]["pruned_by_profile"] == "spills 16 B"
    assert out[3]["pruned_by_profile"] is None  # 10% slower: outside the band, untouched
    assert sum(line.startswith("pruned ") for line in logs) == 2
    assert len({tuple(r) for r in out}) == 1  # every row has the same keys (sweep.csv)


def test_prune_keeps_order_when_nothing_clean_or_nothing_flagged(monkeypatch):
    rows = [sweep_row("a", 1.00), sweep_row("b", 1.01)]
    fake_profile(monkeypatch, {"a": ("memory", 0), "b": ("sync", 0)})
    assert [r["config"] for r in prof.prune_by_profile("gemm", {}, rows, log=lambda *_: None)] == ["a", "b"]
    fake_profile(monkeypatch, {"a": ("compute", 0), "b": ("unknown", 0)})
    assert [r["config"] for r in prof.prune_by_profile("gemm", {}, rows, log=lambda *_: None)] == ["a", "b"]


def test_prune_without_ncu_warns_and_keeps_order(monkeypatch):
    monkeypatch.setattr(prof.shutil, "which", lambda name: None)
    logs = []
    rows = [sweep_row("a", 1.00), sweep_row("b", 1.01)]
    assert [r["config"] for r in prof.prune_by_profile("gemm", {}, rows, log=logs.append)] == ["a", "b"]
    assert any("WARNING: --prune-by-profile skipped" in line for line in logs)


def test_sweep_calls_prune_by_profile(monkeypatch):
    from cudadent42.tune import sweep as sweep_mod

    class Built:
        ok, seconds, error = True, 0.1, None

    class Loaded:
        meta = {"registers": 168, "spill_stores": 0, "spill_loads": 0}

    monkeypatch.setattr(sweep_mod, "build", lambda cands, jobs=None: [Built() for _ in cands])
    monkeypatch.setattr(sweep_mod, "load", lambda cfg: Loaded())
    seen = {}

    def spy(family, problem, rows, k, log):
        seen.update(family=family, k=k, n=len(rows))
        return rows

    monkeypatch.setattr(prof, "prune_by_profile", spy)
    space = dict(block_n=(128,), stages=(2,))
    rows = sweep_mod.sweep("attn-fwd", ATTN_P, space=space, prune_by_profile=2, log=lambda *_: None)
    assert seen == dict(family="attn-fwd", k=2, n=len(rows))
    seen.clear()
    sweep_mod.sweep("attn-fwd", ATTN_P, space=space, log=lambda *_: None)
    assert not seen  # off by default: the sweep API is unchanged


def test_top_configs_from_sweep_json(tmp_path, monkeypatch):
    from cudadent42.tune import sweep as sweep_mod

    points = [dict(config=n, status=s) for n, s in (("x", "timed"), ("y", "timed"), ("z", "wrong result"),
                                                   ("w", "timed"))]
    (tmp_path / "sweep.json").write_text(json.dumps({"family": "attn-fwd", "problem": ATTN_P, "points": points}))
    assert sweep_mod.top_configs("attn-fwd", ATTN_P, 2, out_dir=str(tmp_path), log=lambda *_: None) == ["x", "y"]
    assert sweep_mod.top_configs("attn-fwd", dict(ATTN_P, seqlen=4096), 5, out_dir=str(tmp_path),
                            log=lambda *_: None) == ["x", "y", "w"]  # sizes differ: same kernels, noted
    swept = []
    monkeypatch.setattr(sweep_mod, "sweep", lambda family, problem, **kw: swept.append(problem) or
                        [sweep_row("fresh", 1.0), sweep_row("bad", 2.0, status="wrong result")])
    other = dict(ATTN_P, head_dim=64)  # another kernel: the file does not apply
    assert sweep_mod.top_configs("attn-fwd", other, 3, out_dir=str(tmp_path), log=lambda *_: None) == ["fresh"]
    assert swept == [other]


# ------------------------------------------------------------------ CLI
def test_cli_profile_parser(monkeypatch):
    seen = {}
    monkeypatch.setattr(cli, "_profile", lambda args: seen.setdefault("args", args) and 0)
    cli.main(["profile", "attn-fwd", "--hdim", "128", "--top", "3"])
    a = seen["args"]
    assert (a.cmd, a.family, a.hdim, a.top, a.config) == ("profile", "attn-fwd", 128, 3, None)
    seen.clear()
    cli.main(["profile", "gemm", "--config", "c1", "--config", "c2", "--out", "d"])
    assert seen["args"].config == ["c1", "c2"] and seen["args"].top == 0 and seen["args"].out == "d"


def test_cli_sweep_prune_by_profile(monkeypatch):
    from cudadent42.tune import sweep as sweep_mod

    kw_seen = []
    monkeypatch.setattr(sweep_mod, "sweep", lambda family, problem, **kw: kw_seen.append(kw) or [{}])
    monkeypatch.setattr(sweep_mod, "tune", lambda family, problem, **kw: kw_seen.append(kw) or [{}])
    cli.main(["sweep", "attn-fwd", "--prune-by-profile"])
    cli.main(["sweep", "gemm", "--prune-by-profile", "5"])
    cli.main(["tune", "gemm"])
    assert [kw["prune_by_profile"] for kw in kw_seen] == [3, 5, 0]
