"""CPU test: the target check reads a real benchmark result file."""
import json
from pathlib import Path

from cudadent42.bench.targets import BWD_TARGETS, check_targets, format_targets

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results" / "results_h100_v4_attn_fwd.json"


def test_targets_on_the_recorded_h100_run():
    rows = json.loads(RESULTS.read_text())["attn_fwd"]
    res = {desc: (met, failing) for desc, met, failing in check_targets(rows)}
    met, failing = res[">= 1.0x cuDNN, D=128/256, S >= 4096"]
    assert not met and any("D=256" in c for c in failing)  # v4 is short of cuDNN at D=256
    met, failing = res[">= 1.3x FLASH_ATTENTION, S >= 2048"]
    assert not met and all("S=2048" in c or "S=4096" in c for c in failing)
    text = format_targets(check_targets(rows))
    assert text.count("FAIL") + text.count("PASS") == 4


def test_targets_pass_when_every_ratio_is_high():
    rows = [dict(head_dim=d, causal=c, seqlen=s, ours_tflops=500.0, vs_cudnn=1.2, vs_fa2=2.0)
            for d in (64, 128, 256) for c in (False, True) for s in (512, 4096)]
    assert all(met for _, met, _ in check_targets(rows))
    rows[0]["vs_cudnn"] = float("nan")  # an anchor that refused the shape is not counted
    assert all(met for _, met, _ in check_targets(rows))


def test_backward_targets_fail_unsupported_cells():
    nan = float("nan")
    rows = [dict(head_dim=d, causal=False, seqlen=4096, ours_tflops=t, vs_cudnn=t / 400, vs_fa2=t / 250)
            for d, t in ((64, 420.0), (128, 450.0), (256, nan))]
    res = {desc: (met, failing) for desc, met, failing in check_targets(rows, BWD_TARGETS)}
    assert res[">= 0.90x cuDNN, D=64/128, S >= 4096"] == (True, [])
    assert res[">= 1.0x cuDNN, D=256, S >= 2048"] == (False, ["D=256 full S=4096: not supported"])
    assert not res[">= 1.4x FLASH_ATTENTION, S >= 2048"][0]


def test_interleaved_rounds_alternate_and_rotate():
    from cudadent42.bench.timing import interleaved_ms

    calls = []

    def timer(name, ms):
        def f():
            calls.append(name)
            return ms
        return f

    runs = interleaved_ms({"a": timer("a", 1.0), "b": timer("b", 2.0), "c": timer("c", float("nan"))}, rounds=3)
    # c refuses (NaN) in round 1 and is not called again; the order rotates.
    assert calls == ["a", "b", "c", "b", "a", "a", "b"]
    assert runs["a"] == [1.0, 1.0, 1.0] and runs["b"] == [2.0, 2.0, 2.0] and len(runs["c"]) == 3


def test_row_reports_median_over_rounds_and_ratio_range():
    from cudadent42.bench.attention import make_row

    runs = {"ours": [1.0, 1.2, 1.1], "cudnn": [1.0, 0.9, 1.5], "fa2": [2.0, 2.2, 2.1]}
    r = make_row(1, 1, 128, 64, False, 1e12, runs)
    assert r["ours_ms"] == 1.1 and r["cudnn_ms"] == 1.0 and r["fa2_ms"] == 2.1
    assert abs(r["vs_cudnn"] - 1.0 / 1.1) < 1e-12
    assert abs(r["vs_cudnn_range"][0] - 0.75) < 1e-12 and abs(r["vs_cudnn_range"][1] - 1.5 / 1.1) < 1e-12
