"""CPU test: the target check reads a real benchmark result file."""
import json
from pathlib import Path

from cudadent42.bench.targets import BWD_TARGETS, check_targets, format_targets

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results_h100_v4_attn_fwd.json"


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
