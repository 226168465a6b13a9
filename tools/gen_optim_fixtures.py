"""gen_optim_fixtures.py: writes tests/fixtures/optim/adamw.bin, the PyTorch oracle for
test_optim.c: three torch.optim.AdamW steps (two param groups: decay / no decay) and one
torch.nn.utils.clip_grad_norm_ over the same flat layout; and adamw_bf16m.bin, the twin
of Frugal's AdamW with bf16 moments (adam_moments bf16): the same three steps of
torch.optim.AdamW (fp32 arithmetic, state read as stored) with exp_avg and exp_avg_sq
rounded to bfloat16 (round to nearest even) after every step, so each update uses the
fresh fp32 moments and the next step starts from their bf16 values.

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


def run_adamw(round_moments):
    tp = {n: torch.nn.Parameter(params[n].clone()) for n, _, _ in shapes}
    opt = torch.optim.AdamW(
        [
            {"params": [tp[n] for n, _, d in shapes if d == 1], "weight_decay": WD},
            {"params": [tp[n] for n, _, d in shapes if d == 0], "weight_decay": 0.0},
        ],
        lr=LR[0], betas=BETAS, eps=EPS, foreach=False,
    )
    res = {"p0": p0}
    for k in range(3):
        for g in opt.param_groups:
            g["lr"] = LR[k]
        for n, _, d in shapes:
            tp[n].grad = grads[k][n].clone() if d >= 0 else None
        opt.step()
        if round_moments:
            with torch.no_grad():
                for st in opt.state.values():
                    for key in ("exp_avg", "exp_avg_sq"):
                        st[key].copy_(st[key].to(torch.bfloat16).float())
        res["g%d" % (k + 1)] = flat(grads[k])
        res["p%d" % (k + 1)] = flat({n: tp[n].detach() for n, _, _ in shapes})

    def state(key):
        return torch.cat([opt.state[tp[n]][key].reshape(-1) if d >= 0 else torch.zeros(tp[n].numel())
                          for n, s, d in shapes])

    res["m3"] = state("exp_avg")
    res["v3"] = state("exp_avg_sq")
    res["lr"] = torch.tensor(LR)
    res["hyper"] = torch.tensor([BETAS[0], BETAS[1], EPS, WD])
    return res


out = run_adamw(False)
bf16m = run_adamw(True)
# bf16(params) after the last step: the copy the fused step writes for bf16 training
bf16m["p3_bf16"] = bf16m["p3"].to(torch.bfloat16).float()

# clipping: max_norm 1.0 over every non-frozen tensor
cg = {n: torch.nn.Parameter(torch.zeros(*s)) for n, s, _ in shapes}
gc = {n: torch.randn(*s) * 0.5 for n, s, _ in shapes}
for n, _, d in shapes:
    cg[n].grad = gc[n].clone()
norm = torch.nn.utils.clip_grad_norm_([cg[n] for n, _, d in shapes if d >= 0], 1.0)
out["clip_in"] = flat(gc)
out["clip_out"] = flat({n: (cg[n].grad if d >= 0 else gc[n]) for n, _, d in shapes})
out["clip_norm"] = torch.tensor([float(norm)])

for name, d in (("adamw.bin", out), ("adamw_bf16m.bin", bf16m)):
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "optim", name)
    write_fixture(path, d)
    print("wrote", os.path.normpath(path), "torch", torch.__version__)
