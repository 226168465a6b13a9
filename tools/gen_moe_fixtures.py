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
    score = a + (w["router_bias"] if cfg["balance"] == "bias" else 0.0)
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

    out = torch.zeros(n, C)
    if S > 0:
        SH = S * H
        hs = x @ w["shared_fc"].t()
        out = out + (F.silu(hs[:, :SH]) * hs[:, SH:]) @ w["shared_proj"].t()
    rows = []
    for t in range(n):
        acc = torch.zeros(C)
        for k in range(K):
            if not kept[t, k]:
                continue
            e = int(topk[t, k])
            h = w["expert_fc"][e] @ x[t]
            act = F.silu(h[:H]) * h[H:]
            acc = acc + gates[t, k] * (w["expert_proj"][e] @ act)
        rows.append(acc)
    out = out + torch.stack(rows)

    aux = torch.zeros(())
    counts = torch.zeros(E)
    for e in range(E):
        counts[e] = (topk == e).sum()
    if cfg["balance"] == "seqaux":
        tot = torch.zeros(())
        for b in range(B):
            sl = slice(b * T, (b + 1) * T)
            cnt = torch.zeros(E)
            for e in range(E):
                cnt[e] = (topk[sl] == e).sum()
            f = E / (K * T) * cnt
            sp = a[sl] / a[sl].sum(-1, keepdim=True)
            tot = tot + cfg["alpha"] * (f * sp.mean(0)).sum()
        aux = tot / B
    elif cfg["balance"] == "switch":
        p = torch.softmax(logits, -1)
        f = counts / (n * K)
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


def main():
    torch.manual_seed(0)
    make_case("bias", 1, balance="bias")
    make_case("none", 2, balance="none", S=0, route_scale=1.0)
    make_case("seqaux", 3, balance="seqaux", alpha=1.0, K=3, C=24)
    make_case("switch", 4, balance="switch", alpha=1.0, S=2)
    make_case("capacity", 5, balance="bias", cf=1.0)


if __name__ == "__main__":
    main()
