"""The FlashAttention tolerance rule (GUIDE.md section 5)."""
import torch


def assert_close_to_ref(out: torch.Tensor, ref: torch.Tensor, lowp_ref: torch.Tensor, what: str = "output"):
    """max|out - ref| <= 2 * max|lowp_ref - ref| + 1e-5, with ref in fp32.

    `lowp_ref` is the plain PyTorch computation in the low precision: the
    kernel may be at most twice as far from the fp32 truth as PyTorch is.
    """
    assert not torch.isnan(out).any(), f"{what}: NaN in output (unwritten or invalid elements)"
    err = (out.float() - ref).abs().max().item()
    base = (lowp_ref.float() - ref).abs().max().item()
    assert err <= 2 * base + 1e-5, f"{what}: max abs error {err:.3e} > 2 * {base:.3e} + 1e-5"
