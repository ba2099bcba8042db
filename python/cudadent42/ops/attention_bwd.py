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

from ..configs.attention_bwd import BWD_HEAD_DIMS, AttnBwdConfig
from ..configs.heuristics_sm90 import attn_bwd_config
from ..configs.select import select
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper, stream_handle
from .attention import (_DTYPES, _attn_fwd_op, _check_tensor, _mask_kind, check_cu_seqlens, check_fwd_inputs,
                        set_strides)


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
    mask, left, right = _mask_kind(causal, tuple(window_size))
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    varlen = (cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k)
    if any(x is not None for x in varlen) and any(x is None for x in varlen):
        raise ValueError("attention backward: varlen needs all of cu_seqlens_q, cu_seqlens_k, max_seqlen_q, "
                         "max_seqlen_k")
    return bwd_impl(dout, q, k, v, out, lse, scale, mask, left, right, deterministic, config, softcap,
                    cu_seqlens_q, cu_seqlens_k, max_seqlen_q or 0, max_seqlen_k or 0)


def bwd_impl(dout, q, k, v, out, lse, scale: float, mask: str, left: int, right: int, deterministic: bool = False,
             config=None, softcap: float = 0.0, cu_q=None, cu_k=None, max_sq: int = 0, max_sk: int = 0):
    """attn_bwd with the forward op's mask encoding (kind, left, right; 2^30 = unbounded)."""
    varlen = cu_q is not None
    rank = 3 if varlen else 4
    check_fwd_inputs(q, k, v, varlen=varlen, head_dim_ok=BWD_HEAD_DIMS)
    if not softcap >= 0:
        raise ValueError(f"attention backward: softcap must be >= 0, got {softcap}")
    _check_tensor("out", out, rank, q)
    _check_tensor("dout", dout, rank, q)
    if out.shape != q.shape or dout.shape != q.shape:
        raise ValueError(f"attention backward: out {tuple(out.shape)} and dout {tuple(dout.shape)} must match q "
                         f"{tuple(q.shape)}")
    H, D, Hkv = q.shape[-2], q.shape[-1], k.shape[-2]
    if varlen:
        check_cu_seqlens(q, cu_q, cu_k, "attention backward")
        B, Sq, Sk = cu_q.shape[0] - 1, int(max_sq), int(max_sk)
        total_q, total_k = q.shape[0], k.shape[0]
        lse_shape = (H, total_q)
    else:
        B, Sq, Sk = q.shape[0], q.shape[1], k.shape[1]
        total_q, total_k = B * Sq, B * Sk
        lse_shape = (B, H, Sq)
    if not isinstance(lse, torch.Tensor) or lse.dtype != torch.float32 or tuple(lse.shape) != lse_shape \
            or lse.device != q.device:
        raise ValueError(f"attention backward: lse must be float32 of shape {lse_shape} on {q.device}")
    lse = lse.contiguous()
    if B == 0 or Sq <= 0 or Sk <= 0 or H == 0 or total_q == 0 or total_k == 0:  # no scores: every gradient is zero
        return tuple(torch.zeros_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))
    # Fully written below: dq by the postprocess kernel, dk/dv for every key by the main kernel.
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    num_sms = require_hopper(q, "attention backward")
    for name, t in (("q", q), ("k", k), ("v", v), ("dout", dout), ("out", out)):
        if t.data_ptr() % 16:
            raise ValueError(f"attention backward: {name} needs a 16-byte aligned data pointer")
    cfg = _pick_config(config, _DTYPES[q.dtype], D, mask, bool(deterministic), softcap > 0, varlen, Sq, q.device)
    kernel, pre_launch, launch, post_launch = _launcher(cfg)
    bm = cfg.block_m
    # Row statistics and dQ chunks: padded per sequence (bwd_args.h).
    if varlen:
        pad = (total_q + B * bm + bm - 1) // bm * bm
        stat_shape = (H, pad)
    else:
        pad = (Sq + bm - 1) // bm * bm
        stat_shape = (B, H, pad)
    dsum = torch.empty(stat_shape, dtype=torch.float32, device=q.device)
    lse_log2 = torch.empty(stat_shape, dtype=torch.float32, device=q.device)
    # Zeroed by the preprocess kernel (a separate memset cost ~30 us at the bench shapes).
    dq_accum = torch.empty(stat_shape[:-1] + (pad // bm, bm * D), dtype=torch.float32, device=q.device)
    sem = torch.zeros(stat_shape[:-1] + (pad // bm,), dtype=torch.int32, device=q.device) if deterministic else None
    stream = stream_handle(q.device)

    pa = _PreArgs()
    pa.o, pa.dout, pa.lse, pa.dsum, pa.lse_log2 = (out.data_ptr(), dout.data_ptr(), lse.data_ptr(),
                                                   dsum.data_ptr(), lse_log2.data_ptr())
    pa.dq_accum = dq_accum.data_ptr()
    pa.cu_seqlens_q = cu_q.data_ptr() if varlen else None
    set_strides(pa, "o", out)
    set_strides(pa, "do", dout)
    pa.batch, pa.heads, pa.seqlen_q, pa.seqlen_q_pad, pa.total_q, pa.head_dim = B, H, Sq, pad, total_q, D

    a = _BwdArgs()
    a.q, a.k, a.v, a.dout = q.data_ptr(), k.data_ptr(), v.data_ptr(), dout.data_ptr()
    a.lse_log2, a.dsum, a.dq_accum, a.dq, a.dk, a.dv = (lse_log2.data_ptr(), dsum.data_ptr(), dq_accum.data_ptr(),
                                                        dq.data_ptr(), dk.data_ptr(), dv.data_ptr())
    a.dq_semaphore = sem.data_ptr() if sem is not None else None
    if varlen:
        a.cu_seqlens_q, a.cu_seqlens_k = cu_q.data_ptr(), cu_k.data_ptr()
    for prefix, t in (("q", q), ("k", k), ("v", v), ("do", dout), ("dq", dq), ("dk", dk), ("dv", dv)):
        set_strides(a, prefix, t)
    a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.seqlen_q_pad = B, H, Hkv, Sq, Sk, pad
    a.total_q, a.total_k = total_q, total_k
    a.window_left, a.window_right = left, right
    a.block_n, a.tile_group = cfg.block_n, _tile_group(B * Hkv, -(-Sk // cfg.block_n), num_sms)
    a.softmax_scale = scale
    a.softcap = softcap
    with kernel_range(cfg.name):
        check_rc(pre_launch(ctypes.byref(pa), stream), kernel, "attention backward preprocess")
        check_rc(launch(ctypes.byref(a), stream), kernel, "attention backward")
        check_rc(post_launch(ctypes.byref(a), stream), kernel, "attention backward dQ postprocess")
    return dq, dk, dv


def _tile_group(pairs: int, n_blocks: int, num_sms: int) -> int:
    """(head, batch) pairs per group of the CTA order (bwd_common.hpp bwd_tile):
    about one wave. The CTAs in flight are then those of the old
    pair-by-pair order (the same Q, dO and dQ accumulator chunks in L2), but
    each group starts its long causal key blocks first. Groups sized by an
    L2 budget for Q and dO alone (12 pairs at S=4096, D=128) ran 5-10%
    slower than this on H100: the fp32 dQ chunks were left out of the budget."""
    return max(1, min(pairs, round(num_sms / max(n_blocks, 1))))


def _pick_config(config, dtype: str, head_dim: int, mask: str, deterministic: bool, softcap: bool, varlen: bool,
                 seqlen: int, device) -> AttnBwdConfig:
    """The explicit config (checked against the call), else the tuned/default one."""
    if config:
        cfg = config if isinstance(config, AttnBwdConfig) else AttnBwdConfig.from_name(config)
        want = (dtype, head_dim, mask, deterministic, softcap, varlen)
        if (cfg.dtype, cfg.head_dim, cfg.mask, cfg.deterministic, cfg.softcap, cfg.varlen) != want:
            raise ValueError(f"attention backward: config {cfg.name} does not match the call (dtype={dtype}, "
                             f"head_dim={head_dim}, mask={mask}, deterministic={deterministic}, softcap={softcap}, "
                             f"varlen={varlen})")
        return cfg
    if softcap:  # no tuned entries for softcap (and the tuned block_m may not apply)
        return attn_bwd_config(dtype, head_dim, mask, deterministic, softcap=True, varlen=varlen)
    cfg = select("attn-bwd", gpu_name(device), dtype=dtype, head_dim=head_dim, mask=mask,
                 deterministic=deterministic, seqlen=seqlen)
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


# The forward op's autograd is registered here, not in ops/attention.py, so
# that the forward module does not import this one (which imports it).
_attn_fwd_op.register_autograd(backward, setup_context=setup_context)


def tuning_run(cfg: AttnBwdConfig, case: dict):
    """run(config, case) of the attn-bwd family (families/attn_bwd.py): what sweeps time."""
    return attn_bwd(case["dout"], case["q"], case["k"], case["v"], case["out"], case["lse"], causal=case["causal"],
                    deterministic=case["deterministic"], config=cfg)
