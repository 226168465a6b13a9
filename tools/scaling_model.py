#!/usr/bin/env python3
"""scaling_model.py: the step-time model of docs/SCALING.md: per-step compute and
communication volume of each parallel dimension (dp, tp, pp, ep), counted analytically,
and from them the step time and scaling efficiency of each layout on 8..1,024 H100 GPUs
with InfiniBand NDR; the best layout per size; the plot docs/scaling.png with the seed's
"89% linear at 128 GPUs" and Megatron-LM's published weak-scaling figures.

Usage: python3 tools/scaling_model.py [--png docs/scaling.png] [--table]
       python3 tools/scaling_model.py --volume CONFIG.json DP EP TP PP   (bytes per step, per rank)
Needs matplotlib only for the PNG (/work/peers/venv has it). Every assumption is a
named constant below and is repeated in docs/SCALING.md.
"""
import argparse
import itertools
import json
import math
import os
import sys

# ---- hardware (public figures) ----
PEAK = 989.4e12  # H100 SXM5 dense BF16 tensor FLOP/s (NVIDIA H100 datasheet)
MFU = 0.45  # fraction of peak the GEMMs of a large model reach (Megatron-Core reports 47% on H100)
HBM = 80e9  # bytes per GPU
HBM_BW = 3.35e12  # bytes/s (optimizer step is bound by it)
MEM_USABLE = 0.9  # of HBM for weights, grads, optimizer state, activations
GPUS_PER_NODE = 8  # DGX H100: NVSwitch inside, one ConnectX-7 NDR port per GPU
NVL_BW = 450e9  # NVLink 4, bytes/s per direction per GPU
IB_BW = 50e9  # InfiniBand NDR 400 Gb/s per GPU (rail-optimised, 8 ports per node)
BUS_EFF = 0.8  # achieved bus bandwidth / link bandwidth (NCCL all-reduce and all-to-all)
ALPHA_NVL = 3e-6  # latency per message step inside a node, seconds
ALPHA_IB = 6e-6  # latency per message step between nodes, seconds

# ---- Frugal's arithmetic as built (docs/DIST.md, docs/SCALING.md) ----
GRAD_BYTES = 4  # gradients are fp32 and all-reduced as fp32
ACT_BYTES_TP = 2  # tp/pp activations on the wire in bf16 (Megatron); fp32 would double them
EP_ROW_BYTES = 4  # expert rows are dispatched / combined as fp32 rows (moe_ep.c)
TOKENS_PER_GPU = 32768  # weak scaling: tokens per GPU per optimiser step (DeepSeek-V3: ~30k)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Model:
    """Parameter and FLOP counts of a Frugal config (llama / gpt2 layouts, MoE)."""

    def __init__(self, name, L, d, heads, V, s, F=None, E=0, K=0, S=0, H=0, dense_layers=0, llama=True, tied=False):
        self.name, self.L, self.d, self.V, self.s = name, L, d, V, s
        # expert all-to-all as Frugal builds it: fp32 rows both ways, one row per (token,
        # expert), blocking; deepseek_style() switches to DeepSeek-V3's choices
        self.ep_dispatch, self.ep_combine, self.node_limit, self.ep_overlap = EP_ROW_BYTES, EP_ROW_BYTES, 0, 0.0
        self.E, self.K, self.S, self.H = E, K, S, H
        self.moe_layers = L - dense_layers if E > 0 else 0
        dense_ffn = (3 if llama else 2) * d * (F if F else (4 * d if not llama else int(8 * d / 3)))
        attn = 4 * d * d
        expert = 3 * d * H  # SwiGLU expert: gate|up [2H, d] + down [d, H]
        moe_ffn_dense_part = S * expert + E * d  # shared experts + router
        self.p_embed = V * d * (1 if tied else 2)
        self.p_dense = self.p_embed + L * attn + (L - self.moe_layers) * dense_ffn + self.moe_layers * moe_ffn_dense_part
        self.p_expert = self.moe_layers * E * expert  # routed experts
        self.p_total = self.p_dense + self.p_expert
        self.p_active = self.p_dense + self.moe_layers * K * expert
        # training FLOPs per token: 6 N_active + 6 L s d (causal attention), Frugal's count
        self.flops_token = 6 * self.p_active + 6 * L * s * d


def load_config(path):
    with open(path) as f:
        c = json.load(f)
    llama = c.get("layout", "llama") == "llama"
    d = c.get("d_model", 768)
    return Model(
        os.path.basename(path).replace(".json", ""),
        c.get("n_layer", 12),
        d,
        c.get("n_head", 12),
        1024,  # the demo's BPE vocabulary (scripts/demo.sh)
        c.get("seq_len", 1024),
        F=c.get("d_ff") or None,
        E=c.get("n_expert", 0),
        K=c.get("n_expert_active", 0),
        S=c.get("n_shared_expert", 0),
        H=c.get("d_expert", 0),
        dense_layers=c.get("n_dense_layers", 0),
        llama=llama,
        tied=c.get("tie_embeddings", False),
    )


def deepseek_v3():
    """DeepSeek-V3-shaped (arXiv 2412.19437): 61 layers, d 7168, 3 dense then 58 MoE layers of
    1 shared + 256 routed experts (H 2048), top-8, vocab 129,280, seq 4096. MLA's attention
    is counted as plain 4 d^2 (it is smaller; the difference is < 3% of the active FLOPs)."""
    return Model("deepseek-v3-shape", 61, 7168, 128, 129280, 4096, F=18432, E=256, K=8, S=1, H=2048, dense_layers=3)


def deepseek_style(m):
    """The same model with DeepSeek-V3's expert all-to-all (its report, section 3.2): fp8
    dispatch (1 byte + scales, counted 1.03), bf16 combine (2 bytes), a token sent once to
    each of at most 4 nodes (then NVLink fan-out), the all-to-all hidden behind compute
    (DualPipe; counted 90% hidden). Frugal has node-limited routing but not these four."""
    m.name += " (DeepSeek-style EP)"
    m.ep_dispatch, m.ep_combine, m.node_limit, m.ep_overlap = 1.03, 2.0, 4, 0.9
    return m


def llama_7b():
    """Llama-2-7B-shaped dense (32 layers, d 4096, SwiGLU 11008, vocab 32,000, seq 4096)."""
    return Model("llama-7b-shape", 32, 4096, 32, 32000, 4096, F=11008)


def gpt3_175b():
    """GPT-3 175B-shaped dense reference (96 layers, d 12288), for the Megatron comparison."""
    return Model("gpt3-175b-shape", 96, 12288, 96, 51200, 2048, F=4 * 12288, llama=False)


# ---- per-step volume, per rank (bytes), and time ----


def volumes(m, dp, ep, tp, pp, mb, micro):
    """Bytes one rank sends per optimiser step in each dimension (bandwidth-optimal counts,
    the same model as fg_comm_bytes_sent). dp x ep ranks share the batch (dp_total), the
    experts are spread over ep and their gradients reduced over dp only."""
    dpt = dp * ep
    layers = m.L / pp
    moe_layers = m.moe_layers / pp
    tok_mb = mb * m.s  # tokens per micro-batch
    v = {}
    # tp: 2 all-reduces of [tokens, d] forward, 2 backward, per layer and micro-batch
    v["tp"] = 4 * 2 * (tp - 1) / tp * tok_mb * m.d * ACT_BYTES_TP * layers * micro if tp > 1 else 0.0
    # pp: activations forward, their gradients backward, per micro-batch (stage boundary)
    v["pp"] = 2 * tok_mb * m.d * ACT_BYTES_TP / tp * micro if pp > 1 else 0.0
    # ep: dispatch + combine forward and backward of the K rows of each token, the share
    # of rows owned by other ranks (uniform routing)
    # (forward: dispatch + combine; backward: the gradients of both, same sizes)
    row = 2 * (m.ep_dispatch + m.ep_combine)
    v["ep"] = (ep - 1) / ep * tok_mb * m.K * m.d * row * moe_layers * micro / tp if ep > 1 else 0.0
    # dp: ring all-reduce of this rank's gradients: dense over dp x ep, experts over dp
    dense = m.p_dense / (tp * pp)
    experts = m.p_expert / (tp * pp * ep)
    v["dp"] = 2 * (dpt - 1) / dpt * dense * GRAD_BYTES if dpt > 1 else 0.0
    v["dp"] += 2 * (dp - 1) / dp * experts * GRAD_BYTES if dp > 1 else 0.0
    return v


def memory(m, dp, ep, tp, pp, mb, rc=0):
    """Bytes per GPU: fp32 master weights and gradients, Adam m and v sharded ZeRO-1 over the
    ranks holding the same tensor, activations of the pp micro-batches in flight (1F1B) at
    34 s b d bytes per layer (Korthikanti et al. 2022, bf16, no recompute) / tp, plus the
    MoE rows (K per token: input, gate|up, SwiGLU, output). rc: full recomputation keeps
    only each layer's input (2 s b d bytes) and one layer's activations."""
    dense = m.p_dense / (tp * pp)
    experts = m.p_expert / (tp * pp * ep)
    w = (dense + experts) * (4 + 4)
    opt = dense * 8 / (dp * ep) + experts * 8 / dp
    per_layer = 34 * m.s * mb * m.d / tp
    moe_layer = m.s * mb * m.K * (2 * m.d + 3 * m.H) * 2 if m.E else 0
    if rc:
        act = 2 * m.s * mb * m.d * m.L / tp + per_layer + moe_layer
    else:
        act = per_layer * m.L + moe_layer * m.moe_layers
    return w + opt + act


def step_time(m, n, dp, ep, tp, pp, mb, rc=0):
    """Seconds per optimiser step and its parts for one layout at weak scaling (rc: full
    activation recomputation, one more forward: compute x 4/3)."""
    tokens = TOKENS_PER_GPU * n
    seqs = tokens // m.s
    dpt = dp * ep
    micro = seqs // (dpt * mb)  # micro-batches per pipeline per step
    if micro < max(1, pp):
        return None
    flops_gpu = tokens * m.flops_token / n
    comp = flops_gpu / (PEAK * MFU)
    t = {"compute": comp, "recompute": comp / 3 if rc else 0.0}
    t["bubble"] = comp * (pp - 1) / micro if pp > 1 else 0.0
    v = volumes(m, dp, ep, tp, pp, mb, micro)
    nodes_tp = tp <= GPUS_PER_NODE
    # tp inside a node, exposed (Megatron's tp all-reduces sit on the critical path)
    msgs = 4 * (m.L / pp) * micro
    t["tp"] = v["tp"] / (NVL_BW * BUS_EFF) + msgs * 2 * (tp - 1) * ALPHA_NVL if tp > 1 else 0.0
    if not nodes_tp:
        return None
    # pp: stages on other nodes once tp x pp > 8; p2p overlapped with the other micro-batches'
    # compute except its latency
    t["pp"] = 2 * micro * (ALPHA_IB if tp * pp > GPUS_PER_NODE else ALPHA_NVL) if pp > 1 else 0.0
    # ep: ranks side by side (tp, then ep): the group spans ceil(tp ep / 8) nodes; the rows
    # for ranks on the same node go over NVLink, the rest over IB; blocking (exposed)
    if ep > 1:
        span = tp * ep
        local = min(GPUS_PER_NODE, span) / tp  # ep ranks on this node
        remote_frac = max(0.0, (ep - local) / (ep - 1))
        # node-limited routing with one copy per node: at most node_limit of the K rows of a
        # token cross IB
        ib_share = remote_frac * (min(1.0, m.node_limit / m.K) if m.node_limit else 1.0)
        t["ep"] = v["ep"] * (ib_share / (IB_BW * BUS_EFF) + (1 - remote_frac) / (NVL_BW * BUS_EFF))
        t["ep"] *= 1.0 - m.ep_overlap
        t["ep"] += 4 * (m.moe_layers / pp) * micro * (1 + math.log2(ep)) * (ALPHA_IB if span > GPUS_PER_NODE else ALPHA_NVL)
    else:
        t["ep"] = 0.0
    # dp: the batch group spans nodes once n > tp pp ... (rail-optimised: each GPU's own port);
    # Frugal overlaps it with the backward of the last micro-batch only (dp.c arms the hook there)
    if dpt > 1:
        inter = n > GPUS_PER_NODE
        bw = (IB_BW if inter else NVL_BW) * BUS_EFF
        # bandwidth term of a ring, latency of a tree (NCCL picks per size; 2 log2 p steps)
        ring = v["dp"] / bw + 2 * math.ceil(math.log2(dpt)) * (ALPHA_IB if inter else ALPHA_NVL)
        window = (2.0 / 3.0) * comp / micro
        t["dp"] = max(0.0, ring - window)
    else:
        t["dp"] = 0.0
    # optimiser: AdamW reads/writes ~28 bytes per local parameter (p, g, m, v; ZeRO shard)
    local = (m.p_dense / (tp * pp) + m.p_expert / (tp * pp * ep)) / (dpt if dpt > 1 else 1)
    t["optim"] = local * 28 / HBM_BW
    total = sum(t.values())
    return total, t, v, micro


def layouts(m, n):
    for tp in (1, 2, 4, 8):
        for pp in (1, 2, 4, 8, 16, 32):
            if pp > m.L or n % (tp * pp):
                continue
            rest = n // (tp * pp)
            eps = [1]
            if m.E:
                eps = [e for e in (1, 2, 4, 8, 16, 32, 64, 128, 256) if e <= rest and rest % e == 0 and m.E % e == 0]
            for ep in eps:
                dp = rest // ep
                for mb in (1, 2, 4):
                    for rc in (0, 1):
                        yield dp, ep, tp, pp, mb, rc


def best(m, n):
    out = None
    for dp, ep, tp, pp, mb, rc in layouts(m, n):
        if memory(m, dp, ep, tp, pp, mb, rc) > HBM * MEM_USABLE:
            continue
        r = step_time(m, n, dp, ep, tp, pp, mb, rc)
        if r is None:
            continue
        total, t, v, micro = r
        eff = t["compute"] / total
        if out is None or total < out["total"] - 1e-12:
            out = dict(total=total, t=t, v=v, eff=eff, dp=dp, ep=ep, tp=tp, pp=pp, mb=mb, rc=rc, micro=micro,
                       mem=memory(m, dp, ep, tp, pp, mb, rc))
    return out


SIZES = [8, 16, 32, 64, 128, 256, 512, 1024]

# Published points (docs/SCALING.md cites them)
SEED = (128, 0.89)  # ../shared/SEED.md: "89% linear scaling on 128 GPUs"
# Shoeybi et al. 2019 (arXiv:1909.08053) and NVIDIA's blog of the same work
# (nv-adlr.github.io/MegatronLM, source _projects/megatron-lm.md of nv-adlr/nv-adlr.github.io):
# weak scaling against one V100 running the 1.2B model at 39 TFLOP/s (30% of peak); 8.3B
# with 8-way model parallelism "achieves 77% of linear scaling"; 8.3B on 512 GPUs (8-way
# model x 64-way data) "74% scaling relative to the strong baseline" (the text of Figure 4),
# and 15.1 PFLOP/s sustained = "76% scaling efficiency" (abstract; 15.1 / (512 x 39 TF) =
# 0.756). Verified in the text: these end points only. The figure's intermediate bars
# (2 and 4 GPUs; 64, 128 and 256 GPUs) are an image, not checked, and not plotted.
MEGATRON_MP = [(1, 1.00), (8, 0.77)]
MEGATRON_MPDP = [(512, 0.74)]
MEGATRON_MPDP_FLOPS = (512, 15.1e15 / (512 * 39e12))  # the abstract's 76%
# Narayanan et al. 2021 (arXiv:2104.04473, Table 1): per-GPU throughput of the weak-scaling
# series relative to its first row. Verified: the abstract's end point, 1T parameters on
# 3072 A100s at 502 PFLOP/s aggregate, 52% of peak per GPU (= 163 TFLOP/s of 312); the first
# row, 1.7B on 32 GPUs at 137 TFLOP/s per GPU (44%, 4.4 PFLOP/s aggregate), from summaries
# of Table 1 (consistent: 4.4 PF / 32 = 137.5 TF). The rows between are not plotted.
MEGATRON_2021 = [(32, 1.00), (3072, 163 / 137)]


def configs():
    ms = []
    for f in ("demo.json", "demo_dense.json", "moe_demo.json", "moe_balance.json", "moe_dense.json"):
        p = os.path.join(ROOT, "configs", f)
        if os.path.exists(p):
            ms.append(load_config(p))
    ms.append(llama_7b())
    ms.append(gpt3_175b())
    ms.append(deepseek_v3())
    ms.append(deepseek_style(deepseek_v3()))
    return ms


def table(ms):
    rows = []
    for m in ms:
        print(f"\n## {m.name}: {m.p_total / 1e6:.3g}M params, {m.p_active / 1e6:.3g}M active, "
              f"{m.flops_token / 1e6:.3g} MFLOP/token, seq {m.s}")
        print("GPUs |  dp  ep tp pp mb rc micro | step ms | eff  | compute recomp bubble tp   pp   ep   dp   optim (ms) | "
              "MB/step/rank dp tp pp ep | GB/GPU")
        for n in SIZES:
            b = best(m, n)
            if b is None:
                print(f"{n:4d} | does not fit")
                rows.append((m.name, n, None))
                continue
            t, v = b["t"], b["v"]
            print(f"{n:4d} | {b['dp']:4d} {b['ep']:3d} {b['tp']:2d} {b['pp']:2d} {b['mb']:2d} {b['rc']:2d} {b['micro']:5d} | "
                  f"{b['total'] * 1e3:7.2f} | {b['eff'] * 100:4.1f}% | "
                  + " ".join(f"{t[k] * 1e3:6.2f}" for k in ("compute", "recompute", "bubble", "tp", "pp", "ep", "dp", "optim"))
                  + " | " + " ".join(f"{v[k] / 1e6:8.2f}" for k in ("dp", "tp", "pp", "ep"))
                  + f" | {b['mem'] / 1e9:5.1f}")
            rows.append((m.name, n, b))
    return rows


def plot(rows, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11.5, 5.4))
    names = []
    for name, _, _ in rows:
        if name not in names:
            names.append(name)
    for name in names:
        pts = [(n, b["eff"]) for nm, n, b in rows if nm == name and b is not None]
        if pts:
            ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], marker="o", ms=3, label=f"model: {name}")
    ax.plot([p[0] for p in MEGATRON_MP], [100 * p[1] for p in MEGATRON_MP], "k^--", label="Megatron-LM 2019: model parallel 1.2B -> 8.3B (V100)")
    ax.plot([p[0] for p in MEGATRON_MPDP], [100 * p[1] for p in MEGATRON_MPDP], "ks",
            label="Megatron-LM 2019: 8.3B, model+data parallel, 512 V100s")
    ax.plot([MEGATRON_MPDP_FLOPS[0]], [100 * MEGATRON_MPDP_FLOPS[1]], "ws", mec="k",
            label="Megatron-LM 2019: the same run by aggregate FLOP/s (15.1 PF)")
    ax.plot([p[0] for p in MEGATRON_2021], [100 * p[1] for p in MEGATRON_2021], "kD:",
            label="Megatron-LM 2021: per-GPU rate vs 32 GPUs (A100)")
    ax.plot([SEED[0]], [100 * SEED[1]], "r*", ms=16, label='seed: "89% linear at 128 GPUs"')
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs")
    ax.set_ylabel("scaling efficiency, % of linear")
    ax.set_title("Modelled weak scaling, H100 + InfiniBand NDR, 32k tokens/GPU/step, best layout per size")
    ax.set_ylim(0, 125)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--png", default=None)
    ap.add_argument("--volume", nargs=5, metavar=("CONFIG", "DP", "EP", "TP", "PP"))
    ap.add_argument("--mb", type=int, default=1, help="sequences per micro-batch (--volume)")
    ap.add_argument("--micro", type=int, default=1, help="micro-batches per rank per step (--volume)")
    ap.add_argument("--seq", type=int, default=0, help="sequence length override (--volume)")
    a = ap.parse_args()
    if a.volume:
        m = load_config(a.volume[0])
        if a.seq:
            m.s = a.seq
        dp, ep, tp, pp = map(int, a.volume[1:])
        v = volumes(m, dp, ep, tp, pp, a.mb, a.micro)
        print(json.dumps({k: round(x) for k, x in v.items()}))
        return 0
    rows = table(configs())
    print("\n| model | " + " | ".join(str(n) for n in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    names = []
    for nm, _, _ in rows:
        if nm not in names:
            names.append(nm)
    for nm in names:
        cells = []
        for n in SIZES:
            b = next(b for x, k, b in rows if x == nm and k == n)
            cells.append("-" if b is None else f"{b['eff'] * 100:.0f}% dp{b['dp']} ep{b['ep']} tp{b['tp']} pp{b['pp']}"
                         + (" rc" if b["rc"] else ""))
        print(f"| {nm} | " + " | ".join(cells) + " |")
    if a.png:
        plot(rows, a.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
