"""cost_torch.py: PyTorch's row of bench/cost.sh: trains the baseline model of the cost
benchmark (GPT-2 layout, the model of tools/torch_train_bench.py, fp32 eager) on the same
byte-tokenised text, split and schedule as `frugal train --tokenizer byte`, until its
validation loss reaches the target, and prints the CPU-seconds it took.

Same as Frugal: the last val_frac of the bytes (cut moved to the next line break) is the
validation text, read as consecutive windows of T from its start (val_batches x B x T
tokens); training windows of T+1 at uniform random starts; AdamW (betas 0.9/0.95, eps
1e-8, weight decay on matrices only), global-norm clip, warmup + cosine to min_lr over
max_steps (src/optim/optim.c fg_lr_at); validation at step 0, every val_every steps and at
the end. Different: the random stream (so the windows drawn), the initial weights' draw.
CPU-seconds: time.process_time() (user + system of every thread of the process) from the
first step to the validation that reached the target, validations included, model
building and data loading excluded.

Usage: python3 tools/cost_torch.py --data FILE --target 2.1 --layers 2 --d-model 64 --heads 2
         --B 8 --T 64 --lr 3e-3 --min-lr 3e-4 --warmup 20 --max-steps 300 --val-every 25
         --val-batches 8 --threads 2
Prints one line: torch.cost reached=0|1 step=S cpu_s=X wall_s=Y val=V best_val=B tokens=N
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train_bench import GPT  # noqa: E402  (the same model as the training-speed peer)


def lr_at(step, lr, min_lr, warmup, total):
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    decay = total - 1 - warmup
    if decay <= 0:
        return lr
    if step >= total - 1:
        return min_lr
    frac = (step - warmup) / decay
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * frac)) * (lr - min_lr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--target", type=float, required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--B", type=int, default=8)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--max-steps", type=int, default=300)
    ap.add_argument("--val-every", type=int, default=25)
    ap.add_argument("--val-batches", type=int, default=8)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    raw = open(a.data, "rb").read()
    cut = int(len(raw) * (1.0 - a.val_frac))
    nl = raw.find(b"\n", cut)
    if nl >= 0 and nl + 1 < len(raw):
        cut = nl + 1
    train = torch.from_numpy(np.frombuffer(raw[:cut], dtype=np.uint8).astype(np.int64))
    val = torch.from_numpy(np.frombuffer(raw[cut:], dtype=np.uint8).astype(np.int64))
    V = 257  # Frugal's byte tokenizer: 256 bytes + <|endoftext|>
    Vp = (V + 63) // 64 * 64
    m = GPT(a.layers, a.d_model, a.heads, V, Vp, a.T)
    decay = [p for n, p in m.named_parameters() if p.dim() >= 2 and "wte" not in n and "wpe" not in n]
    other = [p for n, p in m.named_parameters() if not (p.dim() >= 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": other, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    B, T = a.B, a.T
    # validation: consecutive windows from the start, as Frugal's sequential val loader
    n_val = a.val_batches * B
    starts = [(i * T) % (len(val) - T - 1) for i in range(n_val)]
    vx = torch.stack([val[s:s + T] for s in starts])
    vy = torch.stack([val[s + 1:s + T + 1] for s in starts])

    @torch.no_grad()
    def evaluate():
        m.eval()
        tot = 0.0
        for k in range(a.val_batches):
            tot += m(vx[k * B:(k + 1) * B], vy[k * B:(k + 1) * B]).item()
        m.train()
        return tot / a.val_batches

    g = torch.Generator().manual_seed(a.seed ^ 0x5EED)
    c0, w0 = time.process_time(), time.perf_counter()
    best = float("inf")
    reached, step, v = 0, 0, float("nan")
    for step in range(a.max_steps + 1):
        if step % a.val_every == 0 or step == a.max_steps:
            v = evaluate()
            best = min(best, v)
            if v <= a.target:
                reached = 1
                break
        if step == a.max_steps:
            break
        ix = torch.randint(0, len(train) - T - 1, (B,), generator=g)
        x = torch.stack([train[i:i + T] for i in ix.tolist()])
        y = torch.stack([train[i + 1:i + T + 1] for i in ix.tolist()])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, a.lr, a.min_lr, a.warmup, a.max_steps)
        loss = m(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), a.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    print("torch.cost torch=%s threads=%d reached=%d step=%d cpu_s=%.2f wall_s=%.2f val=%.4f best_val=%.4f "
          "target=%.4f tokens=%d" % (torch.__version__, a.threads, reached, step, cpu, wall, v, best, a.target,
                                     step * B * T))


if __name__ == "__main__":
    main()
