"""Attention forward family (configs/attention.py, csrc/kernels/attention/fwd_*, ops/attention.py)."""
from __future__ import annotations

from ..configs.attention import HEAD_DIMS, AttnFwdConfig
from ..configs.heuristics_sm90 import attn_fwd_config
from ..reference import attention
from ._common import attention_flops, capped_attention_problem, dense_attention_inputs
from .registry import Family, pow2_bucket, register

# softmax_under_pv: where the overlapped step waits for its PV wgmma; the
# better placement differs by head dim (configs/heuristics_sm90.py gives the measurements).
SPACE = dict(block_n=(48, 64, 80, 96, 112, 128, 144, 160, 176, 192), stages=(2, 3, 4), softmax_under_pv=(True, False))
SWEEP_SOFTCAP = 10.0  # the cap a sweep of a softcap problem runs with
MAX_SWEEP_SCORES = 1 << 31  # batch*heads*seqlen^2 of a sweep: the fp32 reference must fit on the card


def table_key(p) -> str:
    return (f"attn-fwd|{p['dtype']}|hd{p['head_dim']}|{p['mask']}|softcap{int(p['softcap'])}"
            f"|varlen{int(p['varlen'])}|s{pow2_bucket(max(p['seqlen'], 1))}")


def heuristic(p) -> AttnFwdConfig:
    return attn_fwd_config(p["dtype"], p["head_dim"], p["mask"], p["softcap"], p["varlen"])


def make_case(p, device="cuda") -> dict:
    """Dense none/causal inputs (sweeps do not time varlen or sliding-window problems)."""
    if p["varlen"] or p["mask"] == "local":
        raise ValueError("sweeps time dense (non-varlen) none/causal attention problems")
    if p["batch"] * p["heads"] * p["seqlen"] ** 2 > MAX_SWEEP_SCORES:
        raise ValueError("reference would not fit: sweep with a smaller batch*heads*seqlen^2, then time larger")
    q, k, v = dense_attention_inputs(p, device)
    return dict(q=q, k=k, v=v, causal=p["mask"] == "causal", softcap=SWEEP_SOFTCAP if p["softcap"] else 0.0)


def reference(case, upcast: bool):
    return attention(case["q"], case["k"], case["v"], causal=case["causal"], softcap=case["softcap"], upcast=upcast)


def default_configs() -> list[AttnFwdConfig]:
    return [attn_fwd_config(dtype, d, mask, softcap=False, varlen=False)
            for dtype in ("bf16", "fp16") for d in HEAD_DIMS for mask in ("none", "causal", "local")]


def tuning_problem(problem, sizes):
    """Varlen and sliding-window problems are not tuned (sweeps time dense problems only)."""
    if problem["varlen"] or problem["mask"] == "local":
        return None
    return capped_attention_problem(problem, sizes)


FAMILY = register(Family(
    name="attn-fwd", config_class=AttnFwdConfig,
    problem_fields=("dtype", "head_dim", "mask", "softcap", "varlen", "seqlen"),
    fixed_fields=("dtype", "head_dim", "mask", "softcap", "varlen"), size_fields=("batch", "heads"),
    problem_defaults=dict(dtype="bf16", head_dim=128, mask="none", softcap=False, varlen=False, seqlen=8192,
                          batch=2, heads=16),
    table_key=table_key, heuristic=heuristic, space=SPACE, flops=attention_flops, make_case=make_case,
    reference=reference, runner="cudadent42.ops.attention:tuning_run",
    kernel_regex="attn_fwd_kernel",  # cd42::attn::attn_fwd_kernel<T> (csrc/kernels/attention/fwd_launch.hpp)
    default_configs=default_configs, tuning_problem=tuning_problem,
    c_structs=("cudadent42.ops.attention:_FwdArgs",),
))
