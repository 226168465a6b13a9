"""gen_lever_fixtures.py: PyTorch twins of Frugal's architecture levers (issue 15); writes
tests/fixtures/levers_<case>.bin with the config, inputs, weights, logits, loss and every
gradient, for tests/test_model_levers.c.

FFN sharing (src/model/share.c): groups of G consecutive layers of one kind (dense layers,
then MoE layers counted from n_dense_layers); each layer but a group's first derives each
FFN matrix (dense fc / proj; every routed expert's and the shared expert's fc / proj):
  seed:  W_l = a W_{l-1} + (1 - a) U_l V_l^T   (U [rows, r], V [cols, r]; a fixed or learned)
  plain: W_l = W_{l-1}                          (ALBERT)
The stored tensors are the model's table without the derived matrices, then per derived
layer U, V of each matrix and a (when learned). The model itself is the float64 twin of
tools/gen_moe_fixtures.py (model_forward), fed the derived weights.

Multi-token prediction (src/model/mtp.c), DeepSeek-V3: D modules after the last layer;
module k: h' = eh_k [norm_h(h^{k-1}) ; norm_e(wte[t_{i+k}])], h^k = block_k(h') (dense
FFN, RoPE in llama, no positions added in gpt2), logits = norm_f,k(h^k) @ head^T, target
t_{i+k+1}; inputs past the sequence are token 0, their targets ignored. h^0 = the last
layer's output before ln_f. Stored "loss" = next-token loss (+ aux), "mtp_loss" = mean of
the D module losses; gradients are of loss + lambda * mtp_loss. Tensors mtp.<k>.* last.

Run: python3 tools/gen_lever_fixtures.py   (from the repository root; deterministic)
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import write_fixture  # noqa: E402
import gen_model_fixtures as gm  # noqa: E402
import gen_moe_fixtures as gmoe  # noqa: E402

SHARE = {"none": 0, "plain": 1, "seed": 2}


def is_moe(c, l):
    return c["E"] > 0 and l >= c["D"]


def derived(c, l):
    if c["share"] == "none" or c["G"] < 2 or l < 1:
        return False
    if is_moe(c, l) != is_moe(c, l - 1):
        return False
    pos = l - c["D"] if is_moe(c, l) else l
    return pos % c["G"] != 0


def layer_mats(c, l):
    """(stem, n, rows, cols) of layer l's FFN matrices, in share.c's order."""
    C = c["C"]
    if not is_moe(c, l):
        fin = c["F"] if c["layout"] == gm.GPT2 else 2 * c["F"]
        return [("mlp.fc", 1, fin, C), ("mlp.proj", 1, C, c["F"])]
    E, H, SH = c["E"], c["H"], c["S"] * c["H"]
    m = [("moe.experts.fc", E, 2 * H, C), ("moe.experts.proj", E, C, H)]
    if SH > 0:
        m += [("moe.shared.fc", 1, 2 * SH, C), ("moe.shared.proj", 1, C, SH)]
    return m


def table(c):
    base = gmoe.model_tensors(c) if c["E"] > 0 else gm.tensor_table(c)
    drop = set()
    for l in range(c["L"]):
        if derived(c, l):
            drop |= {"h.%d.%s.weight" % (l, s) for s, _, _, _ in layer_mats(c, l)}
    t = [x for x in base if x[0] not in drop]
    if c["share"] == "seed":
        r = c["r"]
        for l in range(c["L"]):
            if not derived(c, l):
                continue
            for s, n, rows, cols in layer_mats(c, l):
                lead = (n,) if n > 1 else ()
                t.append(("h.%d.%s.share_u" % (l, s), lead + (rows, r), "u"))
                t.append(("h.%d.%s.share_v" % (l, s), lead + (cols, r), "u"))
            if c["learn"]:
                t.append(("h.%d.ffn.share_alpha" % l, (1,), "a"))
    return t


def effective(c, p):
    """The stored tensors plus the derived FFN matrices (autograd flows through)."""
    e = dict(p)
    for l in range(c["L"]):
        if not derived(c, l):
            continue
        a = p["h.%d.ffn.share_alpha" % l][0] if c["learn"] else c["alpha"]
        for s, _, _, _ in layer_mats(c, l):
            src = e["h.%d.%s.weight" % (l - 1, s)]
            if c["share"] == "plain":
                e["h.%d.%s.weight" % (l, s)] = src
            else:
                u, v = p["h.%d.%s.share_u" % (l, s)], p["h.%d.%s.share_v" % (l, s)]
                e["h.%d.%s.weight" % (l, s)] = a * src + (1 - a) * (u @ v.transpose(-1, -2))
    return e


def mtp_table(c):
    C, gpt2, fin = c["C"], c["layout"] == gm.GPT2, (c["F"] if c["layout"] == gm.GPT2 else 2 * c["F"])
    per = [("ln_h.weight", (C,), "n")] + ([("ln_h.bias", (C,), "b")] if gpt2 else [])
    per += [("ln_e.weight", (C,), "n")] + ([("ln_e.bias", (C,), "b")] if gpt2 else [])
    per += [("eh.weight", (C, 2 * C), "w")]
    for nm, shape, kind in [("ln_1.weight", (C,), "n"), ("ln_1.bias", (C,), "b"),
                            ("attn.qkv.weight", (3 * C, C), "w"), ("attn.qkv.bias", (3 * C,), "b"),
                            ("attn.proj.weight", (C, C), "w"), ("attn.proj.bias", (C,), "b"),
                            ("ln_2.weight", (C,), "n"), ("ln_2.bias", (C,), "b"),
                            ("mlp.fc.weight", (fin, C), "w"), ("mlp.fc.bias", (fin,), "b"),
                            ("mlp.proj.weight", (C, c["F"]), "w"), ("mlp.proj.bias", (C,), "b"),
                            ("ln_f.weight", (C,), "n"), ("ln_f.bias", (C,), "b")]:
        if kind != "b" or gpt2:
            per.append((nm, shape, kind))
    return [("mtp.%d.%s" % (k, nm), shape, kind) for k in range(c.get("mtp", 0)) for nm, shape, kind in per]


def norm(c, x, g, s):
    if c["layout"] == gm.GPT2:
        return F.layer_norm(x, (c["C"],), g(s + ".weight"), g(s + ".bias"), c["eps"])
    return gm.rmsnorm(x, g(s + ".weight"), c["eps"])


def dense_block(c, x, g):
    """One transformer block with a dense FFN (gen_moe_fixtures.model_forward's layer)."""
    B, T, C = x.shape
    NH = c["NH"]
    HS = C // NH
    gpt2 = c["layout"] == gm.GPT2
    h = norm(c, x, g, "ln_1")
    qkv = h @ g("attn.qkv.weight").T + (g("attn.qkv.bias") if gpt2 else 0)
    q, k, v = qkv.split(C, dim=-1)
    q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
    if not gpt2:
        q, k = gm.rope(q, c["theta"]), gm.rope(k, c["theta"])
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    y = y.transpose(1, 2).reshape(B, T, C) @ g("attn.proj.weight").T + (g("attn.proj.bias") if gpt2 else 0)
    x = x + y
    h = norm(c, x, g, "ln_2")
    if gpt2:
        f = F.gelu(h @ g("mlp.fc.weight").T + g("mlp.fc.bias"), approximate="tanh")
        return x + f @ g("mlp.proj.weight").T + g("mlp.proj.bias")
    gate, up = (h @ g("mlp.fc.weight").T).split(c["F"], dim=-1)
    return x + (F.silu(gate) * up) @ g("mlp.proj.weight").T


def mtp_loss(c, p, hidden, tgt):
    """Mean over the modules of their cross-entropy; hidden = the last layer's output."""
    B, T = tgt.shape
    V = c["V"]
    head = p["wte"] if c["tie"] else p["lm_head.weight"]
    h, losses = hidden, []
    for k in range(1, c["mtp"] + 1):
        g = lambda s: p["mtp.%d.%s" % (k - 1, s)]  # noqa: E731
        tok = torch.zeros(B, T, dtype=torch.long)
        tg = torch.full((B, T), -1, dtype=torch.long)
        for t in range(T):
            if t + k - 1 < T:
                tok[:, t] = tgt[:, t + k - 1].clamp(min=0)
            if t + k < T:
                tg[:, t] = tgt[:, t + k]
        x = torch.cat([norm(c, h, g, "ln_h"), norm(c, p["wte"][tok], g, "ln_e")], -1) @ g("eh.weight").T
        h = dense_block(c, x, g)
        logits = norm(c, h, g, "ln_f") @ head.T
        losses.append(F.cross_entropy(logits[..., :V].reshape(-1, V), tg.reshape(-1), ignore_index=-1))
    return sum(losses) / len(losses)


def make_share(name, c):
    g = torch.Generator().manual_seed(c["seed"])
    B, T, V = c["B"], c["T"], c["V"]
    idx = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.randint(0, V, (B, T), generator=g)
    tgt[0, 3] = -1
    tab = table(c) + mtp_table(c)
    w = {}
    for nm, shape, kind in tab:
        if kind == "frozen":
            w[nm] = np.zeros(shape, np.float32)
        elif kind == "n":
            w[nm] = (1.0 + 0.1 * torch.randn(shape, generator=g)).numpy().astype(np.float32)
        elif kind == "b":
            w[nm] = (0.05 * torch.randn(shape, generator=g)).numpy().astype(np.float32)
        elif kind == "a":
            w[nm] = np.array([c["alpha"]], np.float32)
        elif kind == "u":  # U V^T of std ~0.15 at rank r
            w[nm] = ((0.15 / np.sqrt(c["r"])) ** 0.5 * torch.randn(shape, generator=g)).numpy().astype(np.float32)
        else:
            std = 0.4 if "router" in nm else (0.15 if "moe" in nm else 0.1)
            w[nm] = (std * torch.randn(shape, generator=g)).numpy().astype(np.float32)
    bias = {}
    for l in range(c["L"]):
        if is_moe(c, l):
            w["h.%d.moe.router.bias" % l] = (0.1 * torch.randn(c["E"], generator=g)).numpy().astype(np.float32)
            bias[l] = torch.tensor(w["h.%d.moe.router.bias" % l], dtype=torch.float64)
    trainable = [nm for nm, _, kind in tab if kind != "frozen"]
    p = {k: torch.tensor(w[k], dtype=torch.float64, requires_grad=k in trainable) for k in w}
    # model_forward's "alpha" is the balance loss weight; its final norm's input is h^0
    seen = {}
    real_ln, real_rms = F.layer_norm, gm.rmsnorm

    def grab_ln(x, shape, w_, b_, eps):
        if w_ is p.get("ln_f.weight"):
            seen["h"] = x
        return real_ln(x, shape, w_, b_, eps)

    def grab_rms(x, w_, eps):
        if w_ is p.get("ln_f.weight"):
            seen["h"] = x
        return real_rms(x, w_, eps)
    F.layer_norm, gm.rmsnorm = grab_ln, grab_rms
    try:
        logits, loss, _ = gmoe.model_forward(dict(c, alpha=c["bal_alpha"]), effective(c, p), idx, tgt, bias)
    finally:
        F.layer_norm, gm.rmsnorm = real_ln, real_rms
    mloss = mtp_loss(c, p, seen["h"], tgt) if c.get("mtp", 0) else torch.zeros((), dtype=torch.float64)
    (loss + c.get("lam", 0.0) * mloss).backward()
    fx = {"config": np.array([c["layout"], V, c["Vp"], c["maxT"], c["L"], c["NH"], c["C"], c["F"], c["tie"], B, T,
                              c["D"], c["E"], c["K"], c["S"], c["H"], c["W"], gmoe.BALANCE[c["balance"]],
                              SHARE[c["share"]], c["G"], c["learn"], c["r"], c.get("mtp", 0)], dtype=np.int32),
          "config_f": np.array([c["route_scale"], c["bal_alpha"], c["gamma"], c["alpha"], c.get("lam", 0.0)],
                               dtype=np.float32),
          "mtp_loss": mloss.detach().float().reshape(1),
          "inputs": idx.int(), "targets": tgt.int(), "logits": logits.detach().float(),
          "loss": loss.detach().float().reshape(1)}
    for nm, _, _ in tab:
        fx["param." + nm] = w[nm]
        if nm in trainable:
            fx["grad." + nm] = p[nm].grad.float()
    path = os.path.join("tests", "fixtures", "levers_%s.bin" % name)
    write_fixture(path, fx)
    print("%s: loss %.6f, %d tensors, %d params, %d bytes" % (path, loss.item(), len(tab),
                                                              sum(int(np.prod(s)) for _, s, _ in tab),
                                                              os.path.getsize(path)))


def main():
    torch.manual_seed(0)
    dense = dict(V=70, Vp=128, maxT=16, NH=4, C=24, F=48, eps=1e-5, theta=10000.0, B=2, T=12, D=0, E=0, K=0,
                 S=0, H=0, W=1, balance="none", route_scale=1.0, bal_alpha=0.0, gamma=0.0)
    moe = dict(dense, L=3, D=1, E=6, K=2, S=1, H=12, W=3, balance="bias", route_scale=2.0, gamma=0.01)
    # dense: L layers, D = L (every layer dense)
    make_share("share_llama_seed", dict(dense, layout=gm.LLAMA, tie=0, L=4, D=4, share="seed", G=3, learn=1,
                                        alpha=0.6, r=3, seed=11))
    make_share("share_gpt2_seed", dict(dense, layout=gm.GPT2, tie=1, L=3, D=3, share="seed", G=2, learn=0,
                                       alpha=0.3, r=4, seed=12))
    make_share("share_gpt2_plain", dict(dense, layout=gm.GPT2, tie=1, L=3, D=3, share="plain", G=3, learn=0,
                                        alpha=1.0, r=1, seed=13))
    make_share("share_llama_moe_seed", dict(moe, layout=gm.LLAMA, tie=0, share="seed", G=2, learn=1, alpha=0.7,
                                            r=2, seed=14))
    make_share("share_gpt2_moe_plain", dict(moe, layout=gm.GPT2, tie=1, S=0, K=3, balance="seqaux",
                                            bal_alpha=0.1, share="plain", G=2, learn=0, alpha=1.0, r=1, seed=15))
    off = dict(share="none", G=2, learn=0, alpha=0.5, r=8)
    make_share("mtp_llama_d2", dict(dense, **off, layout=gm.LLAMA, tie=0, L=2, D=2, mtp=2, lam=0.5, seed=21))
    make_share("mtp_gpt2_d1", dict(dense, **off, layout=gm.GPT2, tie=1, L=2, D=2, mtp=1, lam=0.3, seed=22))
    make_share("mtp_llama_moe_d1", dict(moe, **off, layout=gm.LLAMA, tie=0, L=2, mtp=1, lam=0.3, seed=23))
    # every lever of this file at once: seed sharing and MTP (D=2) on a MoE gpt2 model
    make_share("all_gpt2_moe", dict(moe, layout=gm.GPT2, tie=1, L=3, S=0, K=3, balance="seqaux", bal_alpha=0.1,
                                    share="seed", G=2, learn=1, alpha=0.6, r=2, mtp=2, lam=0.3, seed=24))


if __name__ == "__main__":
    main()
