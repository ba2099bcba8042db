"""`cudadent42.moe_up_swiglu`: the MoE up-projection fused with the token gather and SwiGLU.

For routing-ordered rows p (T*k of them; expert e owns rows [offs[e-1], offs[e])):
  pre[p] = x[gather_idx[p]] @ w_gate_up[e].T   (R, 2F): gate columns [0, F), up [F, 2F)
  h[p]   = silu(pre[p, :F]) * pre[p, F:]        (R, F)
x (T, H) is read in place by the kernel (no permuted copy); rows past offs[-1] (sentinel
expert ids) get zeros in both outputs. `pre` is what the backward needs (as SonicMoE keeps it).

Weights: transformers' fused (E, 2F, H) layout (is_transposed=False), H contiguous and the
experts packed (stride(0) == 2F * stride(1)); H and F multiples of 8.

Backward (for now in torch, from `pre`, the same math as the unfused stages): dpre by
dSwiGLU in float32; dx_rows = grouped_gemm(dpre, w) (rows past offs[-1]: zeros), dx the
k-slot sum of dx_rows by `inverse` (a gather and a fixed-order sum: no atomics);
dw = grouped_gemm(x[gather_idx].T, dpre) (the backward materialises the gathered rows once).
"""
from __future__ import annotations

import ctypes

import torch

from ..configs.base import ConfigError
from ..configs.moe_up import MoeUpConfig
from ..configs.select import select
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper, stream_handle

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_ARGTYPES = ([ctypes.c_void_p] * 6 + [ctypes.c_int64] * 9 + [ctypes.c_int, ctypes.c_void_p])
_launchers: dict[MoeUpConfig, tuple] = {}


def weights_packed(w_gate_up: torch.Tensor) -> bool:
    """(E, 2F, H) with H contiguous, a 16-byte row stride and the experts packed (the kernel's view)."""
    if w_gate_up.dim() != 3:
        return False
    _, two_f, H = w_gate_up.shape
    ld = w_gate_up.stride(1)
    return (w_gate_up.stride(2) == 1 or H <= 1) and ld >= H and ld % 8 == 0 and (
        w_gate_up.shape[0] <= 1 or w_gate_up.stride(0) == two_f * ld)


def check_inputs(x, w_gate_up, gather_idx, inverse, offs, top_k) -> None:
    """Validates every argument with a message naming it."""
    for name, t in (("x", x), ("w_gate_up", w_gate_up), ("gather_idx", gather_idx), ("inverse", inverse),
                    ("offs", offs)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"moe_up_swiglu: {name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dim() != 2 or w_gate_up.dim() != 3:
        raise ValueError(f"moe_up_swiglu: x must be (T, H) and w_gate_up (E, 2F, H), got x{tuple(x.shape)} and "
                         f"w_gate_up{tuple(w_gate_up.shape)}")
    if x.dtype not in _DTYPES or w_gate_up.dtype != x.dtype:
        raise TypeError(f"moe_up_swiglu: x and w_gate_up must both be bfloat16 or float16, got {x.dtype} and "
                        f"{w_gate_up.dtype}")
    E, two_f, H = w_gate_up.shape
    if H != x.shape[1] or two_f % 2:
        raise ValueError(f"moe_up_swiglu: w_gate_up must be (E, 2F, H={x.shape[1]}), got {tuple(w_gate_up.shape)}")
    if H % 8 or (two_f // 2) % 8:
        raise ValueError(f"moe_up_swiglu: H={H} and F={two_f // 2} must be multiples of 8 (16-byte rows for "
                         f"cp.async and TMA)")
    if not weights_packed(w_gate_up):
        raise ValueError(f"moe_up_swiglu: w_gate_up needs H contiguous, a row stride that is a multiple of 8 and "
                         f"packed experts; got strides {w_gate_up.stride()} (call .contiguous())")
    if x.stride(1) != 1 or x.stride(0) < H or x.stride(0) % 8:
        raise ValueError(f"moe_up_swiglu: x needs H contiguous and a row stride that is a multiple of 8, got "
                         f"strides {x.stride()}")
    if gather_idx.dtype != torch.int32 or gather_idx.dim() != 1:
        raise TypeError(f"moe_up_swiglu: gather_idx must be 1-D int32, got {gather_idx.dtype} "
                        f"{tuple(gather_idx.shape)}")
    if offs.dtype != torch.int32 or offs.shape != (E,):
        raise TypeError(f"moe_up_swiglu: offs must be int32 ({E},), got {offs.dtype} {tuple(offs.shape)}")
    if inverse.dim() != 1 or inverse.numel() != gather_idx.numel() or inverse.dtype.is_floating_point:
        raise ValueError(f"moe_up_swiglu: inverse must be an integer ({gather_idx.numel()},) tensor, got "
                         f"{inverse.dtype} {tuple(inverse.shape)}")
    if not isinstance(top_k, int) or top_k < 1 or gather_idx.numel() != x.shape[0] * top_k:
        raise ValueError(f"moe_up_swiglu: gather_idx has {gather_idx.numel()} rows, expected T*top_k = "
                         f"{x.shape[0]}*{top_k}")
    for name, t in (("w_gate_up", w_gate_up), ("gather_idx", gather_idx), ("inverse", inverse), ("offs", offs)):
        if t.device != x.device:
            raise ValueError(f"moe_up_swiglu: {name} is on {t.device} but x is on {x.device}")


def resolve_config(x, w_gate_up, gather_idx, config) -> MoeUpConfig:
    dtype = _DTYPES[x.dtype]
    if config:
        cfg = config if isinstance(config, MoeUpConfig) else MoeUpConfig.from_name(config)
        if cfg.dtype != dtype:
            raise ConfigError(f"moe_up_swiglu: config {cfg.name} is for {cfg.dtype} but x is {dtype}")
        return cfg.validate()
    E, two_f, H = w_gate_up.shape
    k = gather_idx.numel() // max(x.shape[0], 1)
    return select("moe-up", gpu_name(x.device), sizes={}, run=tuning_run, dtype=dtype, T=x.shape[0], k=k, H=H,
                  F=two_f // 2, E=E)


def _launcher(cfg: MoeUpConfig):
    hit = _launchers.get(cfg)
    if hit is None:
        from ..jit import load  # deferred: importing the package needs no toolchain

        kernel = load(cfg)
        hit = (kernel, kernel.fn("cd42_moe_up_swiglu_launch", ctypes.c_int, _ARGTYPES))
        _launchers[cfg] = hit
    return hit


def _new_outputs(x, w_gate_up, gather_idx):
    rows, two_f = gather_idx.numel(), w_gate_up.shape[1]
    return x.new_empty(rows, two_f // 2), x.new_empty(rows, two_f)


def moe_up_swiglu_out(x, w_gate_up, gather_idx, offs, h, pre, config=None) -> None:
    """Writes h and pre (from _new_outputs) in place."""
    if h.numel() == 0:
        return
    if x.shape[1] == 0:
        h.zero_()
        pre.zero_()
        return
    sms = require_hopper(x, "moe_up_swiglu")
    for name, t in (("x", x), ("w_gate_up", w_gate_up), ("h", h), ("pre", pre)):
        if t.data_ptr() % 16:
            raise ValueError(f"moe_up_swiglu: {name} needs a 16-byte aligned data pointer (storage offset "
                             f"{t.storage_offset()})")
    cfg = resolve_config(x, w_gate_up, gather_idx, config)
    E, two_f, H = w_gate_up.shape
    kernel, launch = _launcher(cfg)
    with kernel_range(cfg.name):
        rc = launch(x.data_ptr(), w_gate_up.data_ptr(), gather_idx.data_ptr(), offs.data_ptr(), h.data_ptr(),
                    pre.data_ptr(), x.shape[0], gather_idx.numel(), H, two_f // 2, E, x.stride(0),
                    w_gate_up.stride(1), h.stride(0), pre.stride(0), sms, stream_handle(x.device))
    check_rc(rc, kernel, "moe_up_swiglu launch")


@torch.library.custom_op("cudadent42::moe_up_swiglu", mutates_args=())
def _moe_up_op(x: torch.Tensor, w_gate_up: torch.Tensor, gather_idx: torch.Tensor, inverse: torch.Tensor,
               offs: torch.Tensor, top_k: int, config: str = "") -> tuple[torch.Tensor, torch.Tensor]:
    h, pre = _new_outputs(x, w_gate_up, gather_idx)
    moe_up_swiglu_out(x, w_gate_up, gather_idx, offs, h, pre, config or None)
    return h, pre


@_moe_up_op.register_fake
def _(x, w_gate_up, gather_idx, inverse, offs, top_k, config=""):
    return _new_outputs(x, w_gate_up, gather_idx)


def _setup_context(ctx, inputs, output):
    x, w_gate_up, gather_idx, inverse, offs, top_k, config = inputs
    ctx.save_for_backward(x, w_gate_up, gather_idx, inverse, offs, output[1])
    ctx.top_k = top_k


def dswiglu(dh: torch.Tensor | None, dpre: torch.Tensor | None, pre: torch.Tensor) -> torch.Tensor:
    """d pre from dh (through h = silu(gate) * up) plus any direct gradient of pre, in float32."""
    gate, up = pre.float().chunk(2, dim=-1)
    out = torch.zeros_like(pre, dtype=torch.float32) if dpre is None else dpre.float().clone()
    if dh is not None:
        sig = torch.sigmoid(gate)
        silu = gate * sig
        dhf = dh.float()
        out[:, :gate.shape[1]] += dhf * up * sig * (1 + gate * (1 - sig))
        out[:, gate.shape[1]:] += dhf * silu
    return out.to(pre.dtype)


def _backward(ctx, dh, dpre):
    from .grouped_gemm import grouped_gemm

    x, w, gather_idx, inverse, offs, pre = ctx.saved_tensors
    k = ctx.top_k
    g = dswiglu(dh, dpre, pre)
    # Rows past offs[-1] belong to no expert: no gradient flows through them.
    valid = (torch.arange(g.shape[0], device=g.device) < offs[-1]).unsqueeze(-1)
    g = torch.where(valid, g, 0)
    dx = dw = None
    if ctx.needs_input_grad[0]:
        rows = grouped_gemm(g, w, offs)  # (R, 2F) @ (E, 2F, H) -> (R, H)
        rows = torch.where(valid, rows, 0)  # rows past offs[-1] are left unwritten by the forward form
        dx = rows[inverse].view(x.shape[0], k, -1).float().sum(1).to(x.dtype)
    if ctx.needs_input_grad[1]:
        xs = x[gather_idx.long()]
        dw = grouped_gemm(xs.t(), g, offs).transpose(-2, -1)  # (E, H, 2F) -> (E, 2F, H)
    return dx, dw, None, None, None, None, None


_moe_up_op.register_autograd(_backward, setup_context=_setup_context)


def moe_up_swiglu(x: torch.Tensor, w_gate_up: torch.Tensor, gather_idx: torch.Tensor, inverse: torch.Tensor,
                  offs: torch.Tensor, top_k: int, *, config: str | MoeUpConfig | None = None):
    """(h (T*k, F), pre (T*k, 2F)) of the fused up-projection (module docstring); `gather_idx`
    int32 (T*k,) the token of each routing-ordered row, `inverse` (T*k,) the row of each
    (token, slot) pair t*k + j, `offs` int32 (E,) the experts' cumulative row ends.
    Differentiable w.r.t. x and w_gate_up; custom op `torch.ops.cudadent42.moe_up_swiglu`."""
    check_inputs(x, w_gate_up, gather_idx, inverse, offs, top_k)
    name = config.name if isinstance(config, MoeUpConfig) else (config or "")
    if name:
        resolve_config(x, w_gate_up, gather_idx, name)  # a wrong config is an error here, not inside the op
    return _moe_up_op(x, w_gate_up, gather_idx, inverse, offs, top_k, name)


def tuning_run(cfg: MoeUpConfig, case: dict):
    """run(config, case) of the moe-up family (families/moe_up.py): what sweeps and autotuning time."""
    return moe_up_swiglu(case["x"], case["w_gate_up"], case["gather_idx"], case["inverse"], case["offs"],
                         case["top_k"], config=cfg)
