"""Attention backward family (configs/attention_bwd.py, csrc/kernels/attention/bwd_*, ops/attention_bwd.py)."""
from __future__ import annotations

from ..configs.attention_bwd import BWD_HEAD_DIMS, BWD_MASKS, AttnBwdConfig
from ..configs.heuristics_sm90 import attn_bwd_config
from ..reference import attention, attention_grads
from ._common import attention_flops, capped_attention_problem, dense_attention_inputs
from .registry import Family, pow2_bucket, register

SPACE = dict(stages=(2, 3, 4), block_m=(64, 128))
MAX_SWEEP_SCORES = 1 << 30  # batch*heads*seqlen^2 of a sweep: fp32 autograd through the reference must fit


def table_key(p) -> str:
    return (f"attn-bwd|{p['dtype']}|hd{p['head_dim']}|{p['mask']}|det{int(p['deterministic'])}"
            f"|s{pow2_bucket(max(p['seqlen'], 1))}")


def heuristic(p) -> AttnBwdConfig:
    return attn_bwd_config(p["dtype"], p["head_dim"], p["mask"], p["deterministic"])


def flops(p) -> float:
    return 2.5 * attention_flops(p)  # 5 GEMMs of the forward's 2


def make_case(p, device="cuda") -> dict:
    """Dense none/causal inputs plus the forward's out and LSE (from the fp32 reference: the
    backward is what a sweep times, and its check does not depend on which forward ran)."""
    if p["mask"] == "local":
        raise ValueError("sweeps time dense none/causal attention problems")
    if p["batch"] * p["heads"] * p["seqlen"] ** 2 > MAX_SWEEP_SCORES:
        raise ValueError("reference would not fit: sweep with a smaller batch*heads*seqlen^2")
    q, k, v, dout = dense_attention_inputs(p, device, 4)
    causal = p["mask"] == "causal"
    out, lse = attention(q, k, v, causal=causal, return_lse=True)
    return dict(q=q, k=k, v=v, out=out.to(q.dtype), lse=lse, dout=dout, causal=causal,
                deterministic=p["deterministic"])


def reference(case, upcast: bool):
    return attention_grads(case["q"], case["k"], case["v"], case["dout"], causal=case["causal"], upcast=upcast)


def default_configs() -> list[AttnBwdConfig]:
    return [attn_bwd_config(dtype, d, mask) for dtype in ("bf16", "fp16") for d in BWD_HEAD_DIMS for mask in BWD_MASKS]


def tuning_problem(problem, sizes):
    if problem["mask"] == "local":
        return None
    return capped_attention_problem(problem, sizes)


FAMILY = register(Family(
    name="attn-bwd", config_class=AttnBwdConfig,
    problem_fields=("dtype", "head_dim", "mask", "deterministic", "seqlen"),
    fixed_fields=("dtype", "head_dim", "mask", "deterministic"), size_fields=("batch", "heads"),
    problem_defaults=dict(dtype="bf16", head_dim=128, mask="none", deterministic=False, seqlen=8192, batch=2,
                          heads=16),
    table_key=table_key, heuristic=heuristic, space=SPACE, flops=flops, make_case=make_case, reference=reference,
    runner="cudadent42.ops.attention_bwd:tuning_run",
    kernel_regex="attn_bwd_kernel",  # cd42::attn::attn_bwd_kernel<T> (csrc/kernels/attention/bwd_launch.hpp)
    default_configs=default_configs, tuning_problem=tuning_problem,
    c_structs=("cudadent42.ops.attention_bwd:_BwdArgs", "cudadent42.ops.attention_bwd:_PreArgs"),
))
