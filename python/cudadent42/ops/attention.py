"""Attention forward ops: FlashAttention-style and SDPA-style entry points.

Layouts: q (batch, seqlen_q, heads, dim), k/v (batch, seqlen_k, heads_kv, dim)
with the last dim contiguous and every other stride a multiple of 8 elements
(TMA needs 16-byte aligned strides); varlen: (total_tokens, heads, dim) with
int32 cu_seqlens of length batch+1. GQA/MQA: heads % heads_kv == 0, K/V are
never copied. Masks are bottom-right aligned (FlashAttention 2/3) except in
`scaled_dot_product_attention`, which follows PyTorch (top-left).

Call path. Eager calls (the common case: plain training loops) look up a
`_FwdPlan` by a key of shapes, strides, dtypes, devices and arguments: the
validation, config choice, kernel object, filled argument block and split
sizes of the first call of that key are reused, and the launch allocates
the outputs and a zeroed tile counter, patches the data pointers into a copy
of the argument block and calls the kernel object. Eager calls bypass the
torch.library dispatcher (and, with gradients, use `_AttnFunction`, a plain
autograd.Function whose backward reuses the plan). torch.compile, tensor
subclasses, dispatch modes (fake tensors, FlopCounterMode) and functorch
transforms go through the `cudadent42::attn_fwd` custom op, whose
implementation uses the same plans.
"""
from __future__ import annotations

import ctypes
import math

import torch
from torch.autograd.function import once_differentiable

from ..configs.attention import HEAD_DIMS, MASKS, AttnFwdConfig
from ..configs.select import select
from ..tune import autotune as _autotune
from ..tune import table as _table
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper
from . import validate as V
from ._launch import device_index, eager_ok, nvtx_requested, plain_eager, profiling, raw_stream

UNBOUNDED = 1 << 30  # window side with no limit (see csrc/kernels/attention/block_info.hpp)
_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_Tensor = torch.Tensor


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


# ---------------------------------------------------------------- validation


def _check_tensor(name: str, t, rank: int, ref=None, who: str = "attention", ref_name: str = "q") -> None:
    """Kind, rank, dtype and (against `ref`) dtype and device of one attention tensor."""
    V.tensor(who, name, t)
    V.rank(who, name, t, rank, "(total_tokens, heads, head_dim)" if rank == 3 else "(batch, seqlen, heads, head_dim)")
    V.dtype_in(who, name, t, tuple(_DTYPES), "bfloat16 or float16")
    if ref is not None:
        V.same_dtype(who, "q, k, v", ref_name, ref, name, t)
        V.same_device(who, ref_name, ref, name, t)


def check_fwd_inputs(q, k, v, varlen: bool, head_dim_ok=HEAD_DIMS, who: str = "attention"):
    """Everything about q, k, v the kernels need, in the order a user can act on: kinds, ranks,
    dtypes, devices, then shapes (head dim before strides: D=100 is an unsupported head dim, not a
    stride problem), then strides."""
    rank = 3 if varlen else 4
    _check_tensor("q", q, rank, who=who)
    _check_tensor("k", k, rank, q, who=who)
    _check_tensor("v", v, rank, q, who=who)
    d = q.shape[-1]
    V.head_dim(who, d, head_dim_ok)
    if k.shape[-1] != d or v.shape[-1] != d:
        raise ValueError(f"{who}: q, k, v must share the head dim, got {d}, {k.shape[-1]}, {v.shape[-1]}")
    if k.shape != v.shape:
        raise ValueError(f"{who}: k and v shapes differ: {tuple(k.shape)} vs {tuple(v.shape)}")
    if not varlen and (q.shape[0] != k.shape[0]):
        raise ValueError(f"{who}: batch sizes differ: q {q.shape[0]}, k {k.shape[0]}")
    hq, hk = q.shape[-2], k.shape[-2]
    if hk == 0 or hq % hk:
        raise ValueError(f"{who}: query heads ({hq}) must be a multiple of key/value heads ({hk})")
    for name, t in (("q", q), ("k", k), ("v", v)):
        V.tma_strides(who, name, t)


def check_cu_seqlens(q, cu_q, cu_k, who: str = "attention") -> None:
    """Varlen offsets: contiguous 1-D int32 on q's device, batch + 1 >= 1 entries each, equal lengths."""
    V.cu_seqlens(who, "cu_seqlens_q", cu_q, q.device)
    V.cu_seqlens(who, "cu_seqlens_k", cu_k, q.device)
    if cu_q.shape != cu_k.shape:
        raise ValueError(f"{who}: cu_seqlens_q and cu_seqlens_k must have the same length (batch + 1), got "
                         f"{cu_q.shape[0]} and {cu_k.shape[0]}")


def _mask_kind(causal: bool, window: tuple[int, int]) -> tuple[str, int, int]:
    """(kind, left, right), UNBOUNDED for an open side; sides past 2^30 are open too (no sequence is that
    long, and the ABI's int32 would wrap them)."""
    left, right = window
    if causal:
        right = 0
    left = UNBOUNDED if left < 0 or left > UNBOUNDED else left
    right = UNBOUNDED if right < 0 or right > UNBOUNDED else right
    if left == UNBOUNDED and right == UNBOUNDED:
        return "none", UNBOUNDED, UNBOUNDED
    return ("causal" if (left == UNBOUNDED and right == 0) else "local"), left, right


def _sdpa_mask(causal: bool, sq: int, sk: int) -> tuple[str, int, int]:
    # PyTorch's is_causal keeps key c for query r iff c <= r (top-left); in
    # bottom-right terms that is a right window of sq - sk (negative when sk > sq).
    if not causal:
        return "none", UNBOUNDED, UNBOUNDED
    return ("causal", UNBOUNDED, 0) if sq == sk else ("local", UNBOUNDED, sq - sk)


def _check_scalars(who, softmax_scale, softcap):
    # The kernel takes each row's max of the raw scores as the max of the
    # scaled ones, which holds for a scale >= 0 only.
    if softmax_scale is not None:
        V.finite_nonneg(who, "softmax_scale", softmax_scale)
    return V.finite_nonneg(who, "softcap", softcap, " (0 turns it off)")


def set_strides(args, prefix: str, t) -> None:
    """The ABI's (batch, row, head) strides of `t` (a tensor or a stride tuple); packed varlen
    (total, heads, dim) tensors have batch stride 0."""
    st = t if isinstance(t, tuple) else t.stride()
    strides = st[:3] if len(st) == 4 else (0,) + tuple(st[:2])
    for name, s in zip(("batch", "row", "head"), strides):
        setattr(args, f"{prefix}_{name}_stride", s)


def contiguous_strides(shape) -> tuple[int, ...]:
    """Strides torch gives a fresh contiguous tensor of `shape` (size-1 and size-0 dims included)."""
    return torch.empty(tuple(shape), device="meta").stride()


# ---------------------------------------------------------------- plans

_EMPTY, _NO_KEYS, _LAUNCH = 0, 1, 2


class _FwdPlan:
    """Everything a forward call of one key decides once (see the module docstring)."""
    __slots__ = ("who", "kind", "eager", "out_shape", "lse_shape", "op_args", "cfg", "kernel", "launch", "args",
                 "counters", "ws_floats", "split", "dev_index", "nvtx", "version", "bwd")

    def stale(self) -> bool:
        """The tuned table changed since the config was chosen (None: an explicit config)."""
        return self.version is not None and self.version != _table.version


def selection_epoch() -> int:
    """Changes whenever select() may answer differently (a tuned entry was recorded or reloaded)."""
    return _table.version


def _check_call(who, q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, deterministic):
    """Every argument check of a forward call (pure: runs on CPU/meta tensors and under torch.compile);
    returns (varlen, scale, (mask, left, right), softcap, max_sq, max_sk, deterministic) normalised."""
    varlen = cu_q is not None or cu_k is not None
    if varlen:
        V.tensor(who, "cu_seqlens_q", cu_q)
        V.tensor(who, "cu_seqlens_k", cu_k)
    check_fwd_inputs(q, k, v, varlen, who=who)
    softcap = _check_scalars(who, softmax_scale, softcap)
    deterministic = V.flag(who, "deterministic", deterministic)
    mask = mask_spec(who, q, k)
    if varlen:
        check_cu_seqlens(q, cu_q, cu_k, who)
        max_sq = V.integer(who, "max_seqlen_q", max_sq)
        max_sk = V.integer(who, "max_seqlen_k", max_sk)
    else:
        max_sq, max_sk = q.shape[1], k.shape[1]
    scale = float(softmax_scale) if softmax_scale is not None else 1.0 / math.sqrt(q.shape[-1])
    return varlen, scale, mask, softcap, max_sq, max_sk, deterministic


def _build_fwd_plan(who, q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, config,
                    autotune, deterministic) -> _FwdPlan:
    """Validates a call (before anything that needs CUDA) and fixes every per-call decision.
    mask_spec(who, q, k) checks the mask arguments and returns the kernel's (kind, left, right).
    CUDADENT42_AUTOTUNE is consulted here, i.e. on the first call of a key (and again after the
    tuned table changes); `autotune=` is part of the key."""
    varlen, scale, (mask, left, right), softcap, max_sq, max_sk, deterministic = _check_call(
        who, q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, deterministic)
    autotune = V.optional_flag(who, "autotune", autotune)
    cfg = V.config_arg(who, config, AttnFwdConfig)
    dtype, d = _DTYPES[q.dtype], q.shape[-1]
    if cfg is not None and (cfg.dtype, cfg.head_dim, cfg.mask, cfg.softcap, cfg.varlen) != \
            (dtype, d, mask, softcap > 0, varlen):
        raise ValueError(f"{who}: config {cfg.name} does not match the call (dtype={dtype}, head_dim={d}, "
                         f"mask={mask}, softcap={softcap > 0}, varlen={varlen})")

    p = _FwdPlan()
    p.who, p.bwd, p.version, p.cfg = who, {}, None, cfg
    p.out_shape = tuple(q.shape)
    p.lse_shape = (q.shape[1], q.shape[0]) if varlen else (q.shape[0], q.shape[2], q.shape[1])
    p.op_args = (max_sq, max_sk, scale, left, right, softcap, mask, cfg.name if cfg else "", deterministic)
    batch = cu_q.shape[0] - 1 if varlen else q.shape[0]
    if q.numel() == 0 or batch == 0:
        p.kind = _EMPTY
    elif k.shape[0 if varlen else 1] == 0 or (varlen and max_sk == 0):
        p.kind = _NO_KEYS  # no key anywhere: O = 0, LSE = +inf
    else:
        p.kind = _LAUNCH
    p.eager = eager_ok(q.device)
    if p.kind != _LAUNCH or not p.eager:
        return p

    num_sms = require_hopper(q, who)
    if cfg is None:
        prob = dict(dtype=dtype, head_dim=d, mask=mask, softcap=softcap > 0, varlen=varlen,
                    seqlen=max_sq if varlen else q.shape[1])
        with _autotune.requested(autotune):  # read by select() (tunes on first use when enabled)
            cfg = select("attn-fwd", gpu_name(q.device), sizes=dict(batch=batch, heads=q.shape[-2]), run=tuning_run,
                         **prob)
        p.version = selection_epoch()
        p.cfg = cfg
    p.kernel, p.launch, split_sizes = _launcher(cfg)

    a = _FwdArgs()
    if varlen:
        a.batch, a.total_q, a.total_k, a.seqlen_q, a.seqlen_k = batch, q.shape[0], k.shape[0], max_sq, max_sk
    else:
        a.batch, a.seqlen_q, a.seqlen_k = q.shape[0], q.shape[1], k.shape[1]
        a.total_q, a.total_k = q.shape[0] * q.shape[1], k.shape[0] * k.shape[1]
    for name, t in (("q", q), ("k", k), ("v", v)):
        set_strides(a, name, t)
    set_strides(a, "o", contiguous_strides(p.out_shape))
    a.heads_q, a.heads_kv = q.shape[-2], k.shape[-2]
    a.window_left, a.window_right = left, right
    a.softmax_scale, a.softcap = scale, softcap
    a.num_sms = num_sms
    # Counters: [0] is claimed by the persistent grid for work past its first
    # wave, [1:] count the finished pieces of each split tail tile; the
    # workspace holds those pieces' partial results (split_tail.hpp). A pure
    # function of the sizes, so asked once per plan.
    sizes = (ctypes.c_int64 * 2)()
    split_sizes(ctypes.byref(a), sizes)
    p.counters, p.ws_floats = int(sizes[0]), int(sizes[1])
    p.split = (p.counters, p.ws_floats)
    p.args = a
    p.dev_index = device_index(q.device)
    p.nvtx = nvtx_requested()
    return p


def _misaligned(who, named) -> None:
    for name, t in named:
        if t.data_ptr() % 16:
            raise ValueError(f"{who}: {name} needs a 16-byte aligned data pointer (storage offset "
                             f"{t.storage_offset()})")


def _launch_fwd(p: _FwdPlan, q, k, v, cu_q, cu_k):
    """(out, lse) of one call of plan `p`: the per-call work only."""
    out = q.new_empty(p.out_shape)
    lse = q.new_empty(p.lse_shape, dtype=torch.float32)
    if p.kind != _LAUNCH:
        if p.kind == _NO_KEYS:
            out.zero_()
            lse.fill_(float("inf"))
        return out, lse
    if not p.eager:
        require_hopper(q, p.who)  # raises: this device cannot run the kernels
    pq, pk, pv = q.data_ptr(), k.data_ptr(), v.data_ptr()
    if (pq | pk | pv) & 15:
        _misaligned(p.who, (("q", q), ("k", k), ("v", v)))
    a = _FwdArgs.from_buffer_copy(p.args)  # a copy: ctypes drops the GIL during the launch call
    a.q, a.k, a.v, a.o, a.lse = pq, pk, pv, out.data_ptr(), lse.data_ptr()
    counter = q.new_zeros(p.counters, dtype=torch.int32)
    a.tile_counter = counter.data_ptr()
    if p.ws_floats:
        workspace = q.new_empty(p.ws_floats, dtype=torch.float32)
        a.split_ws = workspace.data_ptr()
    if cu_q is not None:
        a.cu_seqlens_q, a.cu_seqlens_k = cu_q.data_ptr(), cu_k.data_ptr()
    global last_split_sizes
    last_split_sizes = p.split
    if p.nvtx or profiling():
        with kernel_range(p.cfg.name):
            rc = p.launch(a, raw_stream(p.dev_index))
    else:
        rc = p.launch(a, raw_stream(p.dev_index))
    if rc:
        check_rc(rc, p.kernel, "attention forward")
    return out, lse


def _sig(t):
    return t.shape, t.stride(), t.dtype, t.device


_op_plans: dict = {}
_api_plans: dict = {}
_MAX_PLANS = 4096  # distinct keys kept (variable-length training sees one per sequence length)


def _remember(cache: dict, key, plan) -> None:
    if len(cache) >= _MAX_PLANS:
        cache.clear()
    cache[key] = plan


# ---------------------------------------------------------------- custom op (torch.compile path)


@torch.library.custom_op("cudadent42::attn_fwd", mutates_args=())
def _attn_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor | None,
                 cu_seqlens_k: torch.Tensor | None, max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float,
                 window_left: int, window_right: int, softcap: float, mask: str, config: str,
                 deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    return _launch_fwd(_op_plan(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                                window_left, window_right, softcap, mask, config, deterministic),
                       q, k, v, cu_seqlens_q, cu_seqlens_k)


def _op_plan(q, k, v, cu_q, cu_k, max_sq, max_sk, scale, left, right, softcap, mask, config, deterministic):
    key = (_sig(q), _sig(k), _sig(v), None if cu_q is None else _sig(cu_q), None if cu_k is None else _sig(cu_k),
           max_sq, max_sk, scale, left, right, softcap, mask, config, deterministic)
    plan = _op_plans.get(key)
    if plan is None or plan.stale():
        plan = _build_fwd_plan("cudadent42::attn_fwd", q, k, v, cu_q, cu_k, max_sq, max_sk, scale,
                               _op_mask(mask, left, right), softcap, config, None, deterministic)
        _remember(_op_plans, key, plan)
    return plan


def _op_mask(mask, left, right):
    """The op's mask arguments are already in kernel form (kind, left, right)."""
    def decide(who, q, k):
        if mask not in MASKS:
            raise ValueError(f"{who}: mask must be one of {MASKS}, got {mask!r}")
        return (mask, V.integer(who, "window_left", left, -UNBOUNDED, UNBOUNDED),
                V.integer(who, "window_right", right, -UNBOUNDED, UNBOUNDED))
    return decide


def _flash_mask(causal, window_size):
    def decide(who, q, k):
        return _mask_kind(V.flag(who, "causal", causal), V.window(who, window_size))
    return decide


def _sdpa_mask_of(is_causal):
    def decide(who, q, k):
        return _sdpa_mask(V.flag(who, "is_causal", is_causal), q.shape[1], k.shape[1])
    return decide


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


# The backward lives in ops/attention_bwd.py, which imports this module; at import it registers the
# op's autograd and hands its eager backward to this slot (so this module never imports it).
_eager_backward = None


def set_eager_backward(fn) -> None:
    global _eager_backward
    _eager_backward = fn


# ---------------------------------------------------------------- eager calls


class _AttnFunction(torch.autograd.Function):
    """Eager autograd of one planned call: the same math as the op's registered autograd
    (attention_bwd.setup_context / backward), without the dispatcher on either side."""

    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, plan):
        out, lse = _launch_fwd(plan, q, k, v, cu_q, cu_k)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.plan = plan
        ctx.mark_non_differentiable(lse)
        ctx.set_materialize_grads(False)  # no zero-filled gradient for the LSE
        return out, lse

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, _dlse):
        if dout is None:
            return (None,) * 6
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        dq, dk, dv = _eager_backward(ctx.plan, dout, q, k, v, out, lse, cu_q, cu_k)
        return dq, dk, dv, None, None, None


_PLAIN = (torch.Tensor, torch.nn.Parameter)
_grad_enabled = torch.is_grad_enabled


def _call(plan: _FwdPlan, q, k, v, cu_q, cu_k):
    if plan.eager and type(q) in _PLAIN and type(k) in _PLAIN and type(v) in _PLAIN and plain_eager():
        if _grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
            return _AttnFunction.apply(q, k, v, cu_q, cu_k, plan)
        return _launch_fwd(plan, q, k, v, cu_q, cu_k)
    return _attn_fwd_op(q, k, v, cu_q, cu_k, *plan.op_args)


def _traced(who, q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, config, deterministic):
    """Under torch.compile: the same checks, then the custom op (which the compiled graph calls)."""
    varlen, scale, (mask, left, right), softcap, max_sq, max_sk, deterministic = _check_call(
        who, q, k, v, cu_q, cu_k, max_sq, max_sk, softmax_scale, mask_spec, softcap, deterministic)
    if config is not None and not isinstance(config, (str, AttnFwdConfig)):
        V.config_arg(who, config, AttnFwdConfig)  # raises the TypeError
    name = config.name if isinstance(config, AttnFwdConfig) else (config or "")
    return _attn_fwd_op(q, k, v, cu_q, cu_k, int(max_sq), int(max_sk), scale, left, right, softcap, mask, name,
                        deterministic)


_flash_plans: dict = {}
_varlen_plans: dict = {}
_sdpa_plans: dict = {}


def flash_attn_func(q, k, v, causal=False, softmax_scale=None, window_size=(-1, -1), softcap=0.0,
                    return_lse=False, *, deterministic=False, config=None, autotune=None):
    """FlashAttention-compatible forward: q (B, Sq, H, D), k/v (B, Sk, Hkv, D).

    Returns out (B, Sq, H, D), plus the float32 LSE (B, H, Sq) of the scaled
    scores when `return_lse` (rows with no visible key: out 0, LSE +inf).
    `config` overrides the tuned/heuristic choice; `autotune=True` tunes an
    untuned problem class on first use (see tune/autotune.py).
    """
    who = "flash_attn_func"
    if torch.compiler.is_compiling():
        out, lse = _traced(who, q, k, v, None, None, None, None, softmax_scale, _flash_mask(causal, window_size),
                           softcap, config, deterministic)
        return (out, lse) if return_lse else out
    if type(window_size) is list:
        window_size = tuple(window_size)
    try:
        key = (q.shape, q.stride(), k.shape, k.stride(), v.shape, v.stride(), q.dtype, k.dtype, v.dtype, q.device,
               k.device, v.device, causal, softmax_scale, window_size, softcap, deterministic, config, autotune)
        plan = _flash_plans.get(key)
    except (AttributeError, TypeError):  # not tensors, or an unhashable argument: checked below
        key = plan = None
    if plan is None or plan.stale():
        plan = _build_fwd_plan(who, q, k, v, None, None, None, None, softmax_scale, _flash_mask(causal, window_size),
                               softcap, config, autotune, deterministic)
        if key is not None:
            _remember(_flash_plans, key, plan)
    out, lse = _call(plan, q, k, v, None, None)
    return (out, lse) if return_lse else out


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale=None,
                           causal=False, window_size=(-1, -1), softcap=0.0, return_lse=False, *,
                           deterministic=False, config=None, autotune=None):
    """Packed variable-length forward: q (total_q, H, D), k/v (total_k, Hkv, D).

    LSE is (H, total_q). `max_seqlen_*` must be >= every sequence's length.
    """
    who = "flash_attn_varlen_func"
    if cu_seqlens_q is None or cu_seqlens_k is None:
        raise TypeError(f"{who}: cu_seqlens_q and cu_seqlens_k must be int32 tensors (batch + 1 offsets), got "
                        f"{type(cu_seqlens_q).__name__} and {type(cu_seqlens_k).__name__}")
    if torch.compiler.is_compiling():
        out, lse = _traced(who, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                           _flash_mask(causal, window_size), softcap, config, deterministic)
        return (out, lse) if return_lse else out
    if type(window_size) is list:
        window_size = tuple(window_size)
    try:
        key = (_sig(q), _sig(k), _sig(v), _sig(cu_seqlens_q), _sig(cu_seqlens_k), max_seqlen_q, max_seqlen_k,
               causal, softmax_scale, window_size, softcap, deterministic, config, autotune)
        plan = _varlen_plans.get(key)
    except (AttributeError, TypeError):
        key = plan = None
    if plan is None or plan.stale():
        plan = _build_fwd_plan(who, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                               _flash_mask(causal, window_size), softcap, config, autotune, deterministic)
        if key is not None:
            _remember(_varlen_plans, key, plan)
    out, lse = _call(plan, q, k, v, cu_seqlens_q, cu_seqlens_k)
    return (out, lse) if return_lse else out


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """Drop-in for torch.nn.functional.scaled_dot_product_attention on (B, H, S, D) inputs.

    Causal masking is top-left aligned as in PyTorch. attn_mask and dropout
    are not supported (clear error).
    """
    who = "scaled_dot_product_attention"
    if attn_mask is not None:
        raise NotImplementedError(f"cudadent42.{who}: attn_mask is not supported; use is_causal or "
                                  "flash_attn_func(window_size=...)")
    if dropout_p != 0.0:
        if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)):
            raise TypeError(f"{who}: dropout_p must be a number, got {type(dropout_p).__name__}")
        raise NotImplementedError(f"cudadent42.{who}: dropout is not supported (dropout_p={dropout_p})")
    for name, t in (("query", query), ("key", key), ("value", value)):
        V.tensor(who, name, t)
        V.rank(who, name, t, 4, "(batch, heads, seqlen, head_dim)")
    if scale is not None:
        V.finite_nonneg(who, "scale", scale)
    if key.shape[1] != query.shape[1] and not V.flag(who, "enable_gqa", enable_gqa):
        raise ValueError(f"{who}: {query.shape[1]} query heads vs {key.shape[1]} key heads needs enable_gqa=True")
    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    if torch.compiler.is_compiling():
        out = _traced(who, q, k, v, None, None, None, None, scale, _sdpa_mask_of(is_causal), 0.0, None, False)[0]
        return out.transpose(1, 2)
    try:
        plan_key = (q.shape, q.stride(), k.shape, k.stride(), v.shape, v.stride(), q.dtype, k.dtype, v.dtype,
                    q.device, k.device, v.device, is_causal, scale)
        plan = _sdpa_plans.get(plan_key)
    except TypeError:
        plan_key = plan = None
    if plan is None or plan.stale():
        plan = _build_fwd_plan(who, q, k, v, None, None, None, None, scale, _sdpa_mask_of(is_causal), 0.0, None, None,
                               False)
        if plan_key is not None:
            _remember(_sdpa_plans, plan_key, plan)
    return _call(plan, q, k, v, None, None)[0].transpose(1, 2)


def tuning_run(cfg: AttnFwdConfig, case: dict) -> torch.Tensor:
    """run(config, case) of the attn-fwd family (families/attn_fwd.py): what sweeps and autotuning time."""
    return flash_attn_func(case["q"], case["k"], case["v"], causal=case["causal"], softcap=case["softcap"], config=cfg)
