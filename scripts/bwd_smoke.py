"""First-contact check of the attention backward on a GPU: a few small cases,
one line each (max error of dq/dk/dv vs fp32 autograd and vs the bf16 PyTorch
error), printed as they finish so a hang or fault shows which case caused it.
Run under `timeout`; the pytest suite (tests/test_attention_bwd_gpu.py) is
the real check."""
import sys
import time

import torch

sys.path.insert(0, "tests")
from test_attention_bwd_gpu import ref_grads, rand  # noqa: E402

from cudadent42 import flash_attn_func  # noqa: E402
from cudadent42.ops.attention_bwd import attn_bwd  # noqa: E402

CASES = [  # (B, Sq, Sk, Hq, Hk, D, causal, window)
    (1, 128, 128, 1, 1, 64, False, (-1, -1)),
    (1, 128, 128, 1, 1, 128, False, (-1, -1)),
    (2, 300, 500, 4, 2, 128, True, (-1, -1)),
    (2, 257, 1030, 4, 2, 96, False, (100, 7)),
    (1, 1000, 1000, 2, 2, 64, True, (-1, -1)),
]
for B, sq, sk, hq, hk, d, causal, window in CASES:
    q, k, v = rand(B, sq, hq, d), rand(B, sk, hk, d), rand(B, sk, hk, d)
    out, lse = flash_attn_func(q, k, v, causal=causal, window_size=window, return_lse=True)
    dout = torch.randn_like(out)
    t = time.time()
    got = attn_bwd(dout, q, k, v, out, lse, causal=causal, window_size=window)
    torch.cuda.synchronize()
    dt = time.time() - t
    ref = ref_grads(q, k, v, dout, causal, window, upcast=True)
    lowp = ref_grads(q, k, v, dout, causal, window, upcast=False)
    parts = []
    for name, g, r, lp in zip(("dq", "dk", "dv"), got, ref, lowp):
        err = (g.float() - r).abs().max().item()
        base = (lp.float() - r).abs().max().item()
        parts.append(f"{name} {err:.2e}/{base:.2e}{'' if err <= 2 * base + 1e-5 else ' BAD'}"
                     f"{' NaN' if torch.isnan(g).any() else ''} |ref| {r.abs().max().item():.2e}")
    print(f"B{B} {sq}x{sk} h{hq}/{hk} d{d} causal={causal} win={window} ({dt:.2f}s): " + "; ".join(parts), flush=True)
print("smoke done")
