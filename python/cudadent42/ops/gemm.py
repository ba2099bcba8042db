"""`cudadent42.gemm`: C = A @ B on Hopper through the JIT-built CuTe kernel.

A: [M, K], row-major (K contiguous). B: [K, N] with either N contiguous
(a row-major [K, N] tensor) or K contiguous (`w.t()` of a row-major [N, K]
weight). C: [M, N] row-major in the input dtype, fp32 accumulation.
"""
from __future__ import annotations

import ctypes

import torch

from ..configs import GemmConfig
from ..configs.select import select
from ..tune import autotune as _autotune
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper
from . import validate as V
from ._launch import device_index, raw_stream

_TORCH_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_LAUNCH_ARGTYPES = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6 + [ctypes.c_int, ctypes.c_void_p]
_launchers: dict[GemmConfig, tuple] = {}  # config -> (kernel, ctypes fn): no dict/disk work per call


def _b_major(b: torch.Tensor) -> tuple[str, int]:
    """('n', ldb) for N-contiguous B, ('k', ldb) for K-contiguous B."""
    K, N = b.shape
    if b.stride(1) == 1 and (b.stride(0) >= N or K == 1):
        return "n", max(b.stride(0), N)
    if b.stride(0) == 1 and (b.stride(1) >= K or N == 1):
        return "k", max(b.stride(1), K)
    raise ValueError(f"gemm: B must have one contiguous dimension (row-major [K,N] or the transpose of a "
                     f"row-major [N,K]); got shape {tuple(b.shape)} with strides {b.stride()}")


def check_gemm_inputs(a: torch.Tensor, b: torch.Tensor) -> None:
    """Raises a clear error for anything the kernel cannot compute exactly."""
    who = "gemm"
    for name, t in (("a", a), ("b", b)):
        V.tensor(who, name, t)
        V.rank(who, name, t, 2)
    V.dtype_in(who, "a", a, tuple(_TORCH_DTYPES), "bfloat16 or float16")
    V.same_dtype(who, "a and b", "a", a, "b", b)
    V.same_device(who, "a", a, "b", b)
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: inner dimensions differ: a{tuple(a.shape)} @ b{tuple(b.shape)}")
    M, K = a.shape
    N = b.shape[1]
    if M == 0 or N == 0 or K == 0:
        return
    if a.stride(1) != 1:
        raise ValueError(f"gemm: a must be row-major (last dim contiguous), got strides {a.stride()}; "
                         "call .contiguous() first")
    if K % 8 or N % 8:
        raise ValueError(f"gemm: K={K} and N={N} must be multiples of 8 (TMA needs 16-byte aligned rows)")
    _, ld = _b_major(b)
    for name, stride in (("a", a.stride(0)), ("b", ld)):
        if (stride * a.element_size()) % 16:
            raise ValueError(f"gemm: {name} needs a row stride that is a multiple of 16 bytes "
                             f"(row stride {stride} elements)")


def _check_pointers(*named: tuple[str, torch.Tensor]) -> None:
    # Separate from check_gemm_inputs: data_ptr() cannot be traced by dynamo,
    # so this runs inside the op's real implementation only.
    for name, t in named:
        if t.data_ptr() % 16:
            raise ValueError(f"gemm: {name} needs a 16-byte aligned data pointer (got {t.data_ptr():#x}, "
                             f"storage offset {t.storage_offset()})")


def _launcher(cfg: GemmConfig):
    hit = _launchers.get(cfg)
    if hit is None:
        from ..jit import load  # deferred: importing the package needs no toolchain

        kernel = load(cfg)
        hit = (kernel, kernel.fn("cd42_gemm_launch", ctypes.c_int, _LAUNCH_ARGTYPES))
        _launchers[cfg] = hit
    return hit


def resolve_config(a: torch.Tensor, b: torch.Tensor, config: str | GemmConfig | None) -> GemmConfig:
    major, _ = _b_major(b)
    dtype = _TORCH_DTYPES[a.dtype]
    cfg = V.config_arg("gemm", config, GemmConfig)
    if cfg is not None:
        if cfg.dtype != dtype or cfg.b_major != major:
            raise ValueError(f"gemm: config {cfg.name} is for dtype={cfg.dtype}, b_major={cfg.b_major} but the "
                             f"inputs are dtype={dtype}, b_major={major}")
        return cfg.validate()
    return select("gemm", gpu_name(a.device), sizes={}, dtype=dtype, b_major=major, M=a.shape[0], N=b.shape[1],
                  K=a.shape[1], run=tuning_run)


def gemm_out(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, config: str | GemmConfig | None = None) -> None:
    """Writes a @ b into `out` ([M, N], row-major) without allocating."""
    M, K = a.shape
    N = b.shape[1]
    if K == 0:
        out.zero_()
        return
    if M == 0 or N == 0:
        return
    sms = require_hopper(a, "gemm")
    _check_pointers(("a", a), ("b", b), ("out", out))
    cfg = resolve_config(a, b, config)
    _, ldb = _b_major(b)
    kernel, launch = _launcher(cfg)
    with kernel_range(cfg.name):
        rc = launch(a.data_ptr(), b.data_ptr(), out.data_ptr(), M, N, K, a.stride(0), ldb, out.stride(0), sms,
                    raw_stream(device_index(a.device)))
    check_rc(rc, kernel, "gemm launch")


@torch.library.custom_op("cudadent42::gemm", mutates_args=())
def _gemm_op(a: torch.Tensor, b: torch.Tensor, config: str = "") -> torch.Tensor:
    out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    gemm_out(a, b, out, config or None)
    return out


@_gemm_op.register_fake
def _(a, b, config=""):
    return a.new_empty((a.shape[0], b.shape[1]))


def _setup_context(ctx, inputs, output):
    a, b, config = inputs
    ctx.save_for_backward(a, b)


def _backward(ctx, grad):
    a, b = ctx.saved_tensors
    grad = grad.contiguous()
    da = db = None
    if ctx.needs_input_grad[0]:
        da = _gemm_op(grad, b.t())  # [M,N] @ [N,K]; b.t() keeps one contiguous dim
    if ctx.needs_input_grad[1]:
        db = _gemm_op(a.t().contiguous(), grad)  # [K,M] @ [M,N]
    return da, db, None


_gemm_op.register_autograd(_backward, setup_context=_setup_context)


def gemm(a: torch.Tensor, b: torch.Tensor, *, config: str | GemmConfig | None = None,
         autotune: bool | None = None) -> torch.Tensor:
    """C = a @ b for bf16/fp16 2-D tensors on an sm_90 GPU (fp32 accumulation).

    `b` is [K, N] with N contiguous, or `w.t()` of a row-major [N, K] weight.
    `config` (a GemmConfig or its name) overrides the tuned/heuristic choice;
    `autotune=True` tunes an untuned shape class on first use (eager calls;
    CUDADENT42_AUTOTUNE=1 does it everywhere; see tune/autotune.py).
    """
    check_gemm_inputs(a, b)
    autotune = V.optional_flag("gemm", "autotune", autotune)
    V.config_arg("gemm", config, GemmConfig)  # the kind of `config` (its fit is checked with the call's B layout)
    if autotune and not config and a.is_cuda:
        with _autotune.requested(True):
            config = resolve_config(a, b, None)
    name = config.name if isinstance(config, GemmConfig) else (config or "")
    needs_graph = torch.compiler.is_compiling() or (torch.is_grad_enabled() and (a.requires_grad or b.requires_grad))
    if needs_graph:
        return _gemm_op(a, b, name)
    # Eager fast path: the dispatcher adds ~16 us per call (measured, CUTE_MAP.md).
    out = torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device=a.device)
    gemm_out(a, b, out, name or None)
    return out


def tuning_run(cfg: GemmConfig, case: dict) -> torch.Tensor:
    """run(config, case) of the gemm family (families/gemm.py): what sweeps and autotuning time."""
    gemm_out(case["a"], case["b"], case["out"], cfg)
    return case["out"]
