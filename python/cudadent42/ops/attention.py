"""Attention forward ops: FlashAttention-style and SDPA-style entry points.

Layouts: q (batch, seqlen_q, heads, dim), k/v (batch, seqlen_k, heads_kv, dim)
with the last dim contiguous and every other stride a multiple of 8 elements
(TMA needs 16-byte aligned strides); varlen: (total_tokens, heads, dim) with
int32 cu_seqlens of length batch+1. GQA/MQA: heads % heads_kv == 0, K/V are
never copied. Masks are bottom-right aligned (FlashAttention 2/3) except in
`scaled_dot_product_attention`, which follows PyTorch (top-left).
"""
from __future__ import annotations

import ctypes
import math

import torch

from ..configs.attention import HEAD_DIMS, AttnFwdConfig
from ..configs.select import select
from ..tune import autotune as _autotune
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper, stream_handle

UNBOUNDED = 1 << 30  # window side with no limit (see csrc/kernels/attention/block_info.hpp)
_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}


class _FwdArgs(ctypes.Structure):
    """Mirror of cd42_attn_fwd_args (csrc/kernels/attention/fwd_args.h)."""
    _fields_ = (
        [(n, ctypes.c_void_p) for n in ("q", "k", "v", "o", "lse", "tile_counter", "split_ws", "cu_seqlens_q",
                                          "cu_seqlens_k")]
        + [(f"{t}_{s}_stride", ctypes.c_int64) for t in "qkvo" for s in ("batch", "row", "head")]
        + [(n, ctypes.c_int32) for n in ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "total_q",
                                         "total_k", "window_left", "window_right")]
        + [("softmax_scale", ctypes.c_float), ("softcap", ctypes.c_float), ("num_sms", ctypes.c_int32)]
    )


_launchers: dict[AttnFwdConfig, tuple] = {}
# (tile counters, split-tail workspace floats) of the last forward launch in
# this process: which work layout ran (split_tail.hpp), for tests and tuning.
last_split_sizes: tuple[int, int] = (0, 0)


def _launcher(cfg: AttnFwdConfig):
    hit = _launchers.get(cfg)
    if hit is None:
        from ..jit import check_abi, load

        kernel = load(cfg)
        check_abi(kernel, cd42_attn_fwd_args=_FwdArgs)  # field by field, once per config
        size = kernel.fn("cd42_attn_fwd_args_size", ctypes.c_int, [])()
        if size != ctypes.sizeof(_FwdArgs):
            raise RuntimeError(f"{cfg.name}: argument block is {size} bytes in C but {ctypes.sizeof(_FwdArgs)} "
                               "in Python (fwd_args.h and ops/attention.py disagree)")
        hit = (kernel, kernel.fn("cd42_attn_fwd_launch", ctypes.c_int, [ctypes.POINTER(_FwdArgs), ctypes.c_void_p]),
               kernel.fn("cd42_attn_fwd_split_sizes", None, [ctypes.POINTER(_FwdArgs), ctypes.POINTER(ctypes.c_int64)]))
        _launchers[cfg] = hit
    return hit


def _check_tensor(name: str, t: torch.Tensor, rank: int, ref: torch.Tensor | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"attention: {name} must be a torch.Tensor")
    if t.dim() != rank:
        raise ValueError(f"attention: {name} must have {rank} dims, got shape {tuple(t.shape)}")
    if t.dtype not in _DTYPES:
        raise TypeError(f"attention: {name} must be bfloat16 or float16, got {t.dtype}")
    if ref is not None and t.dtype != ref.dtype:
        raise TypeError(f"attention: q, k, v must share a dtype, got {ref.dtype} and {t.dtype} ({name})")
    if ref is not None and t.device != ref.device:
        raise ValueError(f"attention: q is on {ref.device} but {name} is on {t.device}")
    if t.numel() and t.stride(-1) != 1:
        raise ValueError(f"attention: {name} must have a contiguous last dim, got strides {t.stride()}")
    for d in range(rank - 1):
        if t.shape[d] > 1 and t.stride(d) % 8:
            raise ValueError(f"attention: {name} stride {t.stride(d)} of dim {d} is not a multiple of 8 elements "
                             "(TMA needs 16-byte aligned strides); call .contiguous() first")


def _mask_kind(causal: bool, window: tuple[int, int]) -> tuple[str, int, int]:
    left, right = window
    if causal:
        right = 0
    if left < 0 and right < 0:
        return "none", UNBOUNDED, UNBOUNDED
    return ("causal" if (left < 0 and right == 0) else "local",
            UNBOUNDED if left < 0 else left, UNBOUNDED if right < 0 else right)


def check_fwd_inputs(q, k, v, varlen: bool, head_dim_ok=HEAD_DIMS):
    rank = 3 if varlen else 4
    _check_tensor("q", q, rank)
    _check_tensor("k", k, rank, q)
    _check_tensor("v", v, rank, q)
    if k.shape != v.shape:
        raise ValueError(f"attention: k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    if not varlen and (q.shape[0] != k.shape[0]):
        raise ValueError(f"attention: batch sizes differ: q {q.shape[0]}, k {k.shape[0]}")
    d = q.shape[-1]
    if k.shape[-1] != d:
        raise ValueError(f"attention: q head dim {d} != k head dim {k.shape[-1]}")
    if d not in head_dim_ok:
        raise ValueError(f"attention: head dim {d} is not supported (supported: {', '.join(map(str, head_dim_ok))})")
    hq, hk = q.shape[-2], k.shape[-2]
    if hk == 0 or hq % hk:
        raise ValueError(f"attention: query heads ({hq}) must be a multiple of key/value heads ({hk})")


def check_cu_seqlens(q, cu_q, cu_k, who: str = "attention") -> None:
    """Varlen offsets: contiguous 1-D int32 on q's device, batch + 1 >= 1 entries each, equal lengths."""
    for name, c in (("cu_seqlens_q", cu_q), ("cu_seqlens_k", cu_k)):
        if not isinstance(c, torch.Tensor) or c.dtype != torch.int32 or c.dim() != 1 or c.device != q.device \
                or c.stride(0) != 1 or c.shape[0] < 1:
            raise ValueError(f"{who}: {name} must be a contiguous 1-D int32 tensor on {q.device}")
    if cu_q.shape != cu_k.shape:
        raise ValueError(f"{who}: cu_seqlens_q and cu_seqlens_k must have the same length (batch + 1)")


def set_strides(args, prefix: str, t: torch.Tensor) -> None:
    """The ABI's (batch, row, head) strides of `t`; packed varlen (total, heads, dim) tensors have batch stride 0."""
    strides = t.stride()[:3] if t.dim() == 4 else (0,) + t.stride()[:2]
    for name, st in zip(("batch", "row", "head"), strides):
        setattr(args, f"{prefix}_{name}_stride", st)


def _fwd_impl(q, k, v, cu_q, cu_k, max_sq, max_sk, scale, left, right, softcap, mask, config, out, lse):
    varlen = cu_q is not None
    num_sms = require_hopper(q, "attention")
    for name, t in (("q", q), ("k", k), ("v", v), ("out", out)):
        if t.data_ptr() % 16:
            raise ValueError(f"attention: {name} needs a 16-byte aligned data pointer (storage offset "
                             f"{t.storage_offset()})")
    dtype = _DTYPES[q.dtype]
    cfg = AttnFwdConfig.from_name(config) if config else select(
        "attn-fwd", gpu_name(q.device), dtype=dtype, head_dim=q.shape[-1], mask=mask, softcap=softcap > 0,
        varlen=varlen, seqlen=max_sq if varlen else q.shape[1],
        sizes=dict(batch=cu_q.shape[0] - 1 if varlen else q.shape[0], heads=q.shape[-2]), run=tuning_run)
    if (cfg.dtype, cfg.head_dim, cfg.mask, cfg.softcap, cfg.varlen) != (dtype, q.shape[-1], mask, softcap > 0, varlen):
        raise ValueError(f"attention: config {cfg.name} does not match the call (dtype={dtype}, head_dim="
                         f"{q.shape[-1]}, mask={mask}, softcap={softcap > 0}, varlen={varlen})")
    kernel, launch, split_sizes = _launcher(cfg)
    a = _FwdArgs()
    a.q, a.k, a.v, a.o, a.lse = q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), lse.data_ptr()
    if varlen:
        a.cu_seqlens_q, a.cu_seqlens_k = cu_q.data_ptr(), cu_k.data_ptr()
        a.batch = cu_q.shape[0] - 1
        a.total_q, a.total_k = q.shape[0], k.shape[0]
        a.seqlen_q, a.seqlen_k = max_sq, max_sk
    else:
        a.batch, a.seqlen_q, a.seqlen_k = q.shape[0], q.shape[1], k.shape[1]
        a.total_q, a.total_k = q.shape[0] * q.shape[1], k.shape[0] * k.shape[1]
    for t, name in ((q, "q"), (k, "k"), (v, "v"), (out, "o")):
        set_strides(a, name, t)
    a.heads_q, a.heads_kv = q.shape[-2], k.shape[-2]
    a.window_left, a.window_right = left, right
    a.softmax_scale, a.softcap = scale, softcap
    a.num_sms = num_sms
    # Counters: [0] is claimed by the persistent grid for work past its first
    # wave, [1:] count the finished pieces of each split tail tile; the
    # workspace holds those pieces' partial results (split_tail.hpp).
    sizes = (ctypes.c_int64 * 2)()
    split_sizes(ctypes.byref(a), sizes)
    global last_split_sizes
    last_split_sizes = (sizes[0], sizes[1])
    counter = torch.zeros(sizes[0], dtype=torch.int32, device=q.device)
    a.tile_counter = counter.data_ptr()
    if sizes[1]:
        workspace = torch.empty(sizes[1], dtype=torch.float32, device=q.device)
        a.split_ws = workspace.data_ptr()
    with kernel_range(cfg.name):
        rc = launch(ctypes.byref(a), stream_handle(q.device))
    check_rc(rc, kernel, "attention forward")


@torch.library.custom_op("cudadent42::attn_fwd", mutates_args=())
def _attn_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor | None,
                 cu_seqlens_k: torch.Tensor | None, max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float,
                 window_left: int, window_right: int, softcap: float, mask: str, config: str,
                 deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = _alloc_outputs(q, cu_seqlens_q)
    varlen = cu_seqlens_q is not None
    n_q = q.shape[0] if varlen else q.shape[1]
    n_k = k.shape[0] if varlen else k.shape[1]
    batch = (cu_seqlens_q.shape[0] - 1) if varlen else q.shape[0]
    if n_q == 0 or batch == 0:
        return out, lse
    if n_k == 0 or (varlen and max_seqlen_k == 0):  # no key anywhere: O = 0, LSE = +inf
        out.zero_()
        lse.fill_(float("inf"))
        return out, lse
    _fwd_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, window_left,
              window_right, softcap, mask, config, out, lse)
    return out, lse


def _alloc_outputs(q, cu_seqlens_q):
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    if cu_seqlens_q is not None:
        lse = torch.empty((q.shape[1], q.shape[0]), dtype=torch.float32, device=q.device)
    else:
        lse = torch.empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32, device=q.device)
    return out, lse


@_attn_fwd_op.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, window_left,
      window_right, softcap, mask, config, deterministic=False):
    return _alloc_outputs(q, cu_seqlens_q)


def _run(q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, config, autotune=None,
         deterministic=False):
    """mask_spec = (mask kind, left, right) with UNBOUNDED for open sides."""
    if autotune is not None and not config:
        with _autotune.requested(autotune):  # read by select() inside the op (eager calls)
            return _run(q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, config,
                        deterministic=deterministic)
    varlen = cu_q is not None
    # The kernel takes each row's max of the raw scores as the max of the
    # scaled ones, which holds for a scale >= 0 only.
    if softmax_scale is not None and not (math.isfinite(softmax_scale) and softmax_scale >= 0):
        raise ValueError(f"attention: softmax_scale must be a finite number >= 0, got {softmax_scale}")
    check_fwd_inputs(q, k, v, varlen)
    if softcap < 0:
        raise ValueError(f"attention: softcap must be >= 0, got {softcap}")
    if varlen:
        check_cu_seqlens(q, cu_q, cu_k)
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    mask, left, right = mask_spec
    name = config.name if isinstance(config, AttnFwdConfig) else (config or "")
    return _attn_fwd_op(q, k, v, cu_q, cu_k, int(max_sq), int(max_sk), float(scale), left, right,
                        float(softcap), mask, name, bool(deterministic))


def flash_attn_func(q, k, v, causal=False, softmax_scale=None, window_size=(-1, -1), softcap=0.0,
                    return_lse=False, *, deterministic=False, config=None, autotune=None):
    """FlashAttention-compatible forward: q (B, Sq, H, D), k/v (B, Sk, Hkv, D).

    Returns out (B, Sq, H, D), plus the float32 LSE (B, H, Sq) of the scaled
    scores when `return_lse` (rows with no visible key: out 0, LSE +inf).
    `config` overrides the tuned/heuristic choice; `autotune=True` tunes an
    untuned problem class on first use (see tune/autotune.py).
    """
    out, lse = _run(q, k, v, None, None, q.shape[1] if q.dim() == 4 else 0, k.shape[1] if k.dim() == 4 else 0,
                    softmax_scale, _mask_kind(causal, tuple(window_size)), softcap, config, autotune,
                    deterministic)
    return (out, lse) if return_lse else out


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale=None,
                           causal=False, window_size=(-1, -1), softcap=0.0, return_lse=False, *,
                           deterministic=False, config=None, autotune=None):
    """Packed variable-length forward: q (total_q, H, D), k/v (total_k, Hkv, D).

    LSE is (H, total_q). `max_seqlen_*` must be >= every sequence's length.
    """
    out, lse = _run(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                    _mask_kind(causal, tuple(window_size)), softcap, config, autotune, deterministic)
    return (out, lse) if return_lse else out


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """Drop-in for torch.nn.functional.scaled_dot_product_attention on (B, H, S, D) inputs.

    Causal masking is top-left aligned as in PyTorch. attn_mask and dropout
    are not supported (clear error).
    """
    if attn_mask is not None:
        raise NotImplementedError("cudadent42.scaled_dot_product_attention: attn_mask is not supported; use "
                                  "is_causal or flash_attn_func(window_size=...)")
    if dropout_p:
        raise NotImplementedError("cudadent42.scaled_dot_product_attention: dropout is not supported")
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            raise ValueError(f"scaled_dot_product_attention: {name} must be a 4-D (B, H, S, D) tensor")
    if key.shape[1] != query.shape[1] and not enable_gqa:
        raise ValueError(f"scaled_dot_product_attention: {query.shape[1]} query heads vs {key.shape[1]} key heads "
                         "needs enable_gqa=True")
    q, k, v = (t.transpose(1, 2) for t in (query, key, value))
    sq, sk = q.shape[1], k.shape[1]
    # PyTorch's is_causal keeps key c for query r iff c <= r (top-left); in
    # bottom-right terms that is a right window of sq - sk (negative when sk > sq).
    if is_causal:
        spec = ("causal", UNBOUNDED, 0) if sq == sk else ("local", UNBOUNDED, sq - sk)
    else:
        spec = ("none", UNBOUNDED, UNBOUNDED)
    out = _run(q, k, v, None, None, sq, sk, scale, spec, 0.0, None)[0]
    return out.transpose(1, 2)


def tuning_run(cfg: AttnFwdConfig, case: dict) -> torch.Tensor:
    """run(config, case) of the attn-fwd family (families/attn_fwd.py): what sweeps and autotuning time."""
    return flash_attn_func(case["q"], case["k"], case["v"], causal=case["causal"], softcap=case["softcap"], config=cfg)
