"""`cudadent42.nn.MoE`: router + moe_route + moe_experts (+ shared expert), sync-free."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .ops.moe import moe_experts, moe_route


def switch_aux_loss(logits: torch.Tensor, counts: torch.Tensor, top_k: int) -> torch.Tensor:
    """Switch-transformer load balancing: E * sum_e f_e * P_e, f_e the fraction of the T*k
    assignments routed to e (no gradient), P_e the mean softmax probability of e. Minimum 1
    when balanced. Computed on the device from the routing counts (no host sync)."""
    T, E = logits.shape
    f = counts.float() / (T * top_k)
    p = logits.float().softmax(-1).mean(0)
    return E * (f * p).sum()


class MoE(nn.Module):
    """Mixture-of-experts FFN: (..., hidden) -> (..., hidden).

    Parameters: router (Linear hidden -> num_experts, no bias), w_gate_up (E, 2F, H) and
    w_down (E, H, F) in transformers' fused layout (see cudadent42.ops.moe), and, with
    shared_experts = n > 0, one always-on SwiGLU MLP of width n * ffn_hidden. score="sigmoid"
    adds the `expert_bias` buffer (selection only; DeepSeek-V3's auxiliary-loss-free balancing
    updates it outside the autograd graph). forward returns (out, aux_loss) when aux_loss is
    "switch" and out alone when aux_loss is None.
    """

    def __init__(self, hidden: int, ffn_hidden: int, num_experts: int, top_k: int, *, score: str = "softmax",
                 shared_experts: int = 0, aux_loss: str | None = "switch", n_group: int | None = None,
                 topk_group: int | None = None, activation: str = "swiglu", renormalize: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if aux_loss not in ("switch", None):
            raise ValueError(f"MoE: aux_loss must be 'switch' or None, got {aux_loss!r}")
        kw = dict(device=device, dtype=dtype)
        self.num_experts, self.top_k, self.score, self.aux_loss = num_experts, top_k, score, aux_loss
        self.n_group, self.topk_group, self.activation, self.renormalize = n_group, topk_group, activation, renormalize
        self.router = nn.Linear(hidden, num_experts, bias=False, **kw)
        self.w_gate_up = nn.Parameter(torch.empty(num_experts, 2 * ffn_hidden, hidden, **kw))
        self.w_down = nn.Parameter(torch.empty(num_experts, hidden, ffn_hidden, **kw))
        if score == "sigmoid":
            self.register_buffer("expert_bias", torch.zeros(num_experts, device=device, dtype=torch.float32))
        else:
            self.expert_bias = None
        self.shared = None
        if shared_experts:
            width = shared_experts * ffn_hidden
            self.shared = nn.ModuleDict({"gate_up": nn.Linear(hidden, 2 * width, bias=False, **kw),
                                         "down": nn.Linear(width, hidden, bias=False, **kw)})
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default (kaiming uniform, a=sqrt(5)) per expert: bound 1/sqrt(fan_in)
        nn.init.uniform_(self.w_gate_up, -1 / math.sqrt(self.w_gate_up.shape[2]), 1 / math.sqrt(self.w_gate_up.shape[2]))
        nn.init.uniform_(self.w_down, -1 / math.sqrt(self.w_down.shape[2]), 1 / math.sqrt(self.w_down.shape[2]))

    def forward(self, x: torch.Tensor):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        logits = self.router(x2)
        routing = moe_route(logits, self.top_k, score=self.score, renormalize=self.renormalize,
                            n_group=self.n_group, topk_group=self.topk_group, expert_bias=self.expert_bias)
        xe, w_gate_up, w_down = x2, self.w_gate_up, self.w_down
        if torch.is_autocast_enabled(x.device.type):  # the grouped GEMM op has no autocast rule of its own
            dt = torch.get_autocast_dtype(x.device.type)
            xe, w_gate_up, w_down = x2.to(dt), w_gate_up.to(dt), w_down.to(dt)
        out = moe_experts(xe, routing.weights, routing.ids, w_gate_up, w_down,
                          activation=self.activation, routing=routing)
        if self.shared is not None:
            gate, up = self.shared["gate_up"](x2).chunk(2, dim=-1)
            out = out + self.shared["down"](F.silu(gate) * up)
        out = out.reshape(shape)
        if self.aux_loss is None:
            return out
        return out, switch_aux_loss(logits, routing.counts, self.top_k)
