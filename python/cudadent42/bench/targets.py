"""The performance targets of the attention-forward issue, checked against a
benchmark run (rows from bench.attention), so every run says where it stands."""
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


def check_targets(rows, targets=FWD_TARGETS) -> list[tuple[str, bool, list[str]]]:
    """[(target, met, failing cells)]; cells with no anchor number (NaN) are skipped."""
    out = []
    for desc, applies, threshold, ratio in targets:
        failing = [f"D={r['head_dim']} {'causal' if r['causal'] else 'full'} S={r['seqlen']}: {r[ratio]:.2f}"
                   for r in rows if applies(r) and not math.isnan(r[ratio]) and r[ratio] < threshold]
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
