"""Every public entry point refuses bad input with a clear error, on CPU (issue 19).

One row per bad call: the call, the exception type, a fragment of the
message (which names the argument, what was given, what is accepted). The
checks run before anything needs CUDA, so CPU and meta tensors exercise
them; a valid call on CPU tensors ends in UnsupportedDeviceError (last rows
of each group), which shows the checks let it through.
"""
import pytest
import torch

import cudadent42
from cudadent42 import flash_attn_func as fa
from cudadent42 import flash_attn_varlen_func as fav
from cudadent42 import gemm
from cudadent42 import scaled_dot_product_attention as sdpa
from cudadent42.configs import AttnFwdConfig, ConfigError
from cudadent42.configs.attention_bwd import AttnBwdConfig
from cudadent42.layers import MultiheadAttention, RotaryEmbedding
from cudadent42.ops.attention_bwd import attn_bwd

NoGPU = cudadent42.UnsupportedDeviceError


def t(*shape, dtype=torch.bfloat16, device="cpu"):
    return torch.randn(*shape, dtype=dtype, device=device)


q = t(1, 16, 4, 64)
kv = t(1, 16, 2, 64)
x100 = t(1, 16, 4, 100)
p = t(16, 4, 64)  # packed varlen tensors
cu = torch.tensor([0, 10, 16], dtype=torch.int32)
lse = torch.zeros(1, 4, 16)
plse = torch.zeros(4, 16)
a = t(64, 64)
bt = t(64, 64).t()  # [K, N] view of a row-major [N, K] weight: K contiguous


def varlen(**kw):
    args = dict(cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=10, max_seqlen_k=10)
    args.update(kw)
    return fav(p, p, p, args.pop("cu_seqlens_q"), args.pop("cu_seqlens_k"), args.pop("max_seqlen_q"),
               args.pop("max_seqlen_k"), **args)


def bwd(**kw):
    args = dict(dout=q, q=q, k=q, v=q, out=q, lse=lse)
    args.update(kw)
    return attn_bwd(args.pop("dout"), args.pop("q"), args.pop("k"), args.pop("v"), args.pop("out"), args.pop("lse"),
                    **args)


ROWS = [
    # flash_attn_func: kinds, ranks, dtypes, devices
    ("fa-q-none", lambda: fa(None, q, q), TypeError, "flash_attn_func: q must be a torch.Tensor, got NoneType"),
    ("fa-k-list", lambda: fa(q, [1.0], q), TypeError, "k must be a torch.Tensor, got list"),
    ("fa-v-none", lambda: fa(q, q, None), TypeError, "v must be a torch.Tensor"),
    ("fa-rank", lambda: fa(q[0], q[0], q[0]), ValueError, "q must have 4 dims"),
    ("fa-float32", lambda: fa(q.float(), q.float(), q.float()), TypeError, "bfloat16 or float16, got torch.float32"),
    ("fa-mixed-dtypes", lambda: fa(q, q.half(), q), TypeError, "must share a dtype"),
    ("fa-devices", lambda: fa(q, q.to("meta"), q), ValueError, "q is on cpu but k is on meta"),
    # shapes: the head dim first (D=100 is not a stride problem)
    ("fa-head-dim-100", lambda: fa(x100, x100, x100), ValueError,
     "head dim 100 is not supported (supported: 64, 96, 128, 192, 256)"),
    ("fa-head-dims-differ", lambda: fa(q, t(1, 16, 4, 128), t(1, 16, 4, 128)), ValueError, "share the head dim"),
    ("fa-kv-shapes", lambda: fa(q, kv, q), ValueError, "k and v shapes differ"),
    ("fa-batch", lambda: fa(q, t(2, 16, 4, 64), t(2, 16, 4, 64)), ValueError, "batch sizes differ"),
    ("fa-heads", lambda: fa(t(1, 16, 6, 64), t(1, 16, 4, 64), t(1, 16, 4, 64)), ValueError, "multiple of key/value heads"),
    ("fa-last-dim", lambda: fa(*(t(1, 16, 4, 128)[..., ::2],) * 3), ValueError, "contiguous last dim"),
    ("fa-stride", lambda: fa(*(t(1, 16, 4, 68)[..., :64],) * 3), ValueError, "not a multiple of 8 elements"),
    # scalars
    ("fa-softcap-nan", lambda: fa(q, q, q, softcap=float("nan")), ValueError,
     "softcap must be a finite number >= 0, got nan"),
    ("fa-softcap-inf", lambda: fa(q, q, q, softcap=float("inf")), ValueError, "softcap must be a finite number"),
    ("fa-softcap-neg", lambda: fa(q, q, q, softcap=-1.0), ValueError, "softcap must be a finite number >= 0, got -1"),
    ("fa-softcap-str", lambda: fa(q, q, q, softcap="5"), TypeError, "softcap must be a real number, got str"),
    ("fa-scale-nan", lambda: fa(q, q, q, softmax_scale=float("nan")), ValueError, "softmax_scale must be a finite"),
    ("fa-scale-inf", lambda: fa(q, q, q, softmax_scale=float("inf")), ValueError, "softmax_scale must be a finite"),
    ("fa-scale-neg", lambda: fa(q, q, q, softmax_scale=-0.1), ValueError, "softmax_scale must be a finite"),
    ("fa-scale-tensor", lambda: fa(q, q, q, softmax_scale=torch.tensor(0.1)), TypeError,
     "softmax_scale must be a real number, got Tensor"),
    ("fa-window-int", lambda: fa(q, q, q, window_size=5), TypeError, "window_size must be a (left, right) pair"),
    ("fa-window-3", lambda: fa(q, q, q, window_size=(1, 2, 3)), TypeError, "window_size must be a (left, right)"),
    ("fa-window-none", lambda: fa(q, q, q, window_size=None), TypeError, "window_size must be a (left, right)"),
    ("fa-window-float", lambda: fa(q, q, q, window_size=(1.5, 0)), TypeError, "window_size left must be an int"),
    ("fa-causal-str", lambda: fa(q, q, q, causal="yes"), TypeError, "causal must be a bool, got str"),
    ("fa-causal-none", lambda: fa(q, q, q, causal=None), TypeError, "causal must be a bool"),
    ("fa-deterministic", lambda: fa(q, q, q, deterministic="no"), TypeError, "deterministic must be a bool"),
    ("fa-autotune", lambda: fa(q, q, q, autotune="on"), TypeError, "autotune must be a bool"),
    # config
    ("fa-config-int", lambda: fa(q, q, q, config=3), TypeError, "config must be None, a config name or a AttnFwdConfig"),
    ("fa-config-family", lambda: fa(q, q, q, config=AttnBwdConfig()), TypeError, "got AttnBwdConfig"),
    ("fa-config-name", lambda: fa(q, q, q, config="bogus"), ConfigError, "not an attention-forward config name"),
    ("fa-config-mismatch", lambda: fa(q, q, q, config=AttnFwdConfig(head_dim=128)), ValueError,
     "does not match the call"),
    ("fa-valid-on-cpu", lambda: fa(q, kv, kv, causal=True), NoGPU, "CUDA device"),
    # flash_attn_varlen_func
    ("fav-cu-none", lambda: varlen(cu_seqlens_q=None), TypeError, "cu_seqlens_q and cu_seqlens_k must be int32 tensors"),
    ("fav-cu-list", lambda: varlen(cu_seqlens_k=[0, 10, 16]), TypeError, "cu_seqlens_k must be a torch.Tensor"),
    ("fav-cu-int64", lambda: varlen(cu_seqlens_q=cu.long()), ValueError,
     "cu_seqlens_q must be a contiguous 1-D int32 tensor on cpu; got dtype torch.int64"),
    ("fav-cu-2d", lambda: varlen(cu_seqlens_q=cu[None]), ValueError, "batch + 1 >= 1 entries; got shape (1, 3)"),
    ("fav-cu-empty", lambda: varlen(cu_seqlens_q=cu[:0], cu_seqlens_k=cu[:0]), ValueError, "batch + 1 >= 1 entries"),
    ("fav-cu-device", lambda: varlen(cu_seqlens_k=cu.to("meta")), ValueError, "got device meta"),
    ("fav-cu-strided", lambda: varlen(cu_seqlens_q=torch.zeros(6, dtype=torch.int32)[::2]), ValueError,
     "got stride 2"),
    ("fav-cu-lengths", lambda: varlen(cu_seqlens_k=cu[:2]), ValueError, "same length (batch + 1), got 3 and 2"),
    ("fav-max-neg", lambda: varlen(max_seqlen_q=-1), ValueError, "max_seqlen_q must be >= 0, got -1"),
    ("fav-max-float", lambda: varlen(max_seqlen_k=10.0), TypeError, "max_seqlen_k must be an int, got float"),
    ("fav-max-huge", lambda: varlen(max_seqlen_k=1 << 40), ValueError, "max_seqlen_k must be <= 2147483647"),
    ("fav-rank", lambda: fav(q, q, q, cu, cu, 10, 10), ValueError, "q must have 3 dims"),
    ("fav-softcap-nan", lambda: varlen(softcap=float("nan")), ValueError, "softcap must be a finite number"),
    ("fav-valid-on-cpu", lambda: varlen(causal=True), NoGPU, "CUDA device"),
    # scaled_dot_product_attention
    ("sdpa-query-none", lambda: sdpa(None, q, q), TypeError,
     "scaled_dot_product_attention: query must be a torch.Tensor, got NoneType"),
    ("sdpa-rank", lambda: sdpa(q[0], q[0], q[0]), ValueError, "query must have 4 dims"),
    ("sdpa-attn-mask", lambda: sdpa(q, q, q, attn_mask=torch.ones(16, 16)), NotImplementedError, "attn_mask"),
    ("sdpa-dropout", lambda: sdpa(q, q, q, dropout_p=0.1), NotImplementedError, "dropout is not supported"),
    ("sdpa-dropout-str", lambda: sdpa(q, q, q, dropout_p="0.1"), TypeError, "dropout_p must be a number"),
    ("sdpa-gqa", lambda: sdpa(q, t(1, 2, 16, 64), t(1, 2, 16, 64)), ValueError, "needs enable_gqa=True"),
    ("sdpa-scale-nan", lambda: sdpa(q, q, q, scale=float("nan")), ValueError, "scale must be a finite number >= 0"),
    ("sdpa-causal-str", lambda: sdpa(q, q, q, is_causal="yes"), TypeError, "is_causal must be a bool"),
    ("sdpa-head-dim", lambda: sdpa(*(t(1, 4, 16, 100),) * 3), ValueError, "head dim 100 is not supported"),
    ("sdpa-valid-on-cpu", lambda: sdpa(q, q, q, is_causal=True), NoGPU, "CUDA device"),
    # attn_bwd
    ("bwd-scale-nan", lambda: bwd(softmax_scale=float("nan")), ValueError,
     "attn_bwd: softmax_scale must be a finite number >= 0, got nan"),
    ("bwd-scale-inf", lambda: bwd(softmax_scale=float("inf")), ValueError, "softmax_scale must be a finite number"),
    ("bwd-scale-neg", lambda: bwd(softmax_scale=-1.0), ValueError, "softmax_scale must be a finite number"),
    ("bwd-softcap-nan", lambda: bwd(softcap=float("nan")), ValueError, "softcap must be a finite number"),
    ("bwd-dout-none", lambda: bwd(dout=None), TypeError, "dout must be a torch.Tensor"),
    ("bwd-q-none", lambda: bwd(q=None), TypeError, "q must be a torch.Tensor"),
    ("bwd-lse-none", lambda: bwd(lse=None), TypeError, "lse must be a torch.Tensor"),
    ("bwd-lse-shape", lambda: bwd(lse=lse[:, :, :8]), ValueError, "lse must be float32 of shape (1, 4, 16)"),
    ("bwd-lse-dtype", lambda: bwd(lse=lse.bfloat16()), ValueError, "got torch.bfloat16"),
    ("bwd-out-shape", lambda: bwd(dout=q[:, :8]), ValueError, "must match q"),
    ("bwd-dout-strides", lambda: bwd(dout=t(1, 16, 4, 128)[..., ::2]), ValueError, "dout must have a contiguous last dim"),
    ("bwd-varlen-partial", lambda: bwd(cu_seqlens_q=cu), ValueError, "varlen needs all of"),
    ("bwd-cu-int64", lambda: bwd(dout=p, q=p, k=p, v=p, out=p, lse=plse, cu_seqlens_q=cu.long(), cu_seqlens_k=cu,
                                 max_seqlen_q=10, max_seqlen_k=10), ValueError, "cu_seqlens_q must be a contiguous 1-D int32"),
    ("bwd-max-neg", lambda: bwd(dout=p, q=p, k=p, v=p, out=p, lse=plse, cu_seqlens_q=cu, cu_seqlens_k=cu,
                                max_seqlen_q=-3, max_seqlen_k=10), ValueError, "max_seqlen_q must be >= 0"),
    ("bwd-head-dim-100", lambda: bwd(dout=x100, q=x100, k=x100, v=x100, out=x100), ValueError,
     "head dim 100 is not supported"),
    ("bwd-window", lambda: bwd(window_size="left"), TypeError, "window_size must be a (left, right) pair"),
    ("bwd-deterministic", lambda: bwd(deterministic=None), TypeError, "deterministic must be a bool"),
    ("bwd-config-int", lambda: bwd(config=7), TypeError, "config must be None, a config name or a AttnBwdConfig"),
    ("bwd-valid-on-cpu", lambda: bwd(causal=True), NoGPU, "CUDA device"),
    ("bwd-varlen-valid-on-cpu", lambda: bwd(dout=p, q=p, k=p, v=p, out=p, lse=plse, cu_seqlens_q=cu, cu_seqlens_k=cu,
                                            max_seqlen_q=10, max_seqlen_k=10), NoGPU, "CUDA device"),
    # gemm
    ("gemm-a-none", lambda: gemm(None, a), TypeError, "gemm: a must be a torch.Tensor, got NoneType"),
    ("gemm-b-none", lambda: gemm(a, None), TypeError, "gemm: b must be a torch.Tensor"),
    ("gemm-rank", lambda: gemm(a[0], a), ValueError, "a must have 2 dims"),
    ("gemm-dtype", lambda: gemm(a.float(), a.float()), TypeError, "bfloat16 or float16, got torch.float32"),
    ("gemm-mixed-dtypes", lambda: gemm(a, a.half()), TypeError, "must share a dtype"),
    ("gemm-devices", lambda: gemm(a, a.to("meta")), ValueError, "a is on cpu but b is on meta"),
    ("gemm-inner", lambda: gemm(a, t(32, 64)), ValueError, "inner dimensions differ"),
    ("gemm-k-multiple", lambda: gemm(t(64, 60), t(60, 64)), ValueError, "multiples of 8"),
    ("gemm-a-col-major", lambda: gemm(t(64, 64).t(), a), ValueError, "a must be row-major"),
    ("gemm-b-layout", lambda: gemm(a, t(64, 128)[:, ::2]), ValueError, "one contiguous dimension"),
    ("gemm-config-int", lambda: gemm(a, bt, config=5), TypeError, "config must be None, a config name or a GemmConfig"),
    ("gemm-config-name", lambda: gemm(a, bt, config="bogus"), ConfigError, "bogus"),
    ("gemm-autotune", lambda: gemm(a, bt, autotune="yes"), TypeError, "autotune must be a bool"),
    ("gemm-valid-on-cpu", lambda: gemm(a, bt), NoGPU, "CUDA device"),
    # layers / nn
    ("mha-d-model", lambda: MultiheadAttention(0, 4), ValueError, "d_model must be >= 1, got 0"),
    ("mha-n-heads-str", lambda: MultiheadAttention(256, "4"), TypeError, "n_heads must be an int, got str"),
    ("mha-n-kv-heads-0", lambda: MultiheadAttention(256, 4, 0), ValueError, "n_kv_heads must be >= 1"),
    ("mha-n-kv-heads", lambda: MultiheadAttention(256, 4, 3), ValueError, "not a multiple of n_kv_heads=3"),
    ("mha-head-dim", lambda: MultiheadAttention(400, 4), ValueError, "head dim 100 (d_model / n_heads) is not supported"),
    ("mha-impl", lambda: MultiheadAttention(256, 4, attn_impl="flash"), ValueError, "attn_impl must be"),
    ("mha-window", lambda: MultiheadAttention(256, 4, window_size=5), TypeError, "window_size must be a (left, right)"),
    ("mha-causal", lambda: MultiheadAttention(256, 4, causal=None), TypeError, "causal must be a bool"),
    ("mha-rope-base", lambda: MultiheadAttention(256, 4, rope_base=float("nan")), ValueError,
     "rope_base must be a finite number"),
    ("mha-sdpa-window", lambda: MultiheadAttention(256, 4, attn_impl="sdpa", window_size=(8, 0)), ValueError,
     "no window_size"),
    ("rope-odd", lambda: RotaryEmbedding(63), ValueError, "even head dim"),
    ("rope-zero", lambda: RotaryEmbedding(0), ValueError, "head_dim must be >= 2"),
    ("rope-base-neg", lambda: RotaryEmbedding(64, base=-1.0), ValueError, "base must be a finite number >= 0"),
    ("rope-base-zero", lambda: RotaryEmbedding(64, base=0), ValueError, "base must be > 0"),
    ("rope-base-str", lambda: RotaryEmbedding(64, base="1e4"), TypeError, "base must be a real number"),
    # the custom ops themselves (what torch.compile calls)
    ("op-fwd-mask", lambda: torch.ops.cudadent42.attn_fwd(q, q, q, None, None, 16, 16, 0.125, 1 << 30, 0, 0.0,
                                                         "bogus", ""), ValueError, "mask must be one of"),
    ("op-fwd-scale", lambda: torch.ops.cudadent42.attn_fwd(q, q, q, None, None, 16, 16, float("nan"), 1 << 30, 0,
                                                          0.0, "causal", ""), ValueError, "softmax_scale must be"),
    ("op-bwd-scale", lambda: torch.ops.cudadent42.attn_bwd(q, q, q, q, q, lse, None, None, 16, 16, float("inf"),
                                                          1 << 30, 0, 0.0, "causal"), ValueError, "softmax_scale must be"),
]


@pytest.mark.parametrize("call,exc,fragment", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_bad_call_is_refused_clearly(call, exc, fragment):
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"{type(info.value).__name__}: {info.value}"


def test_meta_tensors_give_output_shapes_without_a_gpu():
    """Shape inference on the meta device (model init, tracing tools) goes through the op's fake impl."""
    m = t(2, 16, 4, 64, device="meta")
    out, lse = fa(m, m, m, causal=True, return_lse=True)
    assert out.device.type == "meta" and out.shape == m.shape and lse.shape == (2, 4, 16)
