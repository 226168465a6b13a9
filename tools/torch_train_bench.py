"""torch_train_bench.py: the PyTorch peer of `frugal bench`: the same GPT-2-layout model
(LayerNorm, learned positions, tanh-GELU MLP, tied embeddings, Vp-padded head) on the CPU
with a fixed thread count, timed over whole training steps: forward, cross-entropy,
backward, global-norm clip, AdamW (weight decay on matrices only), zero_grad.
Settings (issue 11): eager fp32 (default), --compile (torch.compile of the model, loss
included; the warm-up steps absorb the compilation), --bf16 (torch.autocast on the CPU in
bfloat16: GEMMs in bf16, master weights and optimizer fp32), --fused (AdamW(fused=True),
one fused CPU kernel for the update). PyTorch's fastest CPU setting is all three.
Initialised as GPT-2 (and Frugal, src/model/model.c) are: weights N(0, 0.02), the two
residual projections N(0, 0.02/sqrt(2L)), biases 0, LayerNorms 1/0, the Vp-V padding
rows of the embedding 0, so the first loss is near ln(V) = 10.8 as in Frugal and llm.c
(PyTorch's own defaults, N(0,1) embeddings under a tied head, start at 144-198).

Usage: python3 tools/torch_train_bench.py --layers 12 --d-model 768 --heads 12 --B 4 --T 64
                                         [--compile] [--bf16] [--fused]
Prints one line: torch.train ... setting=S loss0=L ms_per_step=X tokens_per_s=Y (median of
--iters steps after --warmup ones; loss0 is the first step's loss).
"""
import argparse
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
        self.fc, self.fcproj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        self.NH = NH

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.NH, C // self.NH).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.fcproj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, L, C, NH, V, Vp, maxT):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(Vp, C), nn.Embedding(maxT, C)
        self.blocks = nn.ModuleList(Block(C, NH) for _ in range(L))
        self.lnf = nn.LayerNorm(C)
        self.init_gpt2(L, V)

    @torch.no_grad()
    def init_gpt2(self, L, V):
        resid_std = 0.02 / math.sqrt(2 * L)
        for name, mod in self.named_modules():
            if isinstance(mod, nn.Linear):
                is_resid = name.endswith(".proj") or name.endswith(".fcproj")
                nn.init.normal_(mod.weight, 0.0, resid_std if is_resid else 0.02)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Embedding):
                nn.init.normal_(mod.weight, 0.0, 0.02)
            elif isinstance(mod, nn.LayerNorm):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        self.wte.weight[V:].zero_()  # padding rows: never a token, never a logit that counts

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(T))
        for b in self.blocks:
            x = b(x)
        logits = self.lnf(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--B", type=int, default=4)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (default inductor backend)")
    ap.add_argument("--bf16", action="store_true", help="torch.autocast(cpu, bfloat16) around forward + loss")
    ap.add_argument("--fused", action="store_true", help="AdamW(fused=True)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    Vp = (a.vocab + 63) // 64 * 64
    m = GPT(a.layers, a.d_model, a.heads, a.vocab, Vp, max(a.T, 1024))
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    other = [p for n, p in m.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if a.fused else {}))
    step_model = torch.compile(m) if a.compile else m
    setting = "+".join(["compile" if a.compile else "eager", "bf16" if a.bf16 else "fp32"] +
                       (["fused"] if a.fused else []))
    idx = torch.randint(0, a.vocab, (a.B, a.T))
    tgt = torch.randint(0, a.vocab, (a.B, a.T))
    times = []
    loss0 = None
    for it in range(a.warmup + a.iters):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = step_model(idx, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        if loss0 is None:
            loss0 = loss.item()
        if it >= a.warmup:
            times.append(dt)
    med = statistics.median(times)
    nparams = sum(p.numel() for p in m.parameters())
    assert math.isfinite(loss.item())
    print("torch.train torch=%s threads=%d L=%d C=%d NH=%d Vp=%d B=%d T=%d params=%d setting=%s loss0=%.3f "
          "ms_per_step=%.1f tokens_per_s=%.1f" % (torch.__version__, a.threads, a.layers, a.d_model, a.heads, Vp, a.B,
                                                  a.T, nparams, setting, loss0, med * 1e3, a.B * a.T / med))


if __name__ == "__main__":
    main()
