"""A real training run with cudadent42's attention vs PyTorch SDPA.

A decoder-only transformer (default: 8 layers, d_model 1024, 16 heads with 4
KV heads, seqlen 2048, bf16 autocast, AdamW) is trained twice from the same
initial weights on the same token stream - once with cudadent42.nn's
attention, once with F.scaled_dot_product_attention - and the two loss
curves are printed step by step, written to JSON and plotted. Tokens/s of
each is measured under torch.compile.

The data is a fixed random Markov chain over the vocabulary (each token has
a few likely successors), so it is learnable and its entropy rate is a known
floor for the loss (printed).

    python benchmarks/train_gpt.py [--steps 300] [--out DIR]      # H100
    python benchmarks/train_gpt.py --tiny --impls sdpa            # CPU smoke
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from cudadent42.layers import MultiheadAttention  # noqa: E402
from cudadent42.nn_moe import MoE  # noqa: E402
from cudadent42.ops.moe import use_grouped_mm  # noqa: E402


class MarkovStream:
    """Token chains from a fixed random transition matrix with `fanout` likely successors per token."""

    def __init__(self, vocab: int, fanout: int, seed: int, device):
        g = torch.Generator().manual_seed(seed)
        probs = torch.zeros(vocab, vocab)
        for t in range(vocab):
            nxt = torch.randperm(vocab, generator=g)[:fanout]
            w = torch.rand(fanout, generator=g) ** 3 + 1e-3  # uneven: some successors dominate
            probs[t, nxt] = w / w.sum()
        self.probs = probs.to(device)
        self.vocab, self.device = vocab, device
        self.gen = torch.Generator(device=device).manual_seed(seed + 1)
        stationary = torch.full((vocab,), 1.0 / vocab)
        for _ in range(200):
            stationary = stationary @ probs
        ent = -(probs * torch.where(probs > 0, probs.log(), torch.zeros_like(probs))).sum(1)
        self.entropy_rate = float((stationary * ent).sum())  # nats/token: the loss floor
        self._key, self._pool = None, []  # (batch, seqlen) of the pre-sampled batches, and those left

    def batch(self, batch: int, seqlen: int) -> torch.Tensor:
        # Chains are sampled 64 batches at a time, in parallel: a chain is
        # sequential in its length, so sampling one batch per training step
        # would cost seqlen small kernel launches per step.
        key = (batch, seqlen)
        if self._key != key or not self._pool:
            self._key, self._pool = key, list(self._sample(64 * batch, seqlen + 1).split(batch))
        return self._pool.pop(0)

    def _sample(self, chains: int, length: int) -> torch.Tensor:
        cum = self.probs.cumsum(1)  # inverse-CDF sampling with one uniform per position
        u = torch.rand(chains, length, device=self.device, generator=self.gen)
        out = torch.empty(chains, length, dtype=torch.long, device=self.device)
        tok = torch.randint(self.vocab, (chains,), device=self.device, generator=self.gen)
        out[:, 0] = tok
        for t in range(1, length):
            tok = torch.searchsorted(cum[tok], u[:, t:t + 1]).squeeze(1).clamp_(max=self.vocab - 1)
            out[:, t] = tok
        return out


class Block(nn.Module):
    def __init__(self, d, heads, kv_heads, impl, moe=None):
        super().__init__()
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = MultiheadAttention(d, heads, kv_heads, causal=True, attn_impl=impl)
        hidden = int(8 * d / 3) // 64 * 64
        self.moe = None
        if moe:  # (experts, top_k): each expert 1/top_k of the dense width, so active FLOPs match
            experts, top_k = moe
            self.moe = MoE(d, max(64, hidden // top_k // 64 * 64), experts, top_k, aux_loss="switch")
            return
        self.up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        x = x + self.attn(self.n1(x))
        if self.moe is not None:
            out, aux = self.moe(self.n2(x))
            return x + out, aux
        a, b = self.up(self.n2(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(a) * b), None


class GPT(nn.Module):
    def __init__(self, vocab, d, layers, heads, kv_heads, impl, moe=None):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        nn.init.normal_(self.emb.weight, std=0.02)  # tied head: small logits at init (loss ~ log vocab)
        self.blocks = nn.ModuleList(Block(d, heads, kv_heads, impl, moe) for _ in range(layers))
        self.norm = nn.RMSNorm(d)

    def forward(self, idx):
        """Logits, and the mean MoE load-balancing loss over the layers (0 without --moe)."""
        x = self.emb(idx)
        aux = x.new_zeros((), dtype=torch.float32)
        for b in self.blocks:
            x, a = b(x)
            if a is not None:
                aux = aux + a / len(self.blocks)
        return self.norm(x) @ self.emb.weight.t(), aux  # tied head

    def set_impl(self, impl):
        for b in self.blocks:
            b.attn.attn_impl = impl


def train(impl, args, init_state, data_seed, device, log):
    torch.manual_seed(0)
    model = GPT(args.vocab, args.d_model, args.layers, args.heads, args.kv_heads, "sdpa", args.moe).to(device)
    model.load_state_dict(init_state)
    model.set_impl(impl)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1,
                            fused=device.type == "cuda")
    step_fn = torch.compile(model) if args.compile else model
    data = MarkovStream(args.vocab, args.fanout, data_seed, device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    # --moe: the "cudadent42" run's experts use cudadent42.grouped_gemm, the others torch._grouped_mm
    # (on the CPU the float32 reference: torch._grouped_mm's CPU path takes no autograd there)
    from contextlib import nullcontext
    from cudadent42.reference.grouped_gemm import grouped_mm_reference
    other = ((lambda a, b, offs: torch._grouped_mm(a, b, offs=offs)) if device.type == "cuda"
             else (lambda a, b, offs: grouped_mm_reference(a, b, offs, dtype=a.dtype)))
    def experts():  # a fresh context each step (generator-based contexts are single use)
        return nullcontext() if impl == "cudadent42" or not args.moe else use_grouped_mm(other)
    losses, times = [], []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for gr in opt.param_groups:
            gr["lr"] = lr
        batch = data.batch(args.batch, args.seqlen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with amp, experts():
            logits, aux = step_fn(batch[:, :-1])
            loss = F.cross_entropy(logits.float().view(-1, args.vocab), batch[:, 1:].reshape(-1))
        (loss + args.aux_coef * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        if step % args.log_every == 0 or step == args.steps - 1:
            log(f"[{impl}] step {step:4d} loss {losses[-1]:.4f} lr {lr:.2e} {times[-1] * 1e3:.0f} ms/step")
    steady = times[min(len(times) - 1, args.warmup_timing):]  # skip compile / warm-up steps
    tok_s = args.batch * args.seqlen / (sum(steady) / len(steady))
    return dict(losses=losses, step_seconds=times, tokens_per_s=tok_s, entropy_rate=data.entropy_rate)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--d-model", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--fanout", type=int, default=4)
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--warmup-timing", type=int, default=10, help="steps left out of tokens/s")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--impls", default="cudadent42,sdpa")
    p.add_argument("--tiny", action="store_true", help="2 layers, d 128, seqlen 128, 6 steps (smoke test)")
    p.add_argument("--moe", default=None, type=lambda s: tuple(int(v) for v in s.split(",")),
                   help="EXPERTS,TOP_K: every FFN becomes a cudadent42.nn.MoE (e.g. 64,8)")
    p.add_argument("--aux-coef", type=float, default=0.01, help="weight of the MoE load-balancing loss")
    p.add_argument("--out", default=None, help="write train_gpt.json and train_gpt.png here")
    args = p.parse_args()
    if args.tiny:
        args.layers, args.d_model, args.heads, args.kv_heads = 2, 128, 2, 1
        args.seqlen, args.batch, args.vocab, args.steps, args.warmup, args.warmup_timing = 128, 2, 64, 6, 2, 2
        args.log_every = 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    impls = args.impls.split(",")
    if "cudadent42" in impls:
        from cudadent42 import hopper_available

        if not hopper_available():
            print("no sm_90 GPU here: cudadent42 attention cannot run; use --impls sdpa for a smoke test")
            return 2
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; torch {torch.__version__}")
    torch.manual_seed(0)
    init_state = GPT(args.vocab, args.d_model, args.layers, args.heads, args.kv_heads, "sdpa", args.moe).state_dict()
    n_params = sum(v.numel() for v in init_state.values())
    print(f"model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads / {args.kv_heads} KV heads, "
          f"{n_params / 1e6:.1f}M parameters; seqlen {args.seqlen}, batch {args.batch}, {args.steps} steps")
    results = {impl: train(impl, args, init_state, 1234, device, print) for impl in impls}
    ent = next(iter(results.values()))["entropy_rate"]
    print(f"\nloss floor (Markov entropy rate): {ent:.4f} nats/token")
    print("step  " + "  ".join(f"{i:>11}" for i in impls) + ("   diff" if len(impls) == 2 else ""))
    for s in range(args.steps):
        vals = [results[i]["losses"][s] for i in impls]
        diff = f"  {vals[0] - vals[1]:+.4f}" if len(vals) == 2 else ""
        if s % args.log_every == 0 or s == args.steps - 1:
            print(f"{s:4d}  " + "  ".join(f"{v:>11.4f}" for v in vals) + diff)
    for i in impls:
        print(f"{i}: {results[i]['tokens_per_s']:,.0f} tokens/s (compile={args.compile})")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "train_gpt.json"), "w") as f:
            json.dump({"args": vars(args), "results": results}, f)
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(8, 5))
            for i in impls:
                ax.plot(results[i]["losses"], label=f"{i} ({results[i]['tokens_per_s']:,.0f} tok/s)")
            ax.axhline(ent, color="gray", ls="--", label="entropy floor")
            ax.set_xlabel("step")
            ax.set_ylabel("loss (nats/token)")
            ax.legend()
            ax.grid(True, alpha=0.3)
            fig.savefig(os.path.join(args.out, "train_gpt.png"), dpi=90)
        except ImportError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
