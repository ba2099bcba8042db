"""The performance targets of the attention forward and backward issues,
checked against a benchmark run (rows from bench.attention / bench.attention_bwd),
so every run says where it stands."""
from __future__ import annotations

import math

# (description, predicate on a row, threshold on the row's ratio, which ratio)
FWD_TARGETS = [
    (">= 1.0x cuDNN, D=128/256, S >= 4096", lambda r: r["head_dim"] in (128, 256) and r["seqlen"] >= 4096,
     1.0, "vs_cudnn"),
    (">= 0.90x cuDNN, D=64, S >= 4096", lambda r: r["head_dim"] == 64 and r["seqlen"] >= 4096, 0.90, "vs_cudnn"),
    (">= 1.3x FLASH_ATTENTION, S >= 2048", lambda r: r["seqlen"] >= 2048, 1.3, "vs_fa2"),
    ("no case below 0.75x cuDNN", lambda r: True, 0.75, "vs_cudnn"),
]

BWD_TARGETS = [
    (">= 0.90x cuDNN, D=64/128, S >= 4096", lambda r: r["head_dim"] in (64, 128) and r["seqlen"] >= 4096,
     0.90, "vs_cudnn"),
    (">= 1.0x cuDNN, D=256, S >= 2048", lambda r: r["head_dim"] == 256 and r["seqlen"] >= 2048, 1.0, "vs_cudnn"),
    (">= 1.4x FLASH_ATTENTION, S >= 2048", lambda r: r["seqlen"] >= 2048, 1.4, "vs_fa2"),
]


def check_targets(rows, targets=FWD_TARGETS) -> list[tuple[str, bool, list[str]]]:
    """[(target, met, failing cells)]. A cell where the anchor has no number
    (NaN: the backend refused the shape) is skipped; one where ours has none
    (the shape is not supported) fails."""
    out = []
    for desc, applies, threshold, ratio in targets:
        failing = []
        for r in rows:
            if not applies(r):
                continue
            cell = f"D={r['head_dim']} {'causal' if r['causal'] else 'full'} S={r['seqlen']}"
            if math.isnan(r["ours_tflops"]):
                failing.append(f"{cell}: not supported")
            elif not math.isnan(r[ratio]) and r[ratio] < threshold:
                failing.append(f"{cell}: {r[ratio]:.2f}")
        out.append((desc, not failing, failing))
    return out


def format_targets(results) -> str:
    lines = []
    for desc, met, failing in results:
        lines.append(f"{'PASS' if met else 'FAIL'}  {desc}")
        lines += [f"        {cell}" for cell in failing[:8]]
        if len(failing) > 8:
            lines.append(f"        ... {len(failing) - 8} more")
    return "\n".join(lines)
