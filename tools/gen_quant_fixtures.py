"""gen_quant_fixtures.py: writes tests/fixtures/quant/quant.bin, the PyTorch oracle for
tests/test_precision_quant.c (issue 14): symmetric int8 fake quantization per output
channel / per tensor / per token with torch.fake_quantize_per_channel_affine and
torch.fake_quantize_per_tensor_affine (forward and their straight-through backward), and
an LSQ twin (Esser et al. 2019) written with PyTorch autograd.

README: run from the repo root with the peers' torch (the tests never need Python):
    /work/peers/venv/bin/python tools/gen_quant_fixtures.py
Tensors (fixture format of tools/fixtures.py, fp32 unless said):
  fq_c_x [13, 37], fq_c_scale [13], fq_c_g, fq_c_out, fq_c_dx    per channel (axis 0)
  fq_t_x [7, 50], fq_t_scale [1], fq_t_g, fq_t_out, fq_t_dx       per tensor
  fq_k_x [6, 40], fq_k_scale [6] (= amax/127 by torch), fq_k_out  per token, dynamic
  lsq_c_x [9, 33], lsq_c_s [9], lsq_c_g, lsq_c_out, lsq_c_dx, lsq_c_ds   LSQ per channel
  lsq_t_x [5, 24], lsq_t_s [1], lsq_t_g, lsq_t_out, lsq_t_dx, lsq_t_ds   LSQ per tensor
The inputs hold exact ties (k + 0.5) * s, values past the clamp and zeros.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from fixtures import write_fixture  # noqa: E402

QMAX = 127


def inputs(gen, rows, cols, scale):
    """Random values, some exact ties and some beyond +-127 s (scale [rows] or [1])."""
    x = torch.randn(rows, cols, generator=gen) * 0.05
    s = scale.reshape(-1, 1).expand(rows, 1) if scale.numel() > 1 else scale.reshape(1, 1).expand(rows, 1)
    k = torch.randint(-120, 120, (rows, cols), generator=gen).float()
    ties = torch.rand(rows, cols, generator=gen) < 0.15
    x = torch.where(ties, (k + 0.5) * s, x)
    far = torch.rand(rows, cols, generator=gen) < 0.08
    x = torch.where(far, torch.sign(x) * (140 + 20 * torch.rand(rows, cols, generator=gen)) * s, x)
    x[0, 0] = 0.0
    return x.contiguous()


def fake_quant(gen, x, scale, per_channel):
    x = x.clone().requires_grad_(True)
    if per_channel:
        out = torch.fake_quantize_per_channel_affine(x, scale, torch.zeros(scale.numel(), dtype=torch.int32), 0,
                                                     -QMAX, QMAX)
    else:
        out = torch.fake_quantize_per_tensor_affine(x, float(scale[0]), 0, -QMAX, QMAX)
    g = torch.randn(out.shape, generator=gen)  # seeded: the fixture is reproducible
    out.backward(g)
    return out.detach(), g, x.grad


class RoundSTE(torch.autograd.Function):
    """round (half to even) forward, identity backward: the paper's round_pass, written so
    the forward is exactly round(v) (the (v.round() - v).detach() + v form is off by an
    ulp after the float add)."""

    @staticmethod
    def forward(ctx, v):
        return v.round()

    @staticmethod
    def backward(ctx, g):
        return g


def round_pass(v):
    return RoundSTE.apply(v)


def lsq(gen, x, s, n_per_step):
    """LSQ twin: out = round_pass(clamp(x / s, -Q, Q)) * s; the step's gradient is scaled
    by g = 1 / sqrt(n Q) after autograd (the paper's grad_scale is linear in it)."""
    x = x.clone().requires_grad_(True)
    s = s.clone().requires_grad_(True)
    sb = s.reshape(-1, 1)
    out = round_pass(torch.clamp(x / sb, -QMAX, QMAX)) * sb
    g = torch.randn(out.shape, generator=gen)  # seeded: the fixture is reproducible
    out.backward(g)
    return out.detach(), g, x.grad, s.grad * (1.0 / (n_per_step * QMAX) ** 0.5)


def main():
    gen = torch.Generator().manual_seed(14)
    t = {}
    sc = (torch.rand(13, generator=gen) * 0.002 + 0.0002).float()
    x = inputs(gen, 13, 37, sc)
    out, g, dx = fake_quant(gen, x, sc, True)
    t.update(fq_c_x=x, fq_c_scale=sc, fq_c_g=g, fq_c_out=out, fq_c_dx=dx)

    sc = torch.tensor([0.0007], dtype=torch.float32)
    x = inputs(gen, 7, 50, sc)
    out, g, dx = fake_quant(gen, x, sc, False)
    t.update(fq_t_x=x, fq_t_scale=sc, fq_t_g=g, fq_t_out=out, fq_t_dx=dx)

    x = torch.randn(6, 40, generator=gen) * torch.tensor([0.1, 1.0, 3.0, 0.01, 7.0, 0.5]).reshape(6, 1)
    sc = x.abs().amax(dim=1) / QMAX
    out = torch.fake_quantize_per_channel_affine(x, sc, torch.zeros(6, dtype=torch.int32), 0, -QMAX, QMAX)
    t.update(fq_k_x=x, fq_k_scale=sc, fq_k_out=out)

    s = (torch.rand(9, generator=gen) * 0.002 + 0.0003).float()
    x = inputs(gen, 9, 33, s)
    out, g, dx, ds = lsq(gen, x, s, 33)
    t.update(lsq_c_x=x, lsq_c_s=s, lsq_c_g=g, lsq_c_out=out, lsq_c_dx=dx, lsq_c_ds=ds)

    s = torch.tensor([0.0009], dtype=torch.float32)
    x = inputs(gen, 5, 24, s)
    out, g, dx, ds = lsq(gen, x, s, 5 * 24)
    t.update(lsq_t_x=x, lsq_t_s=s, lsq_t_g=g, lsq_t_out=out, lsq_t_dx=dx, lsq_t_ds=ds)

    path = os.path.join("tests", "fixtures", "quant", "quant.bin")
    write_fixture(path, t)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()


# ---- QAT twin of the model (tests/test_model_qat.c) ----
# The dense twin of tools/gen_model_fixtures.py with its linear layers' products
# h @ W.T replaced by fq(h) @ fq(W).T: weights per output channel, inputs per token or per
# tensor, each scale max|.|/127 of the current values (detached: the STE), quantized in
# float32 by torch's fake_quantize ops (the model runs float64 elsewhere).
QAT_NAMES = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")


def fq_weight(w):
    w32 = w.float()
    s = w32.detach().abs().amax(1) / QMAX
    s = torch.where(s > 0, s, torch.ones_like(s))
    z = torch.zeros(s.numel(), dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w32, s, z, 0, -QMAX, QMAX).double()


def fq_act(h, per_tensor):
    shape = h.shape
    h2 = h.reshape(-1, shape[-1]).float()
    if per_tensor:
        s = float(h2.detach().abs().max()) / QMAX
        out = torch.fake_quantize_per_tensor_affine(h2, s if s > 0 else 1.0, 0, -QMAX, QMAX)
    else:
        s = h2.detach().abs().amax(1) / QMAX
        s = torch.where(s > 0, s, torch.ones_like(s))
        out = torch.fake_quantize_per_channel_affine(h2, s, torch.zeros(s.numel(), dtype=torch.int32), 0, -QMAX,
                                                     QMAX)
    return out.double().reshape(shape)


class QuantWeight:
    """Stands for W in `h @ W.T`: W.T is itself, and h @ it is fq(h) @ fq(W).T."""

    def __init__(self, w, per_tensor):
        self.w, self.per_tensor = w, per_tensor

    @property
    def T(self):
        return self

    def __rmatmul__(self, h):
        return fq_act(h, self.per_tensor) @ fq_weight(self.w).T


class QatParams(dict):
    def __init__(self, p, per_tensor):
        super().__init__(p)
        self.per_tensor = per_tensor

    def __getitem__(self, k):
        v = dict.__getitem__(self, k)
        return QuantWeight(v, self.per_tensor) if k.endswith(QAT_NAMES) else v


def make_qat(name, cfg_name, per_tensor):
    import numpy as np
    import gen_model_fixtures as gm
    c = gm.CONFIGS[cfg_name]
    torch.manual_seed(c["seed"])
    B, T, V = c["B"], c["T"], c["V"]
    idx = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    tgt[0, 3] = -1
    w = gm.weights_from_hash(c)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    logits, loss = gm.forward(c, QatParams(p, per_tensor), idx, tgt)
    loss.backward()
    _, loss_fp = gm.forward(c, p, idx, tgt)
    fx = {
        "config": np.array([c["layout"], V, c["Vp"], c["maxT"], c["L"], c["NH"], c["C"], c["F"], c["tie"], B, T,
                            c["seed"], per_tensor], dtype=np.int32),
        "inputs": idx.int(), "targets": tgt.int(),
        "logits": logits.detach().float(), "loss": loss.detach().float().reshape(1),
    }
    for k in w:
        fx["grad." + k] = p[k].grad.float()
    path = os.path.join("tests", "fixtures", "quant", "%s.bin" % name)
    write_fixture(path, fx)
    print("wrote %s: QAT loss %.6f (fp32 twin %.6f), %d bytes" % (path, loss.item(), loss_fp.item(),
                                                                   os.path.getsize(path)))


# ---- LSQ QAT twin (qat_quant = lsq, tests/test_model_qat.c) ----
# The weights' step is s = (max|w|/127, detached) * exp(p) per output channel, p a
# parameter (h.L.qat.KIND.lsq_step, the C model's table order after the other tensors),
# with LSQ's forward round_pass(clamp(w / s, -Q, Q)) * s and its gradient scale
# g = 1 / sqrt(cols * Q) on s; inputs as the STE twin (per token). The test sets
# p[r] = ((7 r) % 11 - 5) / 16 (exact in binary) so some channels clip.
LSQ_KINDS = (("qkv", "attn.qkv.weight"), ("attproj", "attn.proj.weight"), ("fc", "mlp.fc.weight"),
             ("fcproj", "mlp.proj.weight"))


def lsq_start(rows):
    return torch.tensor([((7 * r) % 11 - 5) / 16.0 for r in range(rows)], dtype=torch.float64)


class GradScale(torch.autograd.Function):
    """identity forward, gradient times g: the paper's grad_scale, written so the forward
    is exactly x ((x - x g).detach() + x g is off by an ulp, and flips the clip of a
    channel's largest weight when its step is exactly max/127)."""

    @staticmethod
    def forward(ctx, x, g):
        ctx.g = g
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.g, None


def grad_scale(x, g):
    return GradScale.apply(x, g)


class ClampIncl(torch.autograd.Function):
    """clamp with the gradient passed at the bounds too (torch.clamp's is 0 there): the
    C model's convention, because the max rule puts each channel's largest weight at
    exactly +-Q, where nothing is clipped."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return torch.clamp(v, -QMAX, QMAX)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        return grad * ((v >= -QMAX) & (v <= QMAX)).to(grad.dtype)


class LsqWeight:
    def __init__(self, w, p):
        self.w, self.p = w, p

    @property
    def T(self):
        return self

    def __rmatmul__(self, h):
        w32 = self.w.float()
        smax = w32.detach().abs().amax(1) / QMAX
        smax = torch.where(smax > 0, smax, torch.ones_like(smax))
        s = grad_scale(smax * torch.exp(self.p.float()), 1.0 / (w32.shape[1] * QMAX) ** 0.5).reshape(-1, 1)
        wq = round_pass(ClampIncl.apply(w32 / s)) * s
        return fq_act(h, False) @ wq.double().T


class LsqParams(dict):
    def __getitem__(self, k):
        v = dict.__getitem__(self, k)
        for kind, suffix in LSQ_KINDS:
            if k.endswith(suffix):
                layer = k.split(".")[1]
                return LsqWeight(v, dict.__getitem__(self, "h.%s.qat.%s.lsq_step" % (layer, kind)))
        return v


def make_qat_lsq(name, cfg_name):
    import numpy as np
    import gen_model_fixtures as gm
    c = gm.CONFIGS[cfg_name]
    torch.manual_seed(c["seed"])
    B, T, V = c["B"], c["T"], c["V"]
    idx = torch.randint(0, V, (B, T))
    tgt = torch.randint(0, V, (B, T))
    tgt[0, 3] = -1
    w = gm.weights_from_hash(c)
    p = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in w.items()}
    for l in range(c["L"]):
        for kind, suffix in LSQ_KINDS:
            rows = p["h.%d.%s" % (l, suffix)].shape[0]
            p["h.%d.qat.%s.lsq_step" % (l, kind)] = lsq_start(rows).requires_grad_(True)
    logits, loss = gm.forward(c, LsqParams(p), idx, tgt)
    loss.backward()
    fx = {
        "config": np.array([c["layout"], V, c["Vp"], c["maxT"], c["L"], c["NH"], c["C"], c["F"], c["tie"], B, T,
                            c["seed"], 0], dtype=np.int32),
        "inputs": idx.int(), "targets": tgt.int(),
        "logits": logits.detach().float(), "loss": loss.detach().float().reshape(1),
    }
    for k in p:
        fx["grad." + k] = p[k].grad.float()
    path = os.path.join("tests", "fixtures", "quant", "%s.bin" % name)
    write_fixture(path, fx)
    print("wrote %s: LSQ QAT loss %.6f, %d bytes" % (path, loss.item(), os.path.getsize(path)))


# ---- QAT twin of the MoE model (tests/test_model_qat.c, issue 14) ----
# gen_moe_fixtures.py's MoE model (layer 0 dense, then MoE layers with routed and shared
# experts) with every linear layer but the router and the head fake-quantized: each routed
# expert's fc [2H, C] and proj [C, H] per output channel of that expert, its inputs per
# token (each routed row is one token), the shared expert as a dense layer. Per token only:
# a per-tensor range of an expert's input is over the rows routed to it, which the twin's
# token-by-token loop does not see.
MOE_SHARED = ("moe.shared.fc.weight", "moe.shared.proj.weight")
MOE_EXPERTS = ("moe.experts.fc.weight", "moe.experts.proj.weight")


class QuantMatrix:
    """One expert's matrix W[e]: W[e] @ v is fq(W[e]) @ fq(v) (v one token's row)."""

    def __init__(self, w):
        self.w = w

    def __matmul__(self, v):
        return (fq_act(v.reshape(1, -1), False) @ fq_weight(self.w).T).reshape(-1)


class QuantExperts:
    def __init__(self, w):
        self.w = w

    def __getitem__(self, e):
        return QuantMatrix(self.w[e])


class QuantWeightT(QuantWeight):
    def t(self):
        return self


class MoeQatParams(dict):
    def __getitem__(self, k):
        v = dict.__getitem__(self, k)
        if k.endswith(QAT_NAMES) or k.endswith(MOE_SHARED):
            return QuantWeightT(v, 0)
        if k.endswith(MOE_EXPERTS):
            return QuantExperts(v)
        return v


def make_qat_moe(name):
    import numpy as np
    import gen_model_fixtures as gm
    import gen_moe_fixtures as gmoe
    c = dict(V=70, Vp=128, maxT=16, L=3, NH=4, C=24, F=48, eps=1e-5, theta=10000.0, B=2, T=12, D=1, E=8, K=2,
             S=1, H=12, W=3, route_scale=2.0, alpha=0.0, gamma=0.01, layout=gm.LLAMA, tie=0, balance="bias", seed=7)
    g, idx, tgt, table, w = gmoe.init_batch_and_weights(c)
    B, T, V = c["B"], c["T"], c["V"]
    L, D, E = c["L"], c["D"], c["E"]
    for l in range(D, L):  # a nonzero starting bias, so selection != affinity order
        w["h.%d.moe.router.bias" % l] = (0.1 * torch.randn(E, generator=g)).numpy().astype(np.float32)
    bias = {l: torch.tensor(w["h.%d.moe.router.bias" % l], dtype=torch.float64) for l in range(D, L)}
    trainable = [nm for nm, _, kind in table if kind != "frozen"]
    p = {k: torch.tensor(w[k], dtype=torch.float64, requires_grad=k in trainable) for k in w}
    logits, loss, _ = gmoe.model_forward(c, MoeQatParams(p), idx, tgt, bias)
    loss.backward()
    _, loss_fp, _ = gmoe.model_forward(c, p, idx, tgt, bias)
    fx = {"config": np.array([c["layout"], V, c["Vp"], c["maxT"], L, c["NH"], c["C"], c["F"], c["tie"], B, T, D,
                              E, c["K"], c["S"], c["H"], c["W"], gmoe.BALANCE[c["balance"]]], dtype=np.int32),
          "config_f": np.array([c["route_scale"], c["alpha"], c["gamma"]], dtype=np.float32),
          "inputs": idx.int(), "targets": tgt.int(), "logits": logits.detach().float(),
          "loss": loss.detach().float().reshape(1)}
    for k in w:
        fx["param." + k] = w[k]
        if k in trainable:
            fx["grad." + k] = p[k].grad.float()
    path = os.path.join("tests", "fixtures", "quant", "%s.bin" % name)
    write_fixture(path, fx)
    print("wrote %s: QAT loss %.6f (fp32 twin %.6f), %d bytes" % (path, loss.item(), loss_fp.item(),
                                                                   os.path.getsize(path)))


if __name__ == "__main__":
    make_qat("qat_llama_token", "llama", 0)
    make_qat("qat_gpt2_tensor", "gpt2", 1)
    make_qat_moe("qat_moe_llama_token")
    make_qat_lsq("qat_lsq_llama_token", "llama")
