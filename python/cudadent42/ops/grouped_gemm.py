"""`cudadent42.grouped_gemm`: torch._grouped_mm semantics on the JIT-built CuTe kernel.

Forms (G groups; `offs` int32 (G,) cumulative ends of the cut dimension):
  2D x 3D  a (T, K),   b (G, K, N), offs over a's rows      -> (T, N)
  3D x 2D  a (G, M, K), b (K, T),   offs over b's columns   -> (M, T)
  2D x 2D  a (M, T),   b (T, N),    offs over the shared T  -> (G, M, N)
  3D x 3D  a (G, M, K), b (G, K, N), no offs                -> (G, M, N)
Each matrix may be row- or column-major (one unit stride among its last two
dims, the other stride and any batch stride multiples of 16 bytes), exactly
the layouts torch._grouped_mm takes. Rows (2D x 3D) or columns (3D x 2D) past
offs[-1] are left as allocated (uninitialized), as torch._grouped_mm leaves
them; gradients write zeros there. Group sizes never leave the device.
"""
from __future__ import annotations

import ctypes

import torch

from ..configs.base import ConfigError
from ..configs.grouped_gemm import GroupedGemmConfig
from ..configs.select import select
from ..runtime import check_rc, gpu_name, kernel_range, require_hopper, stream_handle

_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_FORMS = {(2, 3): "m", (3, 2): "n", (2, 2): "k", (3, 3): "none"}
_ARGTYPES = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 10 + [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_launchers: dict[GroupedGemmConfig, tuple] = {}


def _layout(t: torch.Tensor, name: str) -> tuple[bool, int]:
    """(row_major, leading stride) of the last two dims, torch._grouped_mm's rule."""
    rows, cols = t.shape[-2], t.shape[-1]
    s_rows, s_cols = t.stride(-2), t.stride(-1)
    if s_rows == 1 and s_cols >= max(1, rows):
        row_major, ld = False, s_cols
    elif s_cols == 1 and s_rows >= max(1, cols):
        row_major, ld = True, s_rows
    else:
        raise ValueError(f"grouped_gemm: {name} needs a unit stride in one of its last two dims (row- or "
                         f"column-major matrices); got shape {tuple(t.shape)} with strides {t.stride()}")
    if ld % 8:
        which = "row" if row_major else "column"
        raise ValueError(f"grouped_gemm: {name}'s {which} stride is {ld} elements; TMA needs a multiple of 8 "
                         f"(16 bytes): the contiguous dimension of {name} (size {cols if row_major else rows}) "
                         f"must be a multiple of 8 or padded to one")
    if t.dim() == 3 and t.shape[0] > 1 and t.stride(0) % 8:
        raise ValueError(f"grouped_gemm: {name}'s batch stride {t.stride(0)} must be a multiple of 8 elements")
    return row_major, ld


def check_inputs(a, b, offs, out_dtype=None) -> str:
    """Validates every argument; returns the form ("m", "n", "k" or "none")."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"grouped_gemm: {name} must be a torch.Tensor, got {type(t).__name__}")
    if a.dim() not in (2, 3) or b.dim() not in (2, 3):
        raise ValueError(f"grouped_gemm: a and b must be 2-D or 3-D, got a{tuple(a.shape)} and b{tuple(b.shape)}")
    form = _FORMS[(a.dim(), b.dim())]
    if a.dtype not in _DTYPES or b.dtype != a.dtype:
        raise TypeError(f"grouped_gemm: a and b must both be bfloat16 or float16, got {a.dtype} and {b.dtype}")
    if out_dtype is not None and out_dtype != a.dtype:
        raise TypeError(f"grouped_gemm: out_dtype must equal a's dtype ({a.dtype}), got {out_dtype}")
    if a.device != b.device:
        raise ValueError(f"grouped_gemm: a is on {a.device} but b is on {b.device}")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"grouped_gemm: contraction dims differ: a{tuple(a.shape)} and b{tuple(b.shape)}")
    if form == "none":
        if offs is not None:
            raise ValueError("grouped_gemm: offs must be None when a and b are both 3-D (batched)")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"grouped_gemm: batch sizes differ: a{tuple(a.shape)} and b{tuple(b.shape)}")
    else:
        if not isinstance(offs, torch.Tensor):
            raise TypeError("grouped_gemm: offs (int32 cumulative group ends) is required when a or b is 2-D")
        if offs.dtype != torch.int32 or offs.dim() != 1:
            raise TypeError(f"grouped_gemm: offs must be a 1-D int32 tensor, got {offs.dtype} with shape "
                            f"{tuple(offs.shape)}")
        if offs.device != a.device:
            raise ValueError(f"grouped_gemm: offs is on {offs.device} but a is on {a.device}")
        if offs.numel() == 0 and form != "k":
            raise ValueError("grouped_gemm: offs must hold at least one group")
        expect = {"m": b.shape[0], "n": a.shape[0]}.get(form)
        if expect is not None and offs.numel() != expect:
            which = "b.shape[0]" if form == "m" else "a.shape[0]"
            raise ValueError(f"grouped_gemm: offs has {offs.numel()} groups but {which} is {expect}")
    _layout(a, "a")
    _layout(b, "b")
    return form


def _dims(a, b, offs, form) -> tuple[int, int, int, int]:
    """(M, N, K, G) of the kernel's views: C is M x N, K the reduction extent."""
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    G = a.shape[0] if form == "none" else offs.numel()
    return M, N, K, G


def output_shape(a, b, offs, form):
    M, N, K, G = _dims(a, b, offs, form)
    return (M, N) if form in ("m", "n") else (G, M, N)


def new_output(a, b, offs, form) -> torch.Tensor:
    """torch._grouped_mm's allocation: last dim padded to 16 bytes, nothing written."""
    shape = output_shape(a, b, offs, form)
    padded = -(-shape[-1] // 8) * 8
    strides = (padded, 1) if len(shape) == 2 else (shape[1] * padded, padded, 1)
    return torch.empty_strided(shape, strides, dtype=a.dtype, device=a.device)


def resolve_config(a, b, offs, form, config) -> GroupedGemmConfig:
    a_major = "k" if _layout(a, "a")[0] else "m"
    b_major = "n" if _layout(b, "b")[0] else "k"
    dtype = _DTYPES[a.dtype]
    if config:
        cfg = config if isinstance(config, GroupedGemmConfig) else GroupedGemmConfig.from_name(config)
        want = (dtype, form, a_major, b_major)
        if (cfg.dtype, cfg.mode, cfg.a_major, cfg.b_major) != want:
            raise ConfigError(f"grouped_gemm: config {cfg.name} is for (dtype, mode, a_major, b_major) = "
                              f"{(cfg.dtype, cfg.mode, cfg.a_major, cfg.b_major)} but the inputs need {want}")
        return cfg.validate()
    M, N, K, G = _dims(a, b, offs, form)
    return select("grouped-gemm", gpu_name(a.device), sizes={}, run=tuning_run, dtype=dtype, mode=form,
                  a_major=a_major, b_major=b_major, M=M, N=N, K=K, G=G)


def _launcher(cfg: GroupedGemmConfig):
    hit = _launchers.get(cfg)
    if hit is None:
        from ..jit import load  # deferred: importing the package needs no toolchain

        kernel = load(cfg)
        hit = (kernel, kernel.fn("cd42_grouped_gemm_launch", ctypes.c_int, _ARGTYPES))
        _launchers[cfg] = hit
    return hit


def _batch_stride(t: torch.Tensor, ld: int, row_major: bool) -> int:
    # A 2-D operand (or a batch of one) has no real batch stride; TMA still
    # wants a positive multiple of 16 bytes there.
    if t.dim() == 3 and t.shape[0] > 1:
        return t.stride(0)
    rows_of_ld = t.shape[-2] if row_major else t.shape[-1]
    return max(ld * max(rows_of_ld, 1), 8)


def _restrided(t: torch.Tensor, row_major: bool) -> torch.Tensor:
    """A copy of `t` with the other dim of its last two contiguous (leading stride padded to 8)."""
    rows, cols = t.shape[-2], t.shape[-1]
    ld = -(-max(cols if row_major else rows, 1) // 8) * 8
    mat = (ld, 1) if row_major else (1, ld)
    strides = mat if t.dim() == 2 else ((rows if row_major else cols) * ld, *mat)
    out = torch.empty_strided(tuple(t.shape), strides, dtype=t.dtype, device=t.device)
    return out.copy_(t)


def ragged_strided(a, b, form):
    """(a, b) with the ragged dimension a strided one of each operand. The kernel's TMA boxes start
    at group offsets along the ragged dimension; where that dimension is an operand's contiguous
    one (2Dx3D with column-major a, 3Dx2D with row-major b, 2Dx2D with row-major a or
    column-major b) the ragged-M variant faulted on an H100 (illegal instruction), so such an
    operand is copied to the other layout first (one extra pass over it; the layouts autograd and
    MoE use never need it)."""
    a_row = _layout(a, "a")[0]
    b_row = _layout(b, "b")[0]
    if form == "m" and not a_row:
        a = _restrided(a, True)
    elif form == "n" and b_row:
        b = _restrided(b, False)
    elif form == "k":
        if a_row:
            a = _restrided(a, False)
        if not b_row:
            b = _restrided(b, True)
    return a, b


def grouped_gemm_out(a, b, offs, out, form, config=None, zero_tail=False) -> None:
    """Writes the grouped product into `out` (from new_output) without allocating."""
    M, N, K, G = _dims(a, b, offs, form)
    if out.numel() == 0:
        return
    if K == 0:
        out.zero_()  # empty reductions; rows past offs[-1] may be zeroed too (they are unspecified)
        return
    sms = require_hopper(a, "grouped_gemm")
    if form == "n":
        # 3Dx2D runs as its transpose, 2Dx3D: out^T (T, M) = b^T (T, K) @ a_g^T (K, M) per group. The
        # ragged-N kernel faulted (illegal instruction) on an H100 at G=8, so it is not used until
        # that is understood; the transposed result is copied into the row-major output.
        tmp = new_output(b.t(), a.transpose(-2, -1), offs, "m")
        grouped_gemm_out(b.t(), a.transpose(-2, -1), offs, tmp, "m", None, zero_tail)
        out.copy_(tmp.t())
        return
    a, b = ragged_strided(a, b, form)
    for name, t in (("a", a), ("b", b), ("out", out)):
        if t.data_ptr() % 16:
            raise ValueError(f"grouped_gemm: {name} needs a 16-byte aligned data pointer (storage offset "
                             f"{t.storage_offset()})")
    cfg = resolve_config(a, b, offs, form, config)
    a_row, lda = _layout(a, "a")
    b_row, ldb = _layout(b, "b")
    ldc = out.stride(-2)
    c_bs = out.stride(0) if out.dim() == 3 and out.shape[0] > 1 else max(ldc * max(M, 1), 8)
    kernel, launch = _launcher(cfg)
    if offs is not None and offs.stride(0) != 1:
        offs = offs.contiguous()  # the kernel reads offs[g] at offs_ptr + g (a strided view would be misread)
    with kernel_range(cfg.name):
        rc = launch(a.data_ptr(), b.data_ptr(), out.data_ptr(), 0 if offs is None else offs.data_ptr(),
                    M, N, K, G, lda, _batch_stride(a, lda, a_row), ldb, _batch_stride(b, ldb, b_row), ldc, c_bs,
                    int(zero_tail), sms, stream_handle(a.device))
    check_rc(rc, kernel, "grouped_gemm launch")


@torch.library.custom_op("cudadent42::grouped_gemm", mutates_args=())
def _grouped_gemm_op(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor | None = None, config: str = "",
                     zero_tail: bool = False) -> torch.Tensor:
    form = _FORMS[(a.dim(), b.dim())]
    out = new_output(a, b, offs, form)
    grouped_gemm_out(a, b, offs, out, form, config or None, zero_tail)
    return out


@_grouped_gemm_op.register_fake
def _(a, b, offs=None, config="", zero_tail=False):
    return new_output(a, b, offs, _FORMS[(a.dim(), b.dim())])


def _setup_context(ctx, inputs, output):
    a, b, offs, config, zero_tail = inputs
    ctx.save_for_backward(a, b, offs)


def _as_operand(t: torch.Tensor) -> torch.Tensor:
    """A gradient in a layout the kernel takes (autograd may hand any strides). Decided from
    strides and the storage offset only: under torch.compile this runs on fake tensors."""
    try:
        _layout(t, "grad")
        if t.storage_offset() * t.element_size() % 16 == 0:
            return t
    except ValueError:
        pass
    return t.contiguous()


def _backward(ctx, grad):
    a, b, offs = ctx.saved_tensors
    form = _FORMS[(a.dim(), b.dim())]
    g = _as_operand(grad)
    op = _grouped_gemm_op
    da = db = None
    need_a, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    # Each gradient is another form of the same grouped product; rows or
    # columns of a that no group reads get zeros (zero_tail), not garbage.
    if form == "m":      # a (T,K), b (G,K,N), out (T,N)
        da = op(g, b.transpose(-2, -1), offs, "", True) if need_a else None
        db = op(a.t(), g, offs) if need_b else None
    elif form == "n":    # a (G,M,K), b (K,T), out (M,T)
        da = op(g, b.t(), offs) if need_a else None
        db = op(a.transpose(-2, -1), g, offs, "", True) if need_b else None
    elif form == "k":    # a (M,T), b (T,N), out (G,M,N)
        da = op(g, b.t(), offs, "", True) if need_a else None
        db = op(a.t(), g, offs, "", True) if need_b else None
    else:                # batched
        da = op(g, b.transpose(-2, -1)) if need_a else None
        db = op(a.transpose(-2, -1), g) if need_b else None
    return da, db, None, None, None


_grouped_gemm_op.register_autograd(_backward, setup_context=_setup_context)


def grouped_gemm(a: torch.Tensor, b: torch.Tensor, offs: torch.Tensor | None = None, *, out_dtype=None,
                 config: str | GroupedGemmConfig | None = None) -> torch.Tensor:
    """torch._grouped_mm(a, b, offs) for bf16/fp16 on an sm_90 GPU (fp32 accumulation).

    Differentiable, usable under torch.compile(fullgraph=True) and in CUDA
    graphs (custom op `torch.ops.cudadent42.grouped_gemm`); never synchronises
    with the host (group sizes stay on the device). `config` (a
    GroupedGemmConfig or its name) overrides the default tile choice.
    """
    form = check_inputs(a, b, offs, out_dtype)
    name = config.name if isinstance(config, GroupedGemmConfig) else (config or "")
    if name and form == "n":
        raise ValueError("grouped_gemm: config= is not taken in the 3D x 2D form (it runs as the transposed "
                         "2D x 3D product with that form's own config)")
    if name:
        resolve_config(*ragged_strided(a, b, form), offs, form, name)  # a wrong config fails here, not in the op
    return _grouped_gemm_op(a, b, offs, name)


def tuning_run(cfg: GroupedGemmConfig, case: dict) -> torch.Tensor:
    """run(config, case) of the grouped-gemm family (families/grouped_gemm.py): what sweeps and autotuning time."""
    return grouped_gemm(case["a"], case["b"], case["offs"], config=cfg)
