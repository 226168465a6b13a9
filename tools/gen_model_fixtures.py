"""gen_model_fixtures.py: PyTorch twin of Frugal's dense model (llama and gpt2 layouts)
that writes tests/fixtures/model/*.bin for tests/test_model.c.

Weights are not stored: both sides generate them from the same integer hash of the
flat parameter index (weights_from_hash below, model_test_weights in the C test), so
the fixture also pins Frugal's parameter order (llm.c's order for gpt2). The twin runs
in float64 (a better oracle than fp32 PyTorch); fixtures hold fp32 values of the
logits, the mean loss, every parameter's gradient and a 10-step AdamW loss trajectory.
The twin is also checked against transformers' GPT2LMHeadModel / LlamaForCausalLM
when transformers is installed.

Run: python3 tools/gen_model_fixtures.py   (from the repository root)
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import write_fixture  # noqa: E402

LLAMA, GPT2 = 0, 1

# Tiny configs: V not a multiple of 64 (so Vp > V has padding rows), T < maxT for gpt2
# (only the first T rows of wpe are used), an ignored (-1) target in each batch.
CONFIGS = {
    "gpt2": dict(layout=GPT2, V=70, Vp=128, maxT=16, L=2, NH=4, C=32, F=128, eps=1e-5, theta=10000.0, tie=1,
                 B=2, T=12, seed=1),
    "llama": dict(layout=LLAMA, V=93, Vp=128, maxT=16, L=2, NH=4, C=32, F=64, eps=1e-5, theta=10000.0, tie=0,
                  B=2, T=16, seed=2),
}


def tensor_table(c):
    """Frugal's parameter tensors in flat-buffer order: (name, shape, kind).
    kind: 'w' matrix/embedding, 'b' bias, 'n' norm weight. Mirrors build_tensor_table in
    src/model/model.c: grouped by type across layers (llm.c's order for gpt2)."""
    V, Vp, maxT, L, C, Fh = c["V"], c["Vp"], c["maxT"], c["L"], c["C"], c["F"]
    gpt2 = c["layout"] == GPT2
    t = [("wte", (Vp, C), "w")]
    if gpt2:
        t.append(("wpe", (maxT, C), "w"))
    per_layer = [("ln_1.weight", (C,), "n")]
    if gpt2:
        per_layer.append(("ln_1.bias", (C,), "b"))
    per_layer.append(("attn.qkv.weight", (3 * C, C), "w"))
    if gpt2:
        per_layer.append(("attn.qkv.bias", (3 * C,), "b"))
    per_layer.append(("attn.proj.weight", (C, C), "w"))
    if gpt2:
        per_layer.append(("attn.proj.bias", (C,), "b"))
    per_layer.append(("ln_2.weight", (C,), "n"))
    if gpt2:
        per_layer.append(("ln_2.bias", (C,), "b"))
    fc_rows = Fh if gpt2 else 2 * Fh
    per_layer.append(("mlp.fc.weight", (fc_rows, C), "w"))
    if gpt2:
        per_layer.append(("mlp.fc.bias", (fc_rows,), "b"))
    per_layer.append(("mlp.proj.weight", (C, Fh), "w"))
    if gpt2:
        per_layer.append(("mlp.proj.bias", (C,), "b"))
    for suffix, shape, kind in per_layer:
        for l in range(L):
            t.append(("h.%d.%s" % (l, suffix), shape, kind))
    t.append(("ln_f.weight", (C,), "n"))
    if gpt2:
        t.append(("ln_f.bias", (C,), "b"))
    if not c["tie"]:
        t.append(("lm_head.weight", (Vp, C), "w"))
    return t


M64 = (1 << 64) - 1


def hash_u(idx, seed):
    """Uniform values in [-1, 1] from a splitmix64 hash of (flat index, seed); exactly
    reproducible in C: k = hash % 20001, u = ((float)k - 10000.0f) / 10000.0f."""
    z = (idx.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) & M64)).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    k = (z % np.uint64(20001)).astype(np.float32)
    return (k - np.float32(10000.0)) / np.float32(10000.0)


def weights_from_hash(c):
    """name -> float32 array. Matrices 0.1 u, biases 0.05 u, norm weights 1 + 0.1 u."""
    out, off = {}, 0
    for name, shape, kind in tensor_table(c):
        n = int(np.prod(shape))
        u = hash_u(np.arange(off, off + n, dtype=np.uint64), c["seed"])
        if kind == "w":
            w = u * np.float32(0.1)
        elif kind == "b":
            w = u * np.float32(0.05)
        else:
            w = np.float32(1.0) + u * np.float32(0.1)
        out[name] = w.astype(np.float32).reshape(shape)
        off += n
    return out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, theta):
    """x [B,NH,T,HS], HF rotate_half convention, positions 0..T-1."""
    HS, T = x.shape[-1], x.shape[-2]
    inv = theta ** (-torch.arange(0, HS // 2, dtype=torch.float64) * 2.0 / HS)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def forward(c, p, idx, tgt):
    """Returns (logits [B,T,Vp], mean loss over targets >= 0)."""
    B, T = idx.shape
    C, NH, L, V = c["C"], c["NH"], c["L"], c["V"]
    HS = C // NH
    gpt2 = c["layout"] == GPT2
    x = p["wte"][idx]
    if gpt2:
        x = x + p["wpe"][:T]
    for l in range(L):
        g = lambda s: p["h.%d.%s" % (l, s)]  # noqa: E731
        if gpt2:
            h = F.layer_norm(x, (C,), g("ln_1.weight"), g("ln_1.bias"), c["eps"])
            qkv = h @ g("attn.qkv.weight").T + g("attn.qkv.bias")
        else:
            h = rmsnorm(x, g("ln_1.weight"), c["eps"])
            qkv = h @ g("attn.qkv.weight").T
        q, k, v = qkv.split(C, dim=-1)
        q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
        if not gpt2:
            q, k = rope(q, c["theta"]), rope(k, c["theta"])
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).reshape(B, T, C)
        y = y @ g("attn.proj.weight").T
        if gpt2:
            y = y + g("attn.proj.bias")
        x = x + y
        if gpt2:
            h = F.layer_norm(x, (C,), g("ln_2.weight"), g("ln_2.bias"), c["eps"])
            f = F.gelu(h @ g("mlp.fc.weight").T + g("mlp.fc.bias"), approximate="tanh")
            x = x + f @ g("mlp.proj.weight").T + g("mlp.proj.bias")
        else:
            h = rmsnorm(x, g("ln_2.weight"), c["eps"])
            gu = h @ g("mlp.fc.weight").T
            gate, up = gu.split(c["F"], dim=-1)
            x = x + (F.silu(gate) * up) @ g("mlp.proj.weight").T
    if gpt2:
        x = F.layer_norm(x, (C,), p["ln_f.weight"], p["ln_f.bias"], c["eps"])
    else:
        x = rmsnorm(x, p["ln_f.weight"], c["eps"])
    head = p["wte"] if c["tie"] else p["lm_head.weight"]
    logits = x @ head.T
    loss = F.cross_entropy(logits[..., :V].reshape(-1, V), tgt.reshape(-1), ignore_index=-1)
    return logits, loss


def hf_crosscheck(c, w, idx, tgt, logits, grads):
    """For gpt2: the same weights in transformers' GPT2LMHeadModel (float64, eager
    attention) must give the twin's logits and gradients. Skipped if not installed."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        print("transformers not installed: no GPT2LMHeadModel cross-check")
        return
    hc = GPT2Config(vocab_size=c["Vp"], n_positions=c["maxT"], n_embd=c["C"], n_layer=c["L"], n_head=c["NH"],
                    n_inner=c["F"], activation_function="gelu_new", layer_norm_epsilon=c["eps"], resid_pdrop=0.0,
                    embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
    hf = GPT2LMHeadModel(hc, attn_implementation="eager") if "attn_implementation" in \
        GPT2LMHeadModel.__init__.__code__.co_varnames else GPT2LMHeadModel(hc)
    hf.config._attn_implementation = "eager"
    hf = hf.double().eval()
    conv = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj"}

    def hf_name(n):
        if n in ("wte", "wpe"):
            return "transformer.%s.weight" % n, False
        if n.startswith("ln_f"):
            return "transformer." + n, False
        for a, b in conv.items():
            if ".%s." % a in n:
                return "transformer." + n.replace(a, b), n.endswith("weight")
        return "transformer." + n, False

    sd = hf.state_dict()
    with torch.no_grad():
        for n, v in w.items():
            hn, transpose = hf_name(n)
            t = torch.tensor(v, dtype=torch.float64)
            sd[hn].copy_(t.T if transpose else t)
    params = dict(hf.named_parameters())
    out = hf(idx).logits
    loss = F.cross_entropy(out[..., :c["V"]].reshape(-1, c["V"]), tgt.reshape(-1), ignore_index=-1)
    loss.backward()
    err = (out - logits).abs().max().item()
    assert err < 1e-9, "GPT2LMHeadModel logits differ from the twin by %g" % err
    worst = 0.0
    for n in w:
        hn, transpose = hf_name(n)
        g = params[hn].grad
        g = g.T if transpose else g
        worst = max(worst, (g - grads[n]).abs().max().item() / (grads[n].abs().max().item() + 1e-30))
    assert worst < 1e-9, "GPT2LMHeadModel gradients differ from the twin by %g (relative)" % worst
    print("GPT2LMHeadModel cross-check: logits max diff %.2g, grads max rel diff %.2g" % (err, worst))


def hf_llama_crosscheck(c, w, idx, tgt, logits, grads):
    """For llama: the same weights in transformers' LlamaForCausalLM (float64). HF's
    RMSNorm and RoPE frequencies compute in float32 internally, so agreement is checked
    at 1e-5 relative, not float64 precision. Skipped if transformers is not installed."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        print("transformers not installed: no LlamaForCausalLM cross-check")
        return
    C, Fh, L = c["C"], c["F"], c["L"]
    hc = LlamaConfig(vocab_size=c["Vp"], hidden_size=C, intermediate_size=Fh, num_hidden_layers=L,
                     num_attention_heads=c["NH"], num_key_value_heads=c["NH"], max_position_embeddings=c["maxT"],
                     rms_norm_eps=c["eps"], rope_theta=c["theta"], tie_word_embeddings=False, attention_bias=False,
                     mlp_bias=False, hidden_act="silu")
    hc._attn_implementation = "eager"
    hf = LlamaForCausalLM(hc).double().eval()
    # frugal name -> list of (hf name, row slice)
    maps = {"wte": [("model.embed_tokens.weight", None)], "ln_f.weight": [("model.norm.weight", None)],
            "lm_head.weight": [("lm_head.weight", None)]}
    for l in range(L):
        pre = "model.layers.%d." % l
        maps["h.%d.ln_1.weight" % l] = [(pre + "input_layernorm.weight", None)]
        maps["h.%d.ln_2.weight" % l] = [(pre + "post_attention_layernorm.weight", None)]
        maps["h.%d.attn.qkv.weight" % l] = [(pre + "self_attn.%s_proj.weight" % x, slice(i * C, (i + 1) * C))
                                            for i, x in enumerate("qkv")]
        maps["h.%d.attn.proj.weight" % l] = [(pre + "self_attn.o_proj.weight", None)]
        maps["h.%d.mlp.fc.weight" % l] = [(pre + "mlp.gate_proj.weight", slice(0, Fh)),
                                          (pre + "mlp.up_proj.weight", slice(Fh, 2 * Fh))]
        maps["h.%d.mlp.proj.weight" % l] = [(pre + "mlp.down_proj.weight", None)]
    sd = hf.state_dict()
    with torch.no_grad():
        for n, v in w.items():
            t = torch.tensor(v, dtype=torch.float64)
            for hn, sl in maps[n]:
                sd[hn].copy_(t if sl is None else t[sl])
    params = dict(hf.named_parameters())
    out = hf(idx).logits
    loss = F.cross_entropy(out[..., :c["V"]].reshape(-1, c["V"]), tgt.reshape(-1), ignore_index=-1)
    loss.backward()
    err = ((out - logits).abs().max() / logits.abs().max()).item()
    assert err < 1e-5, "LlamaForCausalLM logits differ from the twin by %g (relative)" % err
    worst = 0.0
    for n in w:
        g = torch.cat([params[hn].grad for hn, _ in maps[n]], 0)
        worst = max(worst, (g - grads[n]).abs().max().item() / (grads[n].abs().max().item() + 1e-30))
    assert worst < 1e-5, "LlamaForCausalLM gradients differ from the twin by %g (relative)" % worst
    print("LlamaForCausalLM cross-check: logits max rel diff %.2g, grads max rel diff %.2g" % (err, worst))


def make(name, c, outdir):
    torch.manual_seed(c["seed"])
    B, T, V = c["B"], c["T"], c["V"]
    idx = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    tgt[0, 3] = -1
    tgt[1, T - 1] = -1
    w = weights_from_hash(c)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    logits, loss = forward(c, p, idx, tgt)
    loss.backward()
    fx = {
        "config": np.array([c["layout"], V, c["Vp"], c["maxT"], c["L"], c["NH"], c["C"], c["F"], c["tie"], B, T,
                            c["seed"]], dtype=np.int32),
        "inputs": idx.int(), "targets": tgt.int(),
        "logits": logits.detach().float(), "loss": loss.detach().float().reshape(1),
    }
    for k in w:
        fx["grad." + k] = p[k].grad.float()
    check = hf_crosscheck if c["layout"] == GPT2 else hf_llama_crosscheck
    check(c, w, idx, tgt, logits.detach(), {k: p[k].grad for k in w})
    # 10 AdamW steps on the same batch (loss recorded before each step), float64.
    q = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    opt = torch.optim.AdamW(list(q.values()), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    traj = []
    for _ in range(10):
        opt.zero_grad()
        _, l2 = forward(c, q, idx, tgt)
        traj.append(l2.item())
        l2.backward()
        opt.step()
    fx["adamw_losses"] = np.array(traj, dtype=np.float32)
    path = os.path.join(outdir, "%s.bin" % name)
    write_fixture(path, fx)
    print("%s: loss %.6f, %d tensors, %d params, traj %.5f -> %.5f, %d bytes" % (
        path, loss.item(), len(w), sum(v.size for v in w.values()), traj[0], traj[-1], os.path.getsize(path)))


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outdir = os.path.join(root, "tests", "fixtures", "model")
    os.makedirs(outdir, exist_ok=True)
    for name, c in CONFIGS.items():
        make(name, c, outdir)


if __name__ == "__main__":
    main()
