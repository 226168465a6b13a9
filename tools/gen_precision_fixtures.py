"""gen_precision_fixtures.py: writes tests/fixtures/precision/precision.bin, the PyTorch
oracle for tests/test_precision.c: fp8 decode tables, an fp32 sweep encoded to e4m3fn /
e5m2 / bf16 (plain and clamped casts), DeepSeek-V3 fine-grained fp8 quantization done by
a PyTorch twin, and GradScaler scale sequences from torch._amp_update_scale_.

README: run from the repo root with the peers' torch (the tests never need Python):
    /work/peers/venv/bin/python tools/gen_precision_fixtures.py
Tensors (fixture format of tools/fixtures.py; all bit patterns stored as int32):
  e4m3_decode, e5m2_decode [256]   fp32 bits of torch's decode of code c
  sweep_in [n]                     fp32 bits of the inputs (NaNs, -0, ties, ... kept exact)
  sweep_fp8 [n]                    e4m3 | e4m3_sat << 8 | e5m2 << 16 | e5m2_sat << 24, where
                                   *_sat = x.clamp(-max, max).to(fp8) and the others x.to(fp8)
  sweep_bf16 [n]                   x.to(torch.bfloat16) bits
  q_<fmt>_<layout>_codes [rows*cols/4]  fp8 codes packed 4 per int32 (little end first)
  q_<fmt>_<layout>_scales          fp32 scales, row-major [ceil(rows/br), ceil(cols/bc)]
      layout "tile" (1x128) on X [6, 300], "block" (128x128) on W [130, 140]; the matrices
      are not stored: both sides build them from qmat() below (exact in fp32).
  scaler_<k>_found [steps], scaler_<k>_scale [steps] (f32), scaler_<k>_tracker [steps],
  scaler_<k>_cfg [init, growth, backoff, interval] (f32) for k in 0, 1, 2.
"""
import math
import os
import random
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from fixtures import write_fixture  # noqa: E402

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2
MAXES = {E4M3: 448.0, E5M2: 57344.0}


def bits_to_f32(bits):
    return torch.tensor(np.array(bits, dtype=np.uint32).view(np.int32)).view(torch.float32)


def f32_bits(x):
    return [v & 0xFFFFFFFF for v in x.view(torch.int32).tolist()]


# ---- fp8 decode of all 256 codes ----
codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
out = {
    "e4m3_decode": codes.view(E4M3).float().view(torch.int32),
    "e5m2_decode": codes.view(E5M2).float().view(torch.int32),
}


# ---- the fp32 sweep ----
def fp8_values(dt):
    """Positive finite values of the format, ascending (fp64)."""
    v = codes[:128].view(dt).double()
    return sorted(set(float(a) for a in v.tolist() if math.isfinite(a)))


def f32(x):
    return float(np.float32(x))


def around(x):
    """x as fp32 and its fp32 neighbours."""
    x = np.float32(x)
    return [float(np.nextafter(x, np.float32(-np.inf))), float(x), float(np.nextafter(x, np.float32(np.inf)))]


sweep = []
for dt in (E4M3, E5M2):
    vals = fp8_values(dt)
    for lo, hi in zip(vals, vals[1:]):
        sweep += around((lo + hi) / 2)  # every tie, including subnormal ones, and both sides
        sweep.append(hi)
    top, ulp = vals[-1], vals[-1] - vals[-2]
    sweep += around(top) + around(top + ulp / 2) + around(top + ulp) + around(top * 2)
    sweep += around(vals[1] / 2) + around(vals[1] / 4) + around(vals[1] * 0.75)  # under the smallest subnormal
# bf16: ties at every exponent (normal and subnormal), even and odd kept lsb, and neighbours
for e in range(-127, 128):  # -127: the subnormals
    for m in (0x00, 0x01, 0x7F):  # even lsb, odd lsb, odd with a carry into the exponent
        base = (m + 128) * 2.0 ** (e - 7) if e >= -126 else m * 2.0 ** -133
        sweep += around(base + 2.0 ** (max(e, -126) - 8))
sweep += [3.4028234663852886e38, 3.3961776e38, 3.3895313892515355e38, 1e-45, 1e-40, 1e30, 1e10, 65520.0, 65504.0]
rng = random.Random(1234)
for _ in range(400):  # random values over many exponents
    sweep.append(f32(rng.uniform(1, 2) * 2.0 ** rng.randint(-30, 20)))
sweep = [v for x in sweep for v in (x, -x)]  # both signs
bits = f32_bits(torch.tensor(sweep, dtype=torch.float32))
bits += [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
         0x7FBFFFFF, 0x7FFFFFFF, 0xFF812345, 0x00000001, 0x80000001, 0x007FFFFF]
bits += [rng.getrandbits(32) for _ in range(300)]  # random bit patterns (NaN payloads among them)
xin = bits_to_f32(bits)


def enc(x, dt):
    return x.to(dt).view(torch.uint8).to(torch.int64)


def enc_sat(x, dt):
    return x.clamp(-MAXES[dt], MAXES[dt]).to(dt).view(torch.uint8).to(torch.int64)


packed = enc(xin, E4M3) | (enc_sat(xin, E4M3) << 8) | (enc(xin, E5M2) << 16) | (enc_sat(xin, E5M2) << 24)
out["sweep_in"] = xin.view(torch.int32)
out["sweep_fp8"] = packed.numpy().astype(np.uint32).view(np.int32)
out["sweep_bf16"] = xin.to(torch.bfloat16).view(torch.int16).to(torch.int32) & 0xFFFF


# ---- fine-grained quantization (DeepSeek-V3 act_quant / weight quantization semantics) ----
def fmix32(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


def qmat(rows, cols, seed):
    """x[i, j] = n * 2^e, exact in fp32: n a 20-bit signed integer and e in [-30, -15]
    from a hash of (seed, i, j); rows % 4 == 1 and columns 128..255 of those rows are
    zero (a zero tile; in W the bottom-left block is all zero); every 37th value is
    multiplied by 2^8 (outliers, so tiles differ in amax). test_precision.c builds the
    same matrix."""
    x = np.zeros((rows, cols), dtype=np.float32)
    for i in range(rows):
        for j in range(cols):
            h = fmix32((seed * 0x9E3779B1 + i * 65536 + j) & 0xFFFFFFFF)
            n = (h & 0xFFFFF) - 0x80000
            e = ((h >> 20) & 15) - 30
            if (i * cols + j) % 37 == 0:
                e += 8
            x[i, j] = np.float32(n) * np.float32(2.0 ** e)
            if (i % 4 == 1 and 128 <= j < 256) or (i >= 128 and j < 128):
                x[i, j] = 0.0
    return torch.from_numpy(x)


def quant_twin(x, br, bc, dt):
    """One block at a time: amax = max |x| (fp32), scale = amax / max (1 for a zero
    block), codes = (x / scale).clamp(-max, max).to(fp8)."""
    rows, cols = x.shape
    nbr, nbc = -(-rows // br), -(-cols // bc)
    q = torch.zeros(rows, cols, dtype=torch.uint8)
    s = torch.zeros(nbr, nbc, dtype=torch.float32)
    fmax = MAXES[dt]
    for bi in range(nbr):
        for bj in range(nbc):
            blk = x[bi * br:(bi + 1) * br, bj * bc:(bj + 1) * bc]
            amax = blk.abs().amax()
            scale = amax / fmax if amax > 0 else torch.tensor(1.0)
            q[bi * br:(bi + 1) * br, bj * bc:(bj + 1) * bc] = (blk / scale).clamp(-fmax, fmax).to(dt).view(torch.uint8)
            s[bi, bj] = scale
    return q, s


X = qmat(6, 300, 1)
W = qmat(130, 140, 2)
for dt, fname in ((E4M3, "e4m3"), (E5M2, "e5m2")):
    for x, br, bc, layout in ((X, 1, 128, "tile"), (W, 128, 128, "block")):
        q, s = quant_twin(x, br, bc, dt)
        flat = q.reshape(-1).numpy()
        flat = np.concatenate([flat, np.zeros((-len(flat)) % 4, dtype=np.uint8)])
        out["q_%s_%s_codes" % (fname, layout)] = flat.view("<i4")
        out["q_%s_%s_scales" % (fname, layout)] = s
        out["q_%s_%s_x0" % (fname, layout)] = x.reshape(-1)[:8]  # guards the C twin of qmat()


# ---- GradScaler sequences: torch._amp_update_scale_ ----
def scaler_seq(init, growth, backoff, interval, found):
    scale = torch.tensor([init], dtype=torch.float32)
    tracker = torch.tensor([0], dtype=torch.int32)
    scales, trackers = [], []
    for f in found:
        torch._amp_update_scale_(scale, tracker, torch.tensor([float(f)]), growth, backoff, interval)
        scales.append(scale.item())
        trackers.append(tracker.item())
    return scales, trackers


pattern = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
cases = [
    (65536.0, 2.0, 0.5, 3, pattern),
    (3.0, 1.7, 0.3, 4, pattern + [1] * 6 + [0] * 9),  # factors that round in fp32
    (2.0 ** 126, 2.0, 0.5, 2, [0] * 6 + [1] + [0] * 4),  # growth stops short of inf
]
for k, (init, g, b, iv, found) in enumerate(cases):
    sc, tr = scaler_seq(init, g, b, iv, found)
    out["scaler_%d_found" % k] = np.array(found, dtype=np.int32)
    out["scaler_%d_scale" % k] = np.array(sc, dtype=np.float32)
    out["scaler_%d_tracker" % k] = np.array(tr, dtype=np.int32)
    out["scaler_%d_cfg" % k] = np.array([init, g, b, iv], dtype=np.float32)

path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "precision", "precision.bin")
os.makedirs(os.path.dirname(path), exist_ok=True)
write_fixture(path, out)
print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes,", len(bits), "sweep values, torch",
      torch.__version__)
