"""Stock transformers MoE models (small random init) with experts_implementation="cudadent42"
against their eager experts, on the CPU with the float32 reference grouped GEMM injected.
Skipped where transformers is not installed (cudadent42 itself never needs it)."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from cudadent42.integrations.transformers import enable_experts  # noqa: E402
from cudadent42.ops.moe import use_grouped_mm  # noqa: E402
from cudadent42.reference.grouped_gemm import grouped_mm_reference  # noqa: E402

SMALL = dict(vocab_size=128, hidden_size=64, intermediate_size=32, moe_intermediate_size=32, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, num_local_experts=8, num_experts=8,
             num_experts_per_tok=2, head_dim=16)


def _model(name):
    if name == "gpt_oss":
        cfg = transformers.GptOssConfig(**{k: v for k, v in SMALL.items() if k != "moe_intermediate_size"},
                                        layer_types=["full_attention"] * 2)
        model = transformers.GptOssForCausalLM(cfg)
        for p in model.parameters():  # its init leaves expert weights zero
            torch.nn.init.normal_(p, std=0.05)
        return model
    cfg_cls, model_cls = {"mixtral": ("MixtralConfig", "MixtralForCausalLM"),
                          "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM"),
                          "olmoe": ("OlmoeConfig", "OlmoeForCausalLM")}[name]
    return getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**SMALL))


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe", "olmoe", "gpt_oss"])
def test_experts_match_eager(name):
    torch.manual_seed(0)
    model = _model(name).float()
    ids = torch.randint(0, 128, (2, 11))
    params = [p for p in model.parameters()]
    model.set_experts_implementation("eager")
    ref = model(ids).logits
    g_ref = torch.autograd.grad(ref.square().sum(), params, allow_unused=True)
    enable_experts(model)
    with use_grouped_mm(lambda a, b, offs: grouped_mm_reference(a, b, offs, dtype=a.dtype)):
        out = model(ids).logits
        grads = torch.autograd.grad(out.square().sum(), params, allow_unused=True)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    for a, b in zip(grads, g_ref):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
