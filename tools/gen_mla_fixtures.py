"""gen_mla_fixtures.py: PyTorch twin of Frugal's multi-head latent attention (src/model/mla.c)
in whole tiny models, llama and gpt2 layouts, dense and MoE; writes tests/fixtures/mla_<case>.bin
for tests/test_model_mla.c.

MLA as DeepSeek-V2/V3 (per layer, h the normed layer input):
  q = W_UQ norm_q(W_DQ h)  (or W_Q h when mla_q_rank = 0), per head [q_nope (HS) | q_rope (R)]
  c = norm_kv(W_DKV h) (the latent: what the KV cache keeps), [k_nope_h | v_h] = W_UKV c per head
  k_rope = RoPE(W_KR h), one per token, shared by the heads; k_h = [k_nope_h | k_rope]
  softmax(q_h . k_h / sqrt(HS + R)) causal, times v_h; heads concatenated, then the output
  projection. gpt2 layout: no RoPE part (R = 0; learned positions stay), the latents' norms
  are LayerNorms (weight and bias), the MLA projections carry no bias. With mla_latent_norm
  off (norm = 0, Frugal's default) there are no latent norms: norm_q, norm_kv are the identity
  and the ln_q / ln_kv tensors do not exist.
Weights are not stored: both sides hash the flat parameter index (tools/gen_model_fixtures.py
weights_from_hash; tests/model_util.h); MoE router state (frozen) is zero on both sides.
The twin runs in float64; fixtures hold fp32 logits, the loss and every gradient.

Run: /work/peers/venv/bin/python tools/gen_mla_fixtures.py   (from the repository root)
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


def mla_types(c):
    """The per-layer MLA tensor types that replace attn.qkv.* in model.c's param_types."""
    C, NH, r, rq, R = c["C"], c["NH"], c["r"], c["rq"], c["R"]
    gpt2 = c["layout"] == gm.GPT2
    D = C // NH + R
    nrm = c["norm"]
    t = []
    if rq > 0:
        t.append(("attn.q_a.weight", (rq, C), "w"))
        if nrm:
            t.append(("attn.ln_q.weight", (rq,), "n"))
        if nrm and gpt2:
            t.append(("attn.ln_q.bias", (rq,), "b"))
        t.append(("attn.q_b.weight", (NH * D, rq), "w"))
    else:
        t.append(("attn.q.weight", (NH * D, C), "w"))
    t.append(("attn.kv_a.weight", (r, C), "w"))
    if R > 0:
        t.append(("attn.k_rope.weight", (R, C), "w"))
    if nrm:
        t.append(("attn.ln_kv.weight", (r,), "n"))
    if nrm and gpt2:
        t.append(("attn.ln_kv.bias", (r,), "b"))
    t.append(("attn.kv_b.weight", (2 * C, r), "w"))
    return t


def tensor_table(c):
    """Frugal's flat order: the dense (or MoE) table with the attn.qkv groups (grouped by
    type across layers) replaced by the MLA groups, each across layers."""
    base = gmoe.model_tensors(c) if c["E"] > 0 else gm.tensor_table(c)
    out, done = [], False
    for name, shape, kind in base:
        if ".attn.qkv." in name:
            if not done:
                for suffix, sh, k in mla_types(c):
                    for l in range(c["L"]):
                        out.append(("h.%d.%s" % (l, suffix), sh, k))
                done = True
            continue
        out.append((name, shape, kind))
    return out


def weights(c):
    """name -> float32 array, as fg_test_hash_weights (plus frozen MoE state zeroed)."""
    out, off = {}, 0
    for name, shape, kind in tensor_table(c):
        n = int(np.prod(shape))
        u = gm.hash_u(np.arange(off, off + n, dtype=np.uint64), c["seed"])
        if kind == "frozen":
            w = np.zeros(n, np.float32)
        elif name.endswith("bias"):
            w = u * np.float32(0.05)
        elif "ln_" in name and name.endswith("weight"):
            w = np.float32(1.0) + u * np.float32(0.1)
        else:
            w = u * np.float32(0.1)
        out[name] = w.astype(np.float32).reshape(shape)
        off += n
    return out


def norm(x, p, prefix, c):
    if prefix.endswith(("ln_q", "ln_kv")) and not c["norm"]:
        return x
    if c["layout"] == gm.GPT2:
        return F.layer_norm(x, (x.shape[-1],), p[prefix + ".weight"], p[prefix + ".bias"], c["eps"])
    return gm.rmsnorm(x, p[prefix + ".weight"], c["eps"])


def mla_attention(h, p, l, c):
    """h [B,T,C] normed input -> [B,T,C] before the output projection."""
    B, T, C = h.shape
    NH, r, rq, R = c["NH"], c["r"], c["rq"], c["R"]
    HS = C // NH
    D = HS + R
    pre = "h.%d.attn." % l
    if rq > 0:
        q = norm(h @ p[pre + "q_a.weight"].T, p, pre + "ln_q", c) @ p[pre + "q_b.weight"].T
    else:
        q = h @ p[pre + "q.weight"].T
    q = q.view(B, T, NH, D).transpose(1, 2)
    cn = norm(h @ p[pre + "kv_a.weight"].T, p, pre + "ln_kv", c)
    kv = (cn @ p[pre + "kv_b.weight"].T).view(B, T, NH, 2 * HS).transpose(1, 2)
    k, v = kv[..., :HS], kv[..., HS:]
    if R > 0:
        q = torch.cat([q[..., :HS], gm.rope(q[..., HS:], c["theta"])], -1)
        kr = gm.rope((h @ p[pre + "k_rope.weight"].T).view(B, 1, T, R), c["theta"])
        k = torch.cat([k, kr.expand(B, NH, T, R)], -1)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # scale 1/sqrt(D)
    return y.transpose(1, 2).reshape(B, T, C)


def forward(c, p, idx, tgt):
    B, T = idx.shape
    C, L, V = c["C"], c["L"], c["V"]
    gpt2 = c["layout"] == gm.GPT2
    x = p["wte"][idx]
    if gpt2:
        x = x + p["wpe"][:T]
    for l in range(L):
        g = lambda s: p["h.%d.%s" % (l, s)]  # noqa: E731
        h = norm(x, p, "h.%d.ln_1" % l, c)
        y = mla_attention(h, p, l, c) @ g("attn.proj.weight").T
        if gpt2:
            y = y + g("attn.proj.bias")
        x = x + y
        h = norm(x, p, "h.%d.ln_2" % l, c)
        if c["E"] == 0 or l < c["D"]:
            if gpt2:
                f = F.gelu(h @ g("mlp.fc.weight").T + g("mlp.fc.bias"), approximate="tanh")
                x = x + f @ g("mlp.proj.weight").T + g("mlp.proj.bias")
            else:
                gate, up = (h @ g("mlp.fc.weight").T).split(c["F"], dim=-1)
                x = x + (F.silu(gate) * up) @ g("mlp.proj.weight").T
        else:
            w = {"router_w": g("moe.router.weight"), "router_bias": torch.zeros(c["E"], dtype=torch.float64),
                 "expert_fc": g("moe.experts.fc.weight"), "expert_proj": g("moe.experts.proj.weight")}
            if c["S"] > 0:
                w["shared_fc"] = g("moe.shared.fc.weight")
                w["shared_proj"] = g("moe.shared.proj.weight")
            mc = dict(E=c["E"], K=c["K"], S=c["S"], H=c["H"], C=C, balance="bias", route_scale=c["route_scale"],
                      alpha=0.0, cf=0.0)
            out = gmoe.moe_block(h.reshape(B * T, C), w, mc, B, T)[0]
            x = x + out.view(B, T, C)
    x = norm(x, p, "ln_f", c)
    head = p["wte"] if c["tie"] else p["lm_head.weight"]
    logits = x @ head.T
    loss = F.cross_entropy(logits[..., :V].reshape(-1, V), tgt.reshape(-1), ignore_index=-1)
    return logits, loss


def make(name, c):
    g = torch.Generator().manual_seed(c["seed"])
    B, T, V = c["B"], c["T"], c["V"]
    idx = torch.randint(0, V, (B, T), generator=g)
    tgt = torch.randint(0, V, (B, T), generator=g)
    tgt[0, 3] = -1
    table = tensor_table(c)
    w = weights(c)
    trainable = [nm for nm, _, kind in table if kind != "frozen"]
    p = {k: torch.tensor(w[k], dtype=torch.float64, requires_grad=k in trainable) for k in w}
    logits, loss = forward(c, p, idx, tgt)
    loss.backward()
    fx = {"config": np.array([c["layout"], V, c["Vp"], c["maxT"], c["L"], c["NH"], c["C"], c["F"], c["tie"], B, T,
                              c["seed"], c["r"], c["rq"], c["R"], c["D"], c["E"], c["K"], c["S"], c["H"], c["norm"]],
                             dtype=np.int32),
          "config_f": np.array([c["route_scale"]], dtype=np.float32),
          "names": np.array([len(table)], dtype=np.int32),
          "inputs": idx.int(), "targets": tgt.int(), "logits": logits.detach().float(),
          "loss": loss.detach().float().reshape(1)}
    for k in trainable:
        fx["grad." + k] = p[k].grad.float()
    path = os.path.join("tests", "fixtures", "mla_%s.bin" % name)
    write_fixture(path, fx)
    print("%s: loss %.6f, %d tensors, %d bytes" % (path, loss.item(), len(table), os.path.getsize(path)))


def main():
    torch.manual_seed(0)
    base = dict(V=50, Vp=64, maxT=16, L=2, NH=4, C=24, F=32, eps=1e-5, theta=10000.0, B=2, T=12, D=0, E=0, K=0,
                S=0, H=0, W=1, route_scale=1.0, norm=1)
    moe = dict(D=1, E=4, K=2, S=1, H=8, route_scale=2.0)
    # llama: q latent and a rope key; gpt2: full-rank query, no rope part (R = 0)
    make("llama", dict(base, layout=gm.LLAMA, tie=0, r=12, rq=16, R=4, seed=21))
    make("gpt2", dict(base, layout=gm.GPT2, tie=1, r=12, rq=0, R=0, seed=22))
    # MoE: the other query form in each layout
    make("llama_moe", dict(base, layout=gm.LLAMA, tie=0, r=8, rq=0, R=2, seed=23, **moe))
    make("gpt2_moe", dict(base, layout=gm.GPT2, tie=1, r=8, rq=12, R=0, seed=24, **moe))
    # without the latent norms (mla_latent_norm = 0): both query forms across the layouts
    make("llama_nonorm", dict(base, layout=gm.LLAMA, tie=0, r=12, rq=16, R=4, seed=25, norm=0))
    make("gpt2_nonorm", dict(base, layout=gm.GPT2, tie=1, r=12, rq=12, R=0, seed=26, norm=0))


if __name__ == "__main__":
    main()
