"""Attention backward (v1 kernel: csrc/kernels/attention/bwd_*).

`attn_bwd` computes dq, dk, dv from the forward's inputs, output and LSE.
It is the autograd backward of the forward op (flash_attn_func,
flash_attn_varlen_func, scaled_dot_product_attention), checked against fp32
autograd on an H100 by tests/test_attention_bwd_gpu.py. Scope: dense (non-varlen) inputs, head dims 64/96/128, masks none /
causal / sliding window, no softcap; GQA/MQA reduce dK/dV inside the kernel.
"""
from __future__ import annotations

import ctypes
import math

import torch

from ..configs.attention_bwd import BWD_HEAD_DIMS, AttnBwdConfig
from ..runtime import check_rc, kernel_range, require_hopper, stream_handle
from .attention import _DTYPES, _check_tensor, _mask_kind, check_fwd_inputs


class _BwdArgs(ctypes.Structure):
    """Mirror of cd42_attn_bwd_args (csrc/kernels/attention/bwd_args.h)."""
    _fields_ = (
        [(n, ctypes.c_void_p) for n in ("q", "k", "v", "dout", "lse_log2", "dsum", "dq_accum", "dq_semaphore", "dq",
                                         "dk", "dv")]
        + [(f"{t}_{s}_stride", ctypes.c_int64) for t in ("q", "k", "v", "do", "dq", "dk", "dv")
           for s in ("batch", "row", "head")]
        + [(n, ctypes.c_int32) for n in ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "seqlen_q_pad",
                                         "window_left", "window_right")]
        + [("softmax_scale", ctypes.c_float), ("softcap", ctypes.c_float)]
    )


class _PreArgs(ctypes.Structure):
    """Mirror of cd42_attn_bwd_pre_args."""
    _fields_ = (
        [(n, ctypes.c_void_p) for n in ("o", "dout", "lse", "dsum", "lse_log2")]
        + [(f"{t}_{s}_stride", ctypes.c_int64) for t in ("o", "do") for s in ("batch", "row", "head")]
        + [(n, ctypes.c_int32) for n in ("batch", "heads", "seqlen_q", "seqlen_q_pad", "head_dim")]
    )


_launchers: dict = {}


def _launcher(cfg: AttnBwdConfig):
    hit = _launchers.get(cfg)
    if hit is None:
        from ..jit import load

        kernel = load(cfg)
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


def _strides(args, prefix: str, t: torch.Tensor) -> None:
    setattr(args, f"{prefix}_batch_stride", t.stride(0))
    setattr(args, f"{prefix}_row_stride", t.stride(1))
    setattr(args, f"{prefix}_head_stride", t.stride(2))


def attn_bwd(dout, q, k, v, out, lse, causal=False, softmax_scale=None, window_size=(-1, -1), deterministic=False,
             *, softcap=0.0, config=None):
    """Gradients of flash_attn_func(q, k, v, causal, softmax_scale, window_size, softcap) w.r.t. q, k, v.

    dout/out/q (B, Sq, H, D), k/v (B, Sk, Hkv, D), lse (B, H, Sq) float32 as
    returned by flash_attn_func(..., return_lse=True). Returns dq, dk, dv in
    the input dtype, contiguous, shaped like q, k, v. `deterministic=True`
    makes the gradients bitwise reproducible (key blocks add into dQ in a
    fixed order, waiting for each other). `softcap` > 0 must equal the
    forward's (its kernel has not been validated on a GPU yet: autograd does
    not use it). `config` (an AttnBwdConfig or its name) overrides the
    tuned/default choice.
    """
    mask, left, right = _mask_kind(causal, tuple(window_size))
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return bwd_impl(dout, q, k, v, out, lse, scale, mask, left, right, deterministic, config, softcap)


def bwd_impl(dout, q, k, v, out, lse, scale: float, mask: str, left: int, right: int, deterministic: bool = False,
             config=None, softcap: float = 0.0):
    """attn_bwd with the forward op's mask encoding (kind, left, right; 2^30 = unbounded)."""
    check_fwd_inputs(q, k, v, varlen=False, head_dim_ok=BWD_HEAD_DIMS)
    if not softcap >= 0:
        raise ValueError(f"attention backward: softcap must be >= 0, got {softcap}")
    _check_tensor("out", out, 4, q)
    _check_tensor("dout", dout, 4, q)
    if out.shape != q.shape or dout.shape != q.shape:
        raise ValueError(f"attention backward: out {tuple(out.shape)} and dout {tuple(dout.shape)} must match q "
                         f"{tuple(q.shape)}")
    B, Sq, H, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    if not isinstance(lse, torch.Tensor) or lse.dtype != torch.float32 or tuple(lse.shape) != (B, H, Sq) \
            or lse.device != q.device:
        raise ValueError(f"attention backward: lse must be float32 of shape {(B, H, Sq)} on {q.device}")
    lse = lse.contiguous()
    if B == 0 or Sq == 0 or Sk == 0 or H == 0:  # no scores: every gradient is zero
        return tuple(torch.zeros_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))
    # Fully written below: dq by the postprocess kernel, dk/dv for every key by the main kernel.
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    require_hopper(q, "attention backward")
    for name, t in (("q", q), ("k", k), ("v", v), ("dout", dout), ("out", out)):
        if t.data_ptr() % 16:
            raise ValueError(f"attention backward: {name} needs a 16-byte aligned data pointer")
    dtype = _DTYPES[q.dtype]
    if config:
        cfg = config if isinstance(config, AttnBwdConfig) else AttnBwdConfig.from_name(config)
        if (cfg.dtype, cfg.head_dim, cfg.mask, cfg.deterministic, cfg.softcap) != (dtype, D, mask, deterministic,
                                                                                   softcap > 0):
            raise ValueError(f"attention backward: config {cfg.name} does not match the call (dtype={dtype}, "
                             f"head_dim={D}, mask={mask}, deterministic={deterministic}, softcap={softcap})")
    elif softcap > 0:  # no tuned entries for softcap yet
        from ..configs.heuristics_sm90 import attn_bwd_config

        cfg = attn_bwd_config(dtype, D, mask, bool(deterministic), softcap=True)
    else:
        from ..configs.select import select
        from ..runtime import gpu_name

        cfg = select("attn-bwd", gpu_name(q.device), dtype=dtype, head_dim=D, mask=mask,
                     deterministic=bool(deterministic), seqlen=Sq)
    kernel, pre_launch, launch, post_launch = _launcher(cfg)
    bm = cfg.block_m
    pad = (Sq + bm - 1) // bm * bm
    dsum = torch.empty(B, H, pad, dtype=torch.float32, device=q.device)
    lse_log2 = torch.empty(B, H, pad, dtype=torch.float32, device=q.device)
    dq_accum = torch.zeros(B, H, pad // bm, bm * D, dtype=torch.float32, device=q.device)  # see bwd_args.h
    sem = torch.zeros(B, H, pad // bm, dtype=torch.int32, device=q.device) if deterministic else None
    stream = stream_handle(q.device)

    pa = _PreArgs()
    pa.o, pa.dout, pa.lse, pa.dsum, pa.lse_log2 = (out.data_ptr(), dout.data_ptr(), lse.data_ptr(),
                                                   dsum.data_ptr(), lse_log2.data_ptr())
    _strides(pa, "o", out)
    _strides(pa, "do", dout)
    pa.batch, pa.heads, pa.seqlen_q, pa.seqlen_q_pad, pa.head_dim = B, H, Sq, pad, D

    a = _BwdArgs()
    a.q, a.k, a.v, a.dout = q.data_ptr(), k.data_ptr(), v.data_ptr(), dout.data_ptr()
    a.lse_log2, a.dsum, a.dq_accum, a.dq, a.dk, a.dv = (lse_log2.data_ptr(), dsum.data_ptr(), dq_accum.data_ptr(),
                                                        dq.data_ptr(), dk.data_ptr(), dv.data_ptr())
    a.dq_semaphore = sem.data_ptr() if sem is not None else None
    for prefix, t in (("q", q), ("k", k), ("v", v), ("do", dout), ("dq", dq), ("dk", dk), ("dv", dv)):
        _strides(a, prefix, t)
    a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.seqlen_q_pad = B, H, Hkv, Sq, Sk, pad
    a.window_left, a.window_right = left, right
    a.softmax_scale = scale
    a.softcap = softcap
    with kernel_range(cfg.name):
        check_rc(pre_launch(ctypes.byref(pa), stream), kernel, "attention backward preprocess")
        check_rc(launch(ctypes.byref(a), stream), kernel, "attention backward")
        check_rc(post_launch(ctypes.byref(a), stream), kernel, "attention backward dQ postprocess")
    return dq, dk, dv


# ---------------------------------------------------------------- autograd
# The backward op is a custom op of its own (fake impl below), so
# torch.compile traces the forward+backward graph without breaks.


@torch.library.custom_op("cudadent42::attn_bwd", mutates_args=())
def _attn_bwd_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                 lse: torch.Tensor, softmax_scale: float, window_left: int, window_right: int, mask: str,
                 deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return bwd_impl(dout, q, k, v, out, lse, softmax_scale, mask, window_left, window_right, deterministic)


@_attn_bwd_op.register_fake
def _(dout, q, k, v, out, lse, softmax_scale, window_left, window_right, mask, deterministic=False):
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            torch.empty_like(k, memory_format=torch.contiguous_format),
            torch.empty_like(v, memory_format=torch.contiguous_format))


def setup_context(ctx, inputs, output):
    q, k, v, cu_q, cu_k, max_sq, max_sk, scale, left, right, softcap, mask, config = inputs[:13]
    deterministic = bool(inputs[13]) if len(inputs) > 13 else False  # defaulted argument may be absent
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.varlen, ctx.softcap, ctx.scale, ctx.left, ctx.right, ctx.mask = (cu_q is not None, softcap, scale, left,
                                                                        right, mask)
    ctx.deterministic, ctx.n_inputs = deterministic, len(inputs)


def backward(ctx, grad_out, grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    # Softcap has a backward kernel (attn_bwd(..., softcap=)) that builds clean
    # but has not run on a GPU yet: autograd refuses it until its tests pass.
    if ctx.varlen or ctx.softcap > 0 or q.shape[-1] not in BWD_HEAD_DIMS:
        raise NotImplementedError(
            f"cudadent42 attention backward supports dense inputs without softcap and head dims "
            f"{BWD_HEAD_DIMS}; got varlen={ctx.varlen}, softcap={ctx.softcap}, head_dim={q.shape[-1]}")
    dq, dk, dv = _attn_bwd_op(grad_out.contiguous(), q, k, v, out, lse, ctx.scale, ctx.left, ctx.right, ctx.mask,
                              ctx.deterministic)
    return (dq, dk, dv) + (None,) * (ctx.n_inputs - 3)
