"""gen_optim_fixtures.py: writes tests/fixtures/optim/adamw.bin, the PyTorch oracle for
test_optim.c: three torch.optim.AdamW steps (two param groups: decay / no decay) and one
torch.nn.utils.clip_grad_norm_ over the same flat layout.

Run from the repo root: python3 tools/gen_optim_fixtures.py
Layout of the flat buffer (floats): w1 [8,16] decay | b1 [16] no decay |
frozen [4] (never touched) | w2 [5,7] decay.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from fixtures import write_fixture  # noqa: E402

torch.manual_seed(1234)
shapes = [("w1", (8, 16), 1), ("b1", (16,), 0), ("frozen", (4,), -1), ("w2", (5, 7), 1)]
LR = [1e-2, 5e-3, 2e-3]
BETAS, EPS, WD = (0.9, 0.95), 1e-8, 0.1

params = {n: torch.randn(*s) for n, s, _ in shapes}
grads = [{n: torch.randn(*s) * (k + 1) for n, s, _ in shapes} for k in range(3)]


def flat(d):
    return torch.cat([d[n].reshape(-1) for n, _, _ in shapes])


p0 = flat(params)
tp = {n: torch.nn.Parameter(params[n].clone()) for n, _, _ in shapes}
opt = torch.optim.AdamW(
    [
        {"params": [tp[n] for n, _, d in shapes if d == 1], "weight_decay": WD},
        {"params": [tp[n] for n, _, d in shapes if d == 0], "weight_decay": 0.0},
    ],
    lr=LR[0], betas=BETAS, eps=EPS,
)
out = {"p0": p0}
for k in range(3):
    for g in opt.param_groups:
        g["lr"] = LR[k]
    for n, _, d in shapes:
        tp[n].grad = grads[k][n].clone() if d >= 0 else None
    opt.step()
    out["g%d" % (k + 1)] = flat(grads[k])
    out["p%d" % (k + 1)] = flat({n: tp[n].detach() for n, _, _ in shapes})


def state(key):
    return torch.cat([opt.state[tp[n]][key].reshape(-1) if d >= 0 else torch.zeros(tp[n].numel())
                      for n, s, d in shapes])


out["m3"] = state("exp_avg")
out["v3"] = state("exp_avg_sq")
out["lr"] = torch.tensor(LR)
out["hyper"] = torch.tensor([BETAS[0], BETAS[1], EPS, WD])

# clipping: max_norm 1.0 over every non-frozen tensor
cg = {n: torch.nn.Parameter(torch.zeros(*s)) for n, s, _ in shapes}
gc = {n: torch.randn(*s) * 0.5 for n, s, _ in shapes}
for n, _, d in shapes:
    cg[n].grad = gc[n].clone()
norm = torch.nn.utils.clip_grad_norm_([cg[n] for n, _, d in shapes if d >= 0], 1.0)
out["clip_in"] = flat(gc)
out["clip_out"] = flat({n: (cg[n].grad if d >= 0 else gc[n]) for n, _, d in shapes})
out["clip_norm"] = torch.tensor([float(norm)])

path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim", "adamw.bin")
write_fixture(path, out)
print("wrote", os.path.normpath(path), "torch", torch.__version__)
