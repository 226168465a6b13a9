"""gen_kernel_fixtures.py: writes tests/fixtures/kernels/kernels.fgfix, the PyTorch
oracle for tests/test_kernels.c: for each op, float32 inputs, a random upstream
gradient, and the outputs and input gradients computed by torch in float64.

Run from the repository root:  python3 tools/gen_kernel_fixtures.py
The shapes are small and odd on purpose (not multiples of any vector width or block).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixtures import write_fixture  # noqa: E402

torch.manual_seed(1234)
T = {}


def f32(*shape, scale=1.0):
    """A float32 random tensor, returned as float64 leaf (values exactly float32)."""
    return (torch.randn(*shape) * scale).float().double().requires_grad_(True)


def put(prefix, **tensors):
    for k, v in tensors.items():
        T[prefix + "." + k] = v.detach().float() if v.dtype.is_floating_point else v.int()


# ---- matmul: out = inp @ w^T + b ----
N, C, OC = 13, 37, 29
x, w, b = f32(N, C), f32(OC, C, scale=0.2), f32(OC)
out = F.linear(x, w, b)
g = torch.randn(N, OC).double()
(out * g).sum().backward()
put("matmul", inp=x, weight=w, bias=b, out=out, dout=g, dinp=x.grad, dweight=w.grad, dbias=b.grad)

# ---- embedding: out[n] = wte[tok[n]] + wpe[n % T] (tokens repeat on purpose) ----
B_, T_, C_, V_ = 2, 5, 11, 7
tok = torch.randint(0, V_, (B_ * T_,))
tok[3] = tok[0]
wte, wpe = f32(V_, C_), f32(T_, C_)
out = wte[tok] + wpe[torch.arange(B_ * T_) % T_]
g = torch.randn(B_ * T_, C_).double()
(out * g).sum().backward()
put("embedding", tokens=tok, wte=wte, wpe=wpe, out=out, dout=g, dwte=wte.grad, dwpe=wpe.grad)

# ---- rmsnorm ----
N, C = 9, 45
eps = 1e-5
x, w = f32(N, C, scale=2.0), f32(C)
rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
out = x * rstd * w
g = torch.randn(N, C).double()
(out * g).sum().backward()
put("rmsnorm", inp=x, weight=w, out=out, rstd=rstd.squeeze(-1), dout=g, dinp=x.grad, dweight=w.grad)

# ---- layernorm ----
x, w, b = f32(N, C, scale=2.0), f32(C), f32(C)
x2 = x + 0.5  # a nonzero mean
out = F.layer_norm(x2, (C,), w, b, eps)
mean = x2.mean(-1)
rstd = torch.rsqrt(x2.var(-1, unbiased=False) + eps)
g = torch.randn(N, C).double()
(out * g).sum().backward()
put("layernorm", inp=x2, weight=w, bias=b, out=out, mean=mean, rstd=rstd, dout=g, dinp=x.grad, dweight=w.grad,
    dbias=b.grad)

# ---- rope (HF rotate_half), on a packed qkv-like buffer: rotate the first NH*HS columns ----
B_, T_, NH, HS = 2, 7, 3, 8
stride = 3 * NH * HS
pos0, theta = 3, 10000.0
xr = f32(B_, T_, stride)
q = xr[:, :, : NH * HS].reshape(B_, T_, NH, HS)
inv = 1.0 / (theta ** (torch.arange(0, HS, 2).double() / HS))
ang = (pos0 + torch.arange(T_).double())[:, None] * inv[None, :]
cos = torch.cat([ang.cos(), ang.cos()], -1)[None, :, None, :]
sin = torch.cat([ang.sin(), ang.sin()], -1)[None, :, None, :]


def rot_half(t):
    return torch.cat([-t[..., HS // 2:], t[..., : HS // 2]], -1)


qr = q * cos + rot_half(q) * sin
g = torch.randn(B_, T_, NH, HS).double()
(qr * g).sum().backward()
full = xr.detach().clone()
full[:, :, : NH * HS] = qr.detach().reshape(B_, T_, NH * HS)
put("rope", x=xr, out=full, dout=g, dx=xr.grad[:, :, : NH * HS].reshape(B_, T_, NH, HS))
T["rope.dims"] = torch.tensor([B_, T_, NH, HS, stride, pos0], dtype=torch.int32)

# ---- causal attention on packed qkv ----
for name, (B_, T_, NH, HS) in {"attention": (2, 13, 3, 8), "attention1": (1, 1, 2, 4)}.items():
    C_ = NH * HS
    qkv = f32(B_, T_, 3 * C_)
    q, k, v = qkv.split(C_, dim=2)
    q, k, v = [t.reshape(B_, T_, NH, HS).transpose(1, 2) for t in (q, k, v)]
    s = q @ k.transpose(-1, -2) / math.sqrt(HS)
    mask = torch.ones(T_, T_, dtype=torch.bool).tril()
    s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, -1)  # [B, NH, T]
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    out = y.transpose(1, 2).reshape(B_, T_, C_)
    g = torch.randn(B_, T_, C_).double()
    (out * g).sum().backward()
    put(name, qkv=qkv, out=out, lse=lse, dout=g, dqkv=qkv.grad)
    T[name + ".dims"] = torch.tensor([B_, T_, C_, NH], dtype=torch.int32)

# ---- GELU (tanh) ----
x = f32(101, scale=3.0)
out = F.gelu(x, approximate="tanh")
g = torch.randn(101).double()
(out * g).sum().backward()
put("gelu", inp=x, out=out, dout=g, dinp=x.grad)

# ---- SwiGLU: inp[N, 2H] = [gate | up] ----
N, H = 5, 19
x = f32(N, 2 * H, scale=2.0)
out = F.silu(x[:, :H]) * x[:, H:]
g = torch.randn(N, H).double()
(out * g).sum().backward()
put("swiglu", inp=x, out=out, dout=g, dinp=x.grad)

# ---- softmax + cross-entropy, V real columns of Vp, one ignored row ----
N, V, Vp = 6, 53, 64
dloss = 1.0 / 5
logits = f32(N, Vp, scale=3.0)
tgt = torch.randint(0, V, (N,))
tgt[2] = -1
losses = F.cross_entropy(logits[:, :V], tgt, ignore_index=-1, reduction="none")
(losses * dloss).sum().backward()
put("xent", logits=logits, targets=tgt, losses=losses, dlogits=logits.grad)
T["xent.dims"] = torch.tensor([N, V, Vp], dtype=torch.int32)
T["xent.dloss"] = torch.tensor([dloss], dtype=torch.float32)

# ---- AdamW, 3 steps with torch.optim.AdamW ----
n = 77
p = torch.nn.Parameter(torch.randn(n).float())
p0 = p.detach().clone()
opt = torch.optim.AdamW([p], lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
grads = torch.randn(3, n).float()
for s in range(3):
    p.grad = grads[s].clone()
    opt.step()
st = opt.state[p]
T["adamw.p0"] = p0
T["adamw.grads"] = grads
T["adamw.p3"] = p.detach().clone()
T["adamw.m3"] = st["exp_avg"].clone()
T["adamw.v3"] = st["exp_avg_sq"].clone()
T["adamw.hyper"] = torch.tensor([1e-2, 0.9, 0.95, 1e-8, 0.1], dtype=torch.float32)

os.makedirs("tests/fixtures/kernels", exist_ok=True)
write_fixture("tests/fixtures/kernels/kernels.fgfix", T)
print("wrote tests/fixtures/kernels/kernels.fgfix with %d tensors" % len(T))

# ---- bf16_affine (tests/test_kernels_bf16.c): bf16(x * w + b), x bf16, w, b fp32 ----
# Its own file and generator, so kernels.fgfix stays as it was. torch multiplies and adds
# in fp32 as two ops (two roundings, as the kernel) and rounds to bf16 to nearest even.
# Specials: inf in x, values whose product overflows to inf, products landing on bf16 ties;
# no NaN (torch's bf16 NaN bits differ between its own paths: docs/PRECISION.md).
g = torch.Generator().manual_seed(77)
N, C = 7, 45
x = (torch.randn(N, C, generator=g) * 4).to(torch.bfloat16)
x[0, 0], x[0, 1], x[0, 2] = float("inf"), float("-inf"), -0.0
x[1, 0], x[1, 1] = 3.0e38, -3.0e38
w = torch.randn(C, generator=g).float()
w[0], w[1] = 2.0, 1.0
w[2] = 0.5
b = torch.randn(C, generator=g).float()
b[2] = 0.0
# ties: x * w exact, + b lands half-way between two bf16 values
x[2, 3], w[3], b[3] = 1.0, 1.0, 2.0 ** -8  # 1 + 2^-8: tie, to even (1.0)
x[2, 4], w[4], b[4] = 1.0078125, 1.0, 2.0 ** -8  # 1 + 3 * 2^-8: tie, to even (1 + 2^-6)
xf = x.float()
v = xf * w + b
v0 = xf * w + 0.0
B16 = {
    "affine.x": x.view(torch.int16).int() & 0xFFFF,
    "affine.w": w,
    "affine.b": b,
    "affine.outf": v,
    "affine.out": v.to(torch.bfloat16).view(torch.int16).int() & 0xFFFF,
    "affine.outf_nob": v0,
    "affine.out_nob": v0.to(torch.bfloat16).view(torch.int16).int() & 0xFFFF,
}
write_fixture("tests/fixtures/kernels/bf16_affine.fgfix", B16)
print("wrote tests/fixtures/kernels/bf16_affine.fgfix with %d tensors" % len(B16))
