"""Attention forward benchmark: ours vs SDPA (cuDNN, FLASH_ATTENTION) on the
standard grid: B*S = 16384 tokens, H*D = 2048, bf16, causal and not."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .timing import bench_ms, interleaved_ms, median_of_rounds, tflops

SEQLENS = (512, 1024, 2048, 4096, 8192, 16384)
HEAD_DIMS = (64, 128, 256)
TOKENS, HIDDEN = 16384, 2048


def fwd_flops(b, h, s, d, causal):
    return 4.0 * b * h * s * s * d / (2 if causal else 1)


def _sdpa_ms(backend, q, k, v, causal):
    try:
        with sdpa_kernel(backend):
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            return bench_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    except RuntimeError:  # backend refuses this shape (e.g. head dim 256 on FLASH)
        return float("nan")


IMPLS = ("ours", "cudnn", "fa2")


def make_row(b, h, s, d, causal, flops, runs: dict) -> dict:
    """One benchmark cell from {impl: [ms per round]} (impl in IMPLS): the
    median time over rounds, TFLOP/s, ratios vs the two SDPA backends, and
    the range of the per-round ratio to cuDNN (how much one round's noise
    could have moved the cell)."""
    row = dict(batch=b, heads=h, seqlen=s, head_dim=d, causal=causal, rounds=len(runs["ours"]))
    for impl in IMPLS:
        row[f"{impl}_ms"] = median_of_rounds(runs[impl])
        row[f"{impl}_ms_rounds"] = runs[impl]
        row[f"{impl}_tflops"] = tflops(flops, row[f"{impl}_ms"])
    row["vs_cudnn"] = row["ours_tflops"] / row["cudnn_tflops"]
    row["vs_fa2"] = row["ours_tflops"] / row["fa2_tflops"]
    per_round = [c / o for o, c in zip(runs["ours"], runs["cudnn"])]
    row["vs_cudnn_range"] = (min(per_round), max(per_round))
    return row


def grid(seqlens, head_dims, causals):
    """The standard grid's cells: (b, h, s, d, causal, q, k, v), q/k/v (B, S, H, D) bf16, B*S and H*D fixed."""
    for d in head_dims:
        for causal in causals:
            for s in seqlens:
                b, h = TOKENS // s, HIDDEN // d
                q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16) for _ in range(3))
                yield b, h, s, d, causal, q, k, v


def run_attention_bench(seqlens=SEQLENS, head_dims=HEAD_DIMS, causals=(False, True), rounds=3, log=print):
    """The forward grid; each cell's implementations timed in `rounds`
    interleaved rounds (timing.interleaved_ms), the median reported."""
    from .. import flash_attn_func
    from ..configs.heuristics_sm90 import attn_fwd_config
    from ..jit import build

    # Compile every config the grid needs up front, in parallel.
    build([attn_fwd_config("bf16", d, "causal" if c else "none", False, False) for d in head_dims for c in causals])
    rows = []
    for b, h, s, d, causal, q, k, v in grid(seqlens, head_dims, causals):
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))  # SDPA's native layout
        flash_attn_func(q, k, v, causal=causal)
        runs = interleaved_ms({
            "ours": lambda: bench_ms(lambda: flash_attn_func(q, k, v, causal=causal)),
            "cudnn": lambda: _sdpa_ms(SDPBackend.CUDNN_ATTENTION, qt, kt, vt, causal),
            "fa2": lambda: _sdpa_ms(SDPBackend.FLASH_ATTENTION, qt, kt, vt, causal),
        }, rounds)
        row = make_row(b, h, s, d, causal, fwd_flops(b, h, s, d, causal), runs)
        rows.append(row)
        log(format_row(row))
    return rows


HEADER = (f"{'D':>4} {'causal':>6} {'S':>6} {'B':>3} {'H':>3} {'ours':>7} {'cuDNN':>7} {'FA2':>7} "
          f"{'/cuDNN':>7} {'/FA2':>6} {'/cuDNN per round':>17}   (TFLOP/s: median over rounds)")


def format_row(r) -> str:
    return (f"{r['head_dim']:>4} {str(r['causal']):>6} {r['seqlen']:>6} {r['batch']:>3} {r['heads']:>3} "
            f"{r['ours_tflops']:>7.1f} {r['cudnn_tflops']:>7.1f} {r['fa2_tflops']:>7.1f} "
            f"{r['vs_cudnn']:>7.3f} {r['vs_fa2']:>6.2f} {_range(r.get('vs_cudnn_range')):>17}")


def _range(lo_hi) -> str:
    return "" if not lo_hi else f"{lo_hi[0]:.3f}-{lo_hi[1]:.3f}"


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = sorted({r["head_dim"] for r in rows})
    fig, axes = plt.subplots(2, len(ds), figsize=(5 * len(ds), 8), squeeze=False)
    for j, d in enumerate(ds):
        for i, causal in enumerate((False, True)):
            ax = axes[i][j]
            sel = [r for r in rows if r["head_dim"] == d and r["causal"] == causal]
            if not sel:
                continue
            xs = [r["seqlen"] for r in sel]
            for key, label in (("ours_tflops", "cudadent42"), ("cudnn_tflops", "SDPA cuDNN"),
                               ("fa2_tflops", "SDPA FLASH")):
                ax.plot(xs, [r[key] for r in sel], marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_title(f"fwd bf16 D={d} {'causal' if causal else 'full'}")
            ax.set_xlabel("seqlen")
            ax.set_ylabel("TFLOP/s")
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
