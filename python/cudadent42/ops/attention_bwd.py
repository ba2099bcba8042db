"""Attention backward (v1 kernel: csrc/kernels/attention/bwd_*).

`attn_bwd` computes dq, dk, dv from the forward's inputs, output and LSE.
It is the autograd backward of the forward op (flash_attn_func,
flash_attn_varlen_func, scaled_dot_product_attention), checked against fp32
autograd on an H100 by tests/test_attention_bwd_gpu.py. Scope: dense and
varlen (packed) inputs, head dims 64/96/128 (bwd_traits.hpp) and 192/256
(bwd_wide_traits.hpp), masks none / causal / sliding window, softcap;
GQA/MQA reduce dK/dV inside the kernel.
"""
from __future__ import annotations

import ctypes
import dataclasses
import math

import torch

from ..configs.attention import MASKS
from ..configs.attention_bwd import BWD_HEAD_DIMS, AttnBwdConfig
from ..configs.heuristics_sm90 import attn_bwd_config
from ..configs.select import select
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper
from ..tune import table as _table
from . import validate as V
from ._launch import device_index, eager_ok, nvtx_requested, profiling, raw_stream
from .attention import (_DTYPES, _attn_fwd_op, _check_tensor, _mask_kind, _misaligned, _remember, _sig,
                        check_cu_seqlens, check_fwd_inputs, contiguous_strides, set_eager_backward, set_strides)


class _BwdArgs(ctypes.Structure):
    """Mirror of cd42_attn_bwd_args (csrc/kernels/attention/bwd_args.h)."""
    _fields_ = (
        [(n, ctypes.c_void_p) for n in ("q", "k", "v", "dout", "lse_log2", "dsum", "dq_accum", "dq_semaphore",
                                         "cu_seqlens_q", "cu_seqlens_k", "dq", "dk", "dv")]
        + [(f"{t}_{s}_stride", ctypes.c_int64) for t in ("q", "k", "v", "do", "dq", "dk", "dv")
           for s in ("batch", "row", "head")]
        + [(n, ctypes.c_int32) for n in ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "seqlen_q_pad",
                                         "total_q", "total_k", "window_left", "window_right", "block_n",
                                         "tile_group")]
        + [("softmax_scale", ctypes.c_float), ("softcap", ctypes.c_float)]
    )


class _PreArgs(ctypes.Structure):
    """Mirror of cd42_attn_bwd_pre_args."""
    _fields_ = (
        [(n, ctypes.c_void_p) for n in ("o", "dout", "lse", "dsum", "lse_log2", "dq_accum", "cu_seqlens_q")]
        + [(f"{t}_{s}_stride", ctypes.c_int64) for t in ("o", "do") for s in ("batch", "row", "head")]
        + [(n, ctypes.c_int32) for n in ("batch", "heads", "seqlen_q", "seqlen_q_pad", "total_q", "head_dim")]
    )


_launchers: dict = {}


def _launcher(cfg: AttnBwdConfig):
    hit = _launchers.get(cfg)
    if hit is None:
        from ..jit import check_abi, load

        kernel = load(cfg)
        check_abi(kernel, cd42_attn_bwd_args=_BwdArgs, cd42_attn_bwd_pre_args=_PreArgs)  # once per config
        for sym, struct in (("cd42_attn_bwd_args_size", _BwdArgs), ("cd42_attn_bwd_pre_args_size", _PreArgs)):
            size = kernel.fn(sym, ctypes.c_int, [])()
            if size != ctypes.sizeof(struct):
                raise RuntimeError(f"{cfg.name}: {struct.__name__} is {size} bytes in C but {ctypes.sizeof(struct)} "
                                   "in Python (bwd_args.h and ops/attention_bwd.py disagree)")
        hit = (kernel,
               kernel.fn("cd42_attn_bwd_preprocess_launch", ctypes.c_int, [ctypes.POINTER(_PreArgs), ctypes.c_void_p]),
               kernel.fn("cd42_attn_bwd_launch", ctypes.c_int, [ctypes.POINTER(_BwdArgs), ctypes.c_void_p]),
               kernel.fn("cd42_attn_bwd_postprocess_launch", ctypes.c_int,
                         [ctypes.POINTER(_BwdArgs), ctypes.c_void_p]))
        _launchers[cfg] = hit
    return hit


_EMPTY, _LAUNCH = 0, 2
_ALIGN_FLOATS = 128  # 512 bytes: each part of the shared workspace starts where its own allocation would


class _BwdPlan:
    """Everything a backward call of one key decides once: checks, config, kernel object, filled
    argument blocks and workspace layout (the forward's plans, ops/attention.py, for the backward)."""
    __slots__ = ("who", "kind", "eager", "cfg", "kernel", "pre_launch", "launch", "post_launch", "pre", "args",
                 "q_shape", "k_shape", "v_shape", "ws_floats", "lse2_off", "acc_off", "sem_len", "dev_index", "nvtx",
                 "version")

    def stale(self) -> bool:
        return self.version is not None and self.version != _table.version


def _check_bwd_call(who, dout, q, k, v, out, lse, cu_q, cu_k, max_sq, max_sk, scale, softcap, deterministic):
    """Every argument check of a backward call (pure: CPU/meta tensors are fine)."""
    varlen = cu_q is not None or cu_k is not None
    rank = 3 if varlen else 4
    check_fwd_inputs(q, k, v, varlen=varlen, head_dim_ok=BWD_HEAD_DIMS, who=who)
    _check_tensor("out", out, rank, q, who=who)
    _check_tensor("dout", dout, rank, q, who=who)
    if out.shape != q.shape or dout.shape != q.shape:
        raise ValueError(f"{who}: out {tuple(out.shape)} and dout {tuple(dout.shape)} must match q {tuple(q.shape)}")
    V.tma_strides(who, "out", out)
    V.tma_strides(who, "dout", dout)
    scale = V.finite_nonneg(who, "softmax_scale", scale)
    softcap = V.finite_nonneg(who, "softcap", softcap, " (0 turns it off; it must equal the forward's)")
    deterministic = V.flag(who, "deterministic", deterministic)
    H = q.shape[-2]
    if varlen:
        V.tensor(who, "cu_seqlens_q", cu_q)
        V.tensor(who, "cu_seqlens_k", cu_k)
        check_cu_seqlens(q, cu_q, cu_k, who)
        max_sq = V.integer(who, "max_seqlen_q", max_sq)
        max_sk = V.integer(who, "max_seqlen_k", max_sk)
        lse_shape = (H, q.shape[0])
    else:
        max_sq, max_sk = q.shape[1], k.shape[1]
        lse_shape = (q.shape[0], H, q.shape[1])
    V.tensor(who, "lse", lse)
    if lse.dtype != torch.float32 or tuple(lse.shape) != lse_shape or lse.device != q.device:
        raise ValueError(f"{who}: lse must be float32 of shape {lse_shape} on {q.device} (as returned with "
                         f"return_lse=True), got {lse.dtype} of shape {tuple(lse.shape)} on {lse.device}")
    return varlen, scale, softcap, deterministic, max_sq, max_sk


def _build_bwd_plan(who, dout, q, k, v, out, lse, cu_q, cu_k, max_sq, max_sk, scale, mask, left, right, softcap,
                    deterministic, config) -> _BwdPlan:
    varlen, scale, softcap, deterministic, Sq, Sk = _check_bwd_call(who, dout, q, k, v, out, lse, cu_q, cu_k, max_sq,
                                                                    max_sk, scale, softcap, deterministic)
    cfg = V.config_arg(who, config, AttnBwdConfig)
    H, D, Hkv = q.shape[-2], q.shape[-1], k.shape[-2]
    if varlen:
        B, total_q, total_k = cu_q.shape[0] - 1, q.shape[0], k.shape[0]
    else:
        B = q.shape[0]
        total_q, total_k = B * Sq, B * Sk
    p = _BwdPlan()
    p.who, p.version, p.cfg = who, None, cfg
    p.q_shape, p.k_shape, p.v_shape = tuple(q.shape), tuple(k.shape), tuple(v.shape)
    p.eager = eager_ok(q.device)
    # No scores: every gradient is zero.
    p.kind = _EMPTY if B == 0 or Sq <= 0 or Sk <= 0 or H == 0 or total_q == 0 or total_k == 0 else _LAUNCH
    if p.kind == _EMPTY or not p.eager:
        return p
    num_sms = require_hopper(q, who)
    cfg = _pick_config(cfg, _DTYPES[q.dtype], D, mask, deterministic, softcap > 0, varlen, Sq, gpu_name(q.device),
                       who)
    if config is None:
        p.version = _table.version
    p.cfg = cfg
    p.kernel, p.pre_launch, p.launch, p.post_launch = _launcher(cfg)
    bm = cfg.block_m
    # Row statistics and dQ chunks: padded per sequence (bwd_args.h).
    if varlen:
        pad = (total_q + B * bm + bm - 1) // bm * bm
        stat_shape = (H, pad)
    else:
        pad = (Sq + bm - 1) // bm * bm
        stat_shape = (B, H, pad)
    stat = math.prod(stat_shape)
    # dsum | lse_log2 | dq_accum in one allocation (three cost ~2 us each of host time);
    # dq_accum is zeroed by the preprocess kernel (a separate memset cost ~30 us at the bench shapes).
    p.lse2_off = _round_up(stat, _ALIGN_FLOATS)
    p.acc_off = p.lse2_off + _round_up(stat, _ALIGN_FLOATS)
    p.ws_floats = p.acc_off + math.prod(stat_shape[:-1]) * (pad // bm) * bm * D
    p.sem_len = math.prod(stat_shape[:-1]) * (pad // bm) if deterministic else 0

    pa = _PreArgs()
    set_strides(pa, "o", out)
    set_strides(pa, "do", dout)
    pa.batch, pa.heads, pa.seqlen_q, pa.seqlen_q_pad, pa.total_q, pa.head_dim = B, H, Sq, pad, total_q, D
    a = _BwdArgs()
    for prefix, t in (("q", q), ("k", k), ("v", v), ("do", dout)):
        set_strides(a, prefix, t)
    for prefix, shape in (("dq", p.q_shape), ("dk", p.k_shape), ("dv", p.v_shape)):
        set_strides(a, prefix, contiguous_strides(shape))
    a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.seqlen_q_pad = B, H, Hkv, Sq, Sk, pad
    a.total_q, a.total_k = total_q, total_k
    a.window_left, a.window_right = left, right
    a.block_n, a.tile_group = cfg.block_n, _tile_group(B * Hkv, -(-Sk // cfg.block_n), num_sms)
    a.softmax_scale = scale
    a.softcap = softcap
    p.pre, p.args = pa, a
    p.dev_index = device_index(q.device)
    p.nvtx = nvtx_requested()
    return p


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _launch_bwd(p: _BwdPlan, dout, q, k, v, out, lse, cu_q, cu_k):
    """(dq, dk, dv) of one call of plan `p`: the per-call work only."""
    if p.kind == _EMPTY:
        return tuple(torch.zeros_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))
    if not p.eager:
        require_hopper(q, p.who)  # raises: this device cannot run the kernels
    lse = lse.contiguous()
    pq, pk, pv, pdo, po = q.data_ptr(), k.data_ptr(), v.data_ptr(), dout.data_ptr(), out.data_ptr()
    if (pq | pk | pv | pdo | po) & 15:
        _misaligned(p.who, (("q", q), ("k", k), ("v", v), ("dout", dout), ("out", out)))
    # Fully written below: dq by the postprocess kernel, dk/dv for every key by the main kernel.
    dq, dk, dv = q.new_empty(p.q_shape), k.new_empty(p.k_shape), v.new_empty(p.v_shape)
    ws = q.new_empty(p.ws_floats, dtype=torch.float32)
    dsum = ws.data_ptr()
    lse2, acc = dsum + 4 * p.lse2_off, dsum + 4 * p.acc_off
    pa = _PreArgs.from_buffer_copy(p.pre)  # copies: ctypes drops the GIL during the launch calls
    pa.o, pa.dout, pa.lse, pa.dsum, pa.lse_log2, pa.dq_accum = po, pdo, lse.data_ptr(), dsum, lse2, acc
    a = _BwdArgs.from_buffer_copy(p.args)
    a.q, a.k, a.v, a.dout, a.lse_log2, a.dsum, a.dq_accum = pq, pk, pv, pdo, lse2, dsum, acc
    a.dq, a.dk, a.dv = dq.data_ptr(), dk.data_ptr(), dv.data_ptr()
    if p.sem_len:
        sem = q.new_zeros(p.sem_len, dtype=torch.int32)
        a.dq_semaphore = sem.data_ptr()
    if cu_q is not None:
        pa.cu_seqlens_q = a.cu_seqlens_q = cu_q.data_ptr()
        a.cu_seqlens_k = cu_k.data_ptr()
    stream = raw_stream(p.dev_index)
    if p.nvtx or profiling():
        with kernel_range(p.cfg.name):
            _run_bwd_kernels(p, pa, a, stream)
    else:
        _run_bwd_kernels(p, pa, a, stream)
    return dq, dk, dv


def _run_bwd_kernels(p, pa, a, stream) -> None:
    rc = p.pre_launch(pa, stream)
    if rc:
        check_rc(rc, p.kernel, "attention backward preprocess")
    rc = p.launch(a, stream)
    if rc:
        check_rc(rc, p.kernel, "attention backward")
    rc = p.post_launch(a, stream)
    if rc:
        check_rc(rc, p.kernel, "attention backward dQ postprocess")


_api_plans: dict = {}
_op_plans: dict = {}


def attn_bwd(dout, q, k, v, out, lse, causal=False, softmax_scale=None, window_size=(-1, -1), deterministic=False,
             *, softcap=0.0, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
             config=None):
    """Gradients of flash_attn_func(q, k, v, causal, softmax_scale, window_size, softcap) w.r.t. q, k, v.

    dout/out/q (B, Sq, H, D), k/v (B, Sk, Hkv, D), lse (B, H, Sq) float32 as
    returned by flash_attn_func(..., return_lse=True); or, with cu_seqlens_q/k
    and max_seqlen_q/k, the packed tensors of flash_attn_varlen_func: q
    (total_q, H, D), k/v (total_k, Hkv, D), lse (H, total_q). Returns dq, dk,
    dv in the input dtype, contiguous, shaped like q, k, v.
    `deterministic=True` makes the gradients bitwise reproducible (key blocks
    add into dQ in a fixed order, waiting for each other). `softcap` > 0
    must equal the forward's. `config` (an AttnBwdConfig or its name)
    overrides the tuned/default choice.
    """
    who = "attn_bwd"
    if type(window_size) is list:
        window_size = tuple(window_size)
    try:
        key = (_sig(dout), _sig(q), _sig(k), _sig(v), _sig(out), _sig(lse),
               None if cu_seqlens_q is None else _sig(cu_seqlens_q),
               None if cu_seqlens_k is None else _sig(cu_seqlens_k),
               max_seqlen_q, max_seqlen_k, causal, softmax_scale, window_size, deterministic, softcap, config)
        plan = _api_plans.get(key)
    except (AttributeError, TypeError):
        key = plan = None
    if plan is None or plan.stale():
        varlen = (cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
        if any(x is not None for x in varlen) and any(x is None for x in varlen):
            raise ValueError(f"{who}: varlen needs all of cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k")
        V.tensor(who, "q", q)
        V.rank(who, "q", q, 3 if cu_seqlens_q is not None else 4)
        if softmax_scale is None:
            softmax_scale = 1.0 / math.sqrt(q.shape[-1])
        mask, left, right = _mask_kind(V.flag(who, "causal", causal), V.window(who, window_size))
        plan = _build_bwd_plan(who, dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                               softmax_scale, mask, left, right, softcap, deterministic, config)
        if key is not None:
            _remember(_api_plans, key, plan)
    return _launch_bwd(plan, dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k)


def bwd_impl(dout, q, k, v, out, lse, scale: float, mask: str, left: int, right: int, deterministic: bool = False,
             config=None, softcap: float = 0.0, cu_q=None, cu_k=None, max_sq: int = 0, max_sk: int = 0):
    """attn_bwd with the forward op's mask encoding (kind, left, right; 2^30 = unbounded)."""
    key = (_sig(dout), _sig(q), _sig(k), _sig(v), _sig(out), _sig(lse), None if cu_q is None else _sig(cu_q),
           None if cu_k is None else _sig(cu_k), max_sq, max_sk, scale, mask, left, right, deterministic, softcap,
           config)
    plan = _op_plans.get(key)
    if plan is None or plan.stale():
        who = "cudadent42::attn_bwd"
        if mask not in MASKS:
            raise ValueError(f"{who}: mask must be one of {MASKS}, got {mask!r}")
        plan = _build_bwd_plan(who, dout, q, k, v, out, lse, cu_q, cu_k, max_sq, max_sk, scale, mask, left, right,
                               softcap, deterministic, config)
        _remember(_op_plans, key, plan)
    return _launch_bwd(plan, dout, q, k, v, out, lse, cu_q, cu_k)


def eager_backward(fwd_plan, dout, q, k, v, out, lse, cu_q, cu_k):
    """Backward of an eager forward call (ops/attention.py _AttnFunction): q, k, v, out, lse are the
    forward's, so only dout's strides can change the plan."""
    dout = dout.contiguous()
    st = dout.stride()
    plan = fwd_plan.bwd.get(st)
    if plan is None or plan.stale():
        max_sq, max_sk, scale, left, right, softcap, mask, _, deterministic = fwd_plan.op_args
        plan = _build_bwd_plan("attention backward", dout, q, k, v, out, lse, cu_q, cu_k, max_sq, max_sk, scale,
                               mask, left, right, softcap, deterministic, None)
        fwd_plan.bwd[st] = plan
    return _launch_bwd(plan, dout, q, k, v, out, lse, cu_q, cu_k)


def _tile_group(pairs: int, n_blocks: int, num_sms: int) -> int:
    """(head, batch) pairs per group of the CTA order (bwd_scheduler.hpp):
    about one wave. The CTAs in flight are then those of the old
    pair-by-pair order (the same Q, dO and dQ accumulator chunks in L2), but
    each group starts its long causal key blocks first. Groups sized by an
    L2 budget for Q and dO alone (12 pairs at S=4096, D=128) ran 5-10%
    slower than this on H100: the fp32 dQ chunks were left out of the budget."""
    return max(1, min(pairs, round(num_sms / max(n_blocks, 1))))


def _pick_config(cfg, dtype: str, head_dim: int, mask: str, deterministic: bool, softcap: bool, varlen: bool,
                 seqlen: int, gpu: str, who: str = "attention backward") -> AttnBwdConfig:
    """The explicit config (checked against the call), else the tuned/default one."""
    if cfg is not None:
        want = (dtype, head_dim, mask, deterministic, softcap, varlen)
        if (cfg.dtype, cfg.head_dim, cfg.mask, cfg.deterministic, cfg.softcap, cfg.varlen) != want:
            raise ValueError(f"{who}: config {cfg.name} does not match the call (dtype={dtype}, "
                             f"head_dim={head_dim}, mask={mask}, deterministic={deterministic}, softcap={softcap}, "
                             f"varlen={varlen})")
        return cfg
    return default_config(dtype, head_dim, mask, deterministic, softcap, varlen, seqlen, gpu)


def default_config(dtype: str, head_dim: int, mask: str, deterministic: bool, softcap: bool, varlen: bool,
                   seqlen: int, gpu: str) -> AttnBwdConfig:
    """What a call without `config=` runs on GPU model `gpu` (tuned table, then heuristic); also what
    scripts/build_default_matrix.py builds for every combination the API accepts."""
    if softcap:  # no tuned entries for softcap (and the tuned block_m may not apply)
        return attn_bwd_config(dtype, head_dim, mask, deterministic, softcap=True, varlen=varlen)
    cfg = select("attn-bwd", gpu, dtype=dtype, head_dim=head_dim, mask=mask, deterministic=deterministic,
                 seqlen=seqlen)
    # Varlen runs the dense problem's tiles (tuned on dense inputs).
    return dataclasses.replace(cfg, varlen=True) if varlen else cfg


# ---------------------------------------------------------------- autograd
# The backward op is a custom op of its own (fake impl below), so
# torch.compile traces the forward+backward graph without breaks.


@torch.library.custom_op("cudadent42::attn_bwd", mutates_args=())
def _attn_bwd_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                 lse: torch.Tensor, cu_seqlens_q: torch.Tensor | None, cu_seqlens_k: torch.Tensor | None,
                 max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float, window_left: int, window_right: int,
                 softcap: float, mask: str, deterministic: bool = False
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return bwd_impl(dout, q, k, v, out, lse, softmax_scale, mask, window_left, window_right, deterministic,
                    softcap=softcap, cu_q=cu_seqlens_q, cu_k=cu_seqlens_k, max_sq=max_seqlen_q, max_sk=max_seqlen_k)


@_attn_bwd_op.register_fake
def _(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, window_left,
      window_right, softcap, mask, deterministic=False):
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            torch.empty_like(k, memory_format=torch.contiguous_format),
            torch.empty_like(v, memory_format=torch.contiguous_format))


def setup_context(ctx, inputs, output):
    q, k, v, cu_q, cu_k, max_sq, max_sk, scale, left, right, softcap, mask, config = inputs[:13]
    deterministic = bool(inputs[13]) if len(inputs) > 13 else False  # defaulted argument may be absent
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)  # (cu_seqlens only for varlen)
    ctx.max_sq, ctx.max_sk, ctx.softcap, ctx.scale, ctx.left, ctx.right, ctx.mask = (max_sq, max_sk, softcap, scale,
                                                                                     left, right, mask)
    ctx.deterministic, ctx.n_inputs = deterministic, len(inputs)


def backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
    if q.shape[-1] not in BWD_HEAD_DIMS:
        raise NotImplementedError(f"cudadent42 attention backward supports head dims {BWD_HEAD_DIMS}; got "
                                  f"head_dim={q.shape[-1]}")
    dq, dk, dv = _attn_bwd_op(grad_out.contiguous(), q, k, v, out, lse, cu_q, cu_k, ctx.max_sq, ctx.max_sk,
                              ctx.scale, ctx.left, ctx.right, ctx.softcap, ctx.mask, ctx.deterministic)
    return (dq, dk, dv) + (None,) * (ctx.n_inputs - 3)


# The forward op's autograd and eager backward are registered here, not in
# ops/attention.py, so that the forward module does not import this one.
_attn_fwd_op.register_autograd(backward, setup_context=setup_context)
set_eager_backward(eager_backward)


def tuning_run(cfg: AttnBwdConfig, case: dict):
    """run(config, case) of the attn-bwd family (families/attn_bwd.py): what sweeps time."""
    return attn_bwd(case["dout"], case["q"], case["k"], case["v"], case["out"], case["lse"], causal=case["causal"],
                    deterministic=case["deterministic"], config=cfg)
