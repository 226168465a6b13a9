"""gen_moe_fixtures.py: PyTorch twin of Frugal's MoE FFN block (src/model/moe.c); writes
tests/fixtures/moe/block_<case>.bin with inputs, weights, forward outputs and every gradient.

Routing, exactly as the C block: a = sigmoid(x W_r^T); top-K of a + bias (bias only in the
"bias" balance mode); gates = route_scale * a_k / sum of the K chosen a; out = shared(x) +
sum_k gate_k * expert_k(x); experts are SwiGLU with fused [gate|up] rows. Capacity: each
expert keeps its first cap = ceil(cf * n * K / E) tokens in token order. Aux losses:
seqaux (DeepSeek-V3 sequence-wise) and switch (softmax probs, batch-wise).
Loss whose gradients are stored: sum(out * dout) + aux.

Run: python3 tools/gen_moe_fixtures.py   (from the repository root; deterministic)
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import write_fixture  # noqa: E402

BALANCE = {"bias": 0, "none": 1, "seqaux": 2, "switch": 3}


def moe_block(x, w, cfg, B, T):
    """Returns out[n,C], aux (scalar tensor), topk[n,K], gates[n,K], pos-kept mask[n,K]."""
    E, K, H = cfg["E"], cfg["K"], cfg["H"]
    S = cfg["S"]
    n, C = x.shape
    logits = x @ w["router_w"].t()
    a = torch.sigmoid(logits)
    score = a + (w["router_bias"].to(a.dtype) if cfg["balance"] == "bias" else 0.0)
    top_score, topk = torch.topk(score.detach(), K, dim=-1, sorted=True)
    # selection must not sit on a near-tie, or float rounding could pick differently in C
    nxt = torch.topk(score.detach(), min(K + 1, E), dim=-1, sorted=True).values
    if K < E:
        margin = (nxt[:, K - 1] - nxt[:, K]).min().item()
        assert margin > 1e-4, "near tie in top-K selection: change the seed"
    a_sel = torch.gather(a, 1, topk)
    gates = cfg["route_scale"] * a_sel / a_sel.sum(-1, keepdim=True)

    # capacity: first cap pairs of each expert in token order
    kept = torch.ones(n, K, dtype=torch.bool)
    if cfg["cf"] > 0:
        cap = math.ceil(cfg["cf"] * n * K / E)
        seen = [0] * E
        for t in range(n):
            for k in range(K):
                e = int(topk[t, k])
                if seen[e] >= cap:
                    kept[t, k] = False
                seen[e] += 1

    out = x.new_zeros(n, C)
    if S > 0:
        SH = S * H
        hs = x @ w["shared_fc"].t()
        out = out + (F.silu(hs[:, :SH]) * hs[:, SH:]) @ w["shared_proj"].t()
    rows = []
    for t in range(n):
        acc = x.new_zeros(C)
        for k in range(K):
            if not kept[t, k]:
                continue
            e = int(topk[t, k])
            h = w["expert_fc"][e] @ x[t]
            act = F.silu(h[:H]) * h[H:]
            acc = acc + gates[t, k] * (w["expert_proj"][e] @ act)
        rows.append(acc)
    out = out + torch.stack(rows)

    aux = x.new_zeros(())
    counts = torch.zeros(E)
    for e in range(E):
        counts[e] = (topk == e).sum()
    if cfg["balance"] == "seqaux":
        tot = x.new_zeros(())
        for b in range(B):
            sl = slice(b * T, (b + 1) * T)
            cnt = torch.zeros(E)
            for e in range(E):
                cnt[e] = (topk[sl] == e).sum()
            f = (E / (K * T) * cnt).to(x.dtype)
            sp = a[sl] / a[sl].sum(-1, keepdim=True)
            tot = tot + cfg["alpha"] * (f * sp.mean(0)).sum()
        aux = tot / B
    elif cfg["balance"] == "switch":
        p = torch.softmax(logits, -1)
        f = (counts / (n * K)).to(x.dtype)
        aux = cfg["alpha"] * E * (f * p.mean(0)).sum()
    return out, aux, topk, gates, kept, counts


def make_case(name, seed, E=8, K=2, S=1, H=16, C=16, B=2, T=12, balance="bias", route_scale=2.5, alpha=0.0, cf=0.0):
    g = torch.Generator().manual_seed(seed)
    n = B * T
    cfg = dict(E=E, K=K, S=S, H=H, C=C, balance=balance, route_scale=route_scale, alpha=alpha, cf=cf)

    def rnd(*shape, std=1.0):
        return (torch.randn(*shape, generator=g) * std).requires_grad_(True)

    x = rnd(n, C)
    w = {
        "router_w": rnd(E, C, std=0.4),
        "router_bias": (torch.randn(E, generator=g) * 0.15),
        "expert_fc": rnd(E, 2 * H, C, std=0.3),
        "expert_proj": rnd(E, C, H, std=0.3),
    }
    if S > 0:
        w["shared_fc"] = rnd(2 * S * H, C, std=0.3)
        w["shared_proj"] = rnd(C, S * H, std=0.3)
    dout = torch.randn(n, C, generator=g)
    out, aux, topk, gates, kept, counts = moe_block(x, w, cfg, B, T)
    loss = (out * dout).sum() + aux
    loss.backward()
    t = {
        "cfg": torch.tensor([E, K, S, H, C, B, T, BALANCE[balance]], dtype=torch.int32),
        "cfg_f": torch.tensor([route_scale, alpha, cf]),
        "x": x,
        "dout": dout,
        "out": out,
        "aux": aux.reshape(1),
        "loss": loss.reshape(1),
        "topk": topk.to(torch.int32),
        "gates": gates,
        "kept": kept.to(torch.int32),
        "counts": counts,
        "dx": x.grad,
    }
    for k, v in w.items():
        t[k] = v
        if v.grad is not None:
            t["d_" + k] = v.grad
    path = os.path.join("tests", "fixtures", "moe", "block_%s.bin" % name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_fixture(path, t)
    print("%s: loss %.6f aux %.6f dropped %d counts %s" % (path, loss.item(), aux.item(), int((~kept).sum()),
                                                            counts.int().tolist()))


# ---- whole model: a tiny MoE transformer (layer 0 dense, layer 1 MoE), float64 ----

def model_tensors(c):
    """(name, shape, kind) in Frugal's flat order: model.c's dense table without the
    dense FFN of MoE layers, then moe_model.c's tensors per MoE layer."""
    import gen_model_fixtures as gm
    dense = [t for t in gm.tensor_table(c)
             if not (t[0].startswith("h.") and int(t[0].split(".")[1]) >= c["D"] and ".mlp." in t[0])]
    E, H, C, S, W = c["E"], c["H"], c["C"], c["S"], c["W"]
    moe = []
    for l in range(c["D"], c["L"]):
        moe += [("h.%d.moe.router.weight" % l, (E, C), "w"),
                ("h.%d.moe.router.bias" % l, (E,), "frozen"),
                ("h.%d.moe.experts.fc.weight" % l, (E, 2 * H, C), "w"),
                ("h.%d.moe.experts.proj.weight" % l, (E, C, H), "w")]
        if S > 0:
            moe += [("h.%d.moe.shared.fc.weight" % l, (2 * S * H, C), "w"),
                    ("h.%d.moe.shared.proj.weight" % l, (C, S * H), "w")]
        moe += [("h.%d.moe.load_hist" % l, (W, E), "frozen"), ("h.%d.moe.load_steps" % l, (1,), "frozen")]
    return dense + moe


def model_forward(c, p, idx, tgt, bias):
    """Returns (logits, loss incl. aux, routed counts per MoE layer)."""
    import gen_model_fixtures as gm
    B, T = idx.shape
    C, NH, L, V = c["C"], c["NH"], c["L"], c["V"]
    HS = C // NH
    gpt2 = c["layout"] == gm.GPT2
    x = p["wte"][idx]
    if gpt2:
        x = x + p["wpe"][:T]
    aux_total = x.new_zeros(())
    counts = []
    cfg = dict(E=c["E"], K=c["K"], S=c["S"], H=c["H"], C=C, balance=c["balance"], route_scale=c["route_scale"],
               alpha=c["alpha"], cf=0.0)
    for l in range(L):
        g = lambda s: p["h.%d.%s" % (l, s)]  # noqa: E731
        if gpt2:
            h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), c["eps"])
            qkv = h @ g("attn.qkv.weight").T + g("attn.qkv.bias")
        else:
            h = gm.rmsnorm(x, g("ln_1.weight"), c["eps"])
            qkv = h @ g("attn.qkv.weight").T
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
        if not gpt2:
            q, k = gm.rope(q, c["theta"]), gm.rope(k, c["theta"])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C) @ g("attn.proj.weight").T
        if gpt2:
            y = y + g("attn.proj.bias")
        x = x + y
        if gpt2:
            h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), c["eps"])
        else:
            h = gm.rmsnorm(x, g("ln_2.weight"), c["eps"])
        if l < c["D"]:
            if gpt2:
                f = F.gelu(h @ g("mlp.fc.weight").T + g("mlp.fc.bias"), approximate="tanh")
                x = x + f @ g("mlp.proj.weight").T + g("mlp.proj.bias")
            else:
                gate, up = (h @ g("mlp.fc.weight").T).split(c["F"], dim=-1)
                x = x + (F.silu(gate) * up) @ g("mlp.proj.weight").T
        else:
            w = {"router_w": g("moe.router.weight"), "router_bias": bias[l],
                 "expert_fc": g("moe.experts.fc.weight"), "expert_proj": g("moe.experts.proj.weight")}
            if c["S"] > 0:
                w["shared_fc"] = g("moe.shared.fc.weight")
                w["shared_proj"] = g("moe.shared.proj.weight")
            out, aux, _, _, _, cnt = moe_block(h.reshape(B * T, C), w, cfg, B, T)
            x = x + out.view(B, T, C)
            aux_total = aux_total + aux
            counts.append(cnt)
    if gpt2:
        x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], c["eps"])
    else:
        x = gm.rmsnorm(x, p["ln_f.weight"], c["eps"])
    head = p["wte"] if c["tie"] else p["lm_head.weight"]
    logits = x @ head.T
    loss = F.cross_entropy(logits[..., :V].reshape(-1, V), tgt.reshape(-1), ignore_index=-1)
    return logits, loss + aux_total, counts


def bias_update(bias, hist, steps, load, W, gamma):
    """fg_moe_balance_update in numpy (float32 state, as in the flat buffer)."""
    hist[steps % W] = load
    steps += 1
    valid = min(steps, W)
    tot = hist[:valid].sum(0)
    mean = tot.mean()
    bias += np.where(tot > mean, -gamma, np.where(tot < mean, gamma, 0.0)).astype(np.float32)
    return steps


def init_batch_and_weights(c):
    """The fixture's batch and weights, drawn in this order from one generator seeded by
    c["seed"] (the generator continues, for the draws a caller makes next)."""
    g = torch.Generator().manual_seed(c["seed"])
    B, T, V = c["B"], c["T"], c["V"]
    idx = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.randint(0, V, (B, T), generator=g)
    tgt[0, 3] = -1
    table = model_tensors(c)
    w = {}
    for nm, shape, kind in table:
        if kind == "frozen":
            w[nm] = np.zeros(shape, np.float32)
        elif kind == "n":
            w[nm] = (1.0 + 0.1 * torch.randn(shape, generator=g)).numpy().astype(np.float32)
        elif kind == "b":
            w[nm] = (0.05 * torch.randn(shape, generator=g)).numpy().astype(np.float32)
        else:
            std = 0.4 if "router" in nm else (0.15 if "moe" in nm else 0.1)
            w[nm] = (std * torch.randn(shape, generator=g)).numpy().astype(np.float32)
    return g, idx, tgt, table, w


def make_model(name, c):
    import gen_model_fixtures as gm
    g, idx, tgt, table, w = init_batch_and_weights(c)
    B, T, V = c["B"], c["T"], c["V"]
    L, D, E, W = c["L"], c["D"], c["E"], c["W"]
    for l in range(D, L):  # a nonzero starting bias, so selection != affinity order
        w["h.%d.moe.router.bias" % l] = (0.1 * torch.randn(E, generator=g)).numpy().astype(np.float32)
    bias = {l: w["h.%d.moe.router.bias" % l].copy() for l in range(D, L)}
    hist = {l: np.zeros((W, E), np.float32) for l in range(D, L)}
    steps = {l: 0 for l in range(D, L)}
    trainable = [nm for nm, _, kind in table if kind != "frozen"]
    p = {k: torch.tensor(w[k], dtype=torch.float64, requires_grad=k in trainable) for k in w}
    bt = {l: torch.tensor(bias[l], dtype=torch.float64) for l in bias}
    logits, loss, counts = model_forward(c, p, idx, tgt, bt)
    loss.backward()
    fx = {"config": np.array([c["layout"], V, c["Vp"], c["maxT"], L, c["NH"], c["C"], c["F"], c["tie"], B, T, D,
                              E, c["K"], c["S"], c["H"], W, BALANCE[c["balance"]]], dtype=np.int32),
          "config_f": np.array([c["route_scale"], c["alpha"], c["gamma"]], dtype=np.float32),
          "inputs": idx.int(), "targets": tgt.int(), "logits": logits.detach().float(),
          "loss": loss.detach().float().reshape(1)}
    for k in w:
        fx["param." + k] = w[k]
        if k in trainable:
            fx["grad." + k] = p[k].grad.float()
    # training trajectory: AdamW (no weight decay) on trainable tensors, then the bias rule
    q = {k: torch.tensor(w[k], dtype=torch.float64, requires_grad=k in trainable) for k in w}
    opt = torch.optim.AdamW([q[k] for k in trainable], lr=c["lr"], betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    traj = []
    for _ in range(c["steps"]):
        opt.zero_grad()
        bt = {l: torch.tensor(bias[l], dtype=torch.float64) for l in bias}
        _, l2, cnts = model_forward(c, q, idx, tgt, bt)
        traj.append(l2.item())
        l2.backward()
        opt.step()
        if c["balance"] == "bias":
            for i, l in enumerate(range(D, L)):
                steps[l] = bias_update(bias[l], hist[l], steps[l], cnts[i].numpy().astype(np.float32), W,
                                       np.float32(c["gamma"]))
    fx["train_losses"] = np.array(traj, dtype=np.float32)
    for l in bias:
        fx["final_bias.%d" % l] = bias[l]
    path = os.path.join("tests", "fixtures", "moe", "model_%s.bin" % name)
    write_fixture(path, fx)
    print("%s: loss %.6f, %d tensors, traj %.5f -> %.5f, final bias %s, %d bytes" % (
        path, loss.item(), len(w), traj[0], traj[-1], [np.round(b, 3).tolist() for b in bias.values()],
        os.path.getsize(path)))


def main():
    torch.manual_seed(0)
    make_case("bias", 1, balance="bias")
    make_case("none", 2, balance="none", S=0, route_scale=1.0)
    make_case("seqaux", 3, balance="seqaux", alpha=1.0, K=3, C=24)
    make_case("switch", 4, balance="switch", alpha=1.0, S=2)
    make_case("capacity", 5, balance="bias", cf=1.0)
    import gen_model_fixtures as gm
    base = dict(V=70, Vp=128, maxT=16, L=3, NH=4, C=24, F=48, eps=1e-5, theta=10000.0, B=2, T=12, D=1, E=8, K=2,
                S=1, H=12, W=3, route_scale=2.0, alpha=0.0, gamma=0.01, lr=3e-3, steps=8)
    make_model("llama", dict(base, layout=gm.LLAMA, tie=0, balance="bias", seed=7))
    make_model("gpt2", dict(base, layout=gm.GPT2, tie=1, balance="seqaux", alpha=0.1, S=0, K=3, seed=8))


if __name__ == "__main__":
    main()
