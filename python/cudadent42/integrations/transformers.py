"""cudadent42 inside transformers 5.x models: `register()` adds "cudadent42" to transformers'
AttentionInterface (with a FlashAttention-style mask: None unless there is padding) and to its
ExpertsInterface, after which

    model.set_attn_implementation("cudadent42")
    model.set_experts_implementation("cudadent42")   # see enable_experts for transformers 5.0

switch a stock model over. Only this module imports transformers.

Experts contract (transformers/integrations/moe.py): forward(self, hidden_states (T, H),
top_k_index (T, k), top_k_weights (T, k) or (T, E)) on a module holding gate_up_proj and
down_proj (E, 2F, H) / (E, H, F), or (E, H, 2F) / (E, F, H) when self.is_transposed, and
gate_up_proj_bias / down_proj_bias when self.has_bias. Gating: SwiGLU with
config.hidden_act == "silu" through the default _apply_gate, or gpt-oss's clamped,
interleaved SwiGLU (modules with `alpha` 1.702 and `limit` 7). Ids >= E are dropped.
"""
from __future__ import annotations

import torch

from ..ops.attention import flash_attn_func
from ..ops.moe import moe_experts

NAME = "cudadent42"


def _activation(module) -> str:
    if hasattr(module, "alpha") and hasattr(module, "limit"):
        if (module.alpha, module.limit) != (1.702, 7.0):
            raise NotImplementedError(f"cudadent42 experts: clamped SwiGLU with alpha={module.alpha}, "
                                      f"limit={module.limit}; only gpt-oss's 1.702 / 7.0 is implemented")
        return "gpt_oss"
    if not getattr(module, "has_gate", True) or not getattr(module, "is_concatenated", True):
        raise NotImplementedError(f"cudadent42 experts: {type(module).__name__} has no fused gate_up_proj "
                                  f"(has_gate / is_concatenated false); use experts_implementation='grouped_mm'")
    gate_fn = getattr(type(module), "_apply_gate", None)
    default_gate = getattr(gate_fn, "__name__", "") == "_default_apply_gate"  # transformers' chunk(2) + act
    act = getattr(module.config, "hidden_act", "silu")
    if not default_gate or act not in ("silu", "swish"):
        raise NotImplementedError(f"cudadent42 experts: gating of {type(module).__name__} (hidden_act={act!r}) "
                                  f"is not SwiGLU; use experts_implementation='grouped_mm'")
    return "swiglu"


def experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                    top_k_weights: torch.Tensor) -> torch.Tensor:
    """ExpertsInterface entry: transformers' grouped_mm_experts_forward on cudadent42's MoE layer."""
    num_experts = self.gate_up_proj.shape[0]
    T, k = top_k_index.shape
    if top_k_weights.shape == (T, num_experts) and k != num_experts:  # DeepseekV2-style full distribution
        top_k_weights = top_k_weights.gather(1, top_k_index.long().clamp(0, num_experts - 1))
    has_bias = getattr(self, "has_bias", False)
    out = moe_experts(hidden_states, top_k_weights, top_k_index, self.gate_up_proj, self.down_proj,
                      activation=_activation(self), is_transposed=getattr(self, "is_transposed", False),
                      gate_up_bias=self.gate_up_proj_bias if has_bias else None,
                      down_bias=self.down_proj_bias if has_bias else None)
    return out.to(hidden_states.dtype)


def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, **kwargs):
    """AttentionInterface entry: query (B, Hq, S, D), key/value (B, Hkv, S, D) -> ((B, S, Hq, D), None)."""
    if attention_mask is not None:
        raise NotImplementedError("cudadent42 attention: padded batches (a 2-D attention mask) are not supported "
                                  "yet; pass unpadded sequences")
    if dropout:
        raise NotImplementedError("cudadent42 attention: attention dropout is not supported")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    window = kwargs.get("sliding_window")
    out = flash_attn_func(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), causal=causal,
                          softmax_scale=scaling, window_size=(window - 1, 0) if window else (-1, -1),
                          softcap=kwargs.get("softcap") or 0.0)
    return out, None


def register() -> None:
    """Adds "cudadent42" to transformers' attention, mask and experts interfaces (idempotent)."""
    from transformers import AttentionInterface
    from transformers.integrations.moe import ExpertsInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask

    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    ExpertsInterface.register(NAME, experts_forward)


def enable_experts(model) -> None:
    """model.set_experts_implementation("cudadent42"), after register(). transformers 5.0's
    get_correct_experts_implementation accepts only its own names; there the config flag that
    its experts' forward reads is set directly on every sub-config."""
    register()
    try:
        model.set_experts_implementation(NAME)
    except ValueError:
        for module in model.modules():
            config = getattr(module, "config", None)
            if config is not None and hasattr(config, "_experts_implementation_internal"):
                config._experts_implementation_internal = NAME
