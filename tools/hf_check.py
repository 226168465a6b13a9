#!/usr/bin/env python3
"""hf_check.py: the real client for `frugal convert --to-hf` / `--from-hf`.

Trains tiny llama-, gpt2- and MoE (llama layout) runs with the frugal binary (or takes --run DIRs),
exports each with `frugal convert --to-hf`, loads it with transformers
(AutoModelForCausalLM, fp32; any missing, unexpected or mismatched weight fails) and compares the logits of a fixed prompt with the ones
`frugal convert --logits` writes: max |a-b| / max |b| <= 1e-4. Also imports the committed
transformers fixtures (tests/fixtures/hf_*) with `--from-hf` and compares Frugal's logits
with transformers' own on the fixture. Exit 0 and "N passed, 0 failed" when all agree;
exit 77 (skip) when torch or transformers is missing.

usage: hf_check.py --frugal build/frugal [--run RUN ...] [--corpus FILE] [--keep DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
except ImportError as e:  # pragma: no cover
    print(f"hf_check: skipped: {e} (pip install torch transformers safetensors)")
    sys.exit(77)

TOL = 1e-4
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def frugal_logits(frugal, run_dir, ids, tmp):
    out = os.path.join(tmp, "logits.f32")
    run([frugal, "convert", "--run", run_dir, "--tokens", ",".join(map(str, ids)), "--logits", out])
    a = np.fromfile(out, dtype="<f4")
    return a.reshape(len(ids), -1)


def hf_logits(hf_dir, ids):
    try:
        m, info = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, output_loading_info=True)
    except TypeError:  # transformers 4.x
        m, info = AutoModelForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if bad:
        raise RuntimeError(f"{hf_dir}: transformers loaded it with {bad}")
    m.eval()
    with torch.no_grad():
        return m(torch.tensor([ids])).logits[0].float().numpy(), type(m).__name__


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def prompt(vocab, n):
    # fixed: a spread of ids below the vocabulary, deterministic
    return [(17 * i * i + 3 * i + 1) % vocab for i in range(n)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frugal", default=os.path.join(ROOT, "build", "frugal"))
    ap.add_argument("--run", action="append", default=[])
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--keep", default=None)
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp(prefix="hf_check.")
    os.makedirs(tmp, exist_ok=True)
    torch.manual_seed(0)
    passed = failed = 0
    runs = list(a.run)
    if not runs:
        corpus = a.corpus or os.path.join(tmp, "corpus.txt")
        if not a.corpus:
            with open(corpus, "w") as f:
                for i in range(3000):
                    f.write(f"the cat {i % 7} sat on the mat {i % 13}. a dog ran {i % 5} times.\n")
        # MoE: Glm4MoeForCausalLM, with every routing knob away from its default
        moe = ["--n-expert", "4", "--n-expert-active", "2", "--n-shared-expert", "1", "--d-expert", "32",
               "--n-dense-layers", "1", "--route-scale", "2.5", "--router-logit-scale", "0.5"]
        for name, layout, extra in (("llama", "llama", []), ("gpt2", "gpt2", []), ("moe", "llama", moe)):
            d = os.path.join(tmp, f"run_{name}")
            run([a.frugal, "train", "--layout", layout, "--n-layer", "3", "--d-model", "64", "--n-head", "4",
                 "--seq-len", "32", "--batch-size", "4", "--max-steps", "30", "--val-batches", "1", "--data", corpus,
                 "--out", d, "--tokenizer", "byte", "--overwrite", "1"] + extra)
            runs.append(d)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for i, r in enumerate(runs):
        hf = os.path.join(tmp, os.path.basename(os.path.normpath(r)) + "_hf")
        # the first run is exported in shards of 100 kB: transformers reads the index too
        run([a.frugal, "convert", "--to-hf", hf, "--run", r] + (["--shard-mb", "0.1"] if i == 0 else []))
        if i == 0 and not os.path.exists(os.path.join(hf, "model.safetensors.index.json")):
            raise RuntimeError(f"{hf}: --shard-mb 0.1 wrote no index")
        cfg = transformers.AutoConfig.from_pretrained(hf)
        ids = prompt(cfg.vocab_size, min(24, getattr(cfg, "max_position_embeddings", getattr(cfg, "n_positions", 24))))
        want = frugal_logits(a.frugal, r, ids, tmp)
        got, cls = hf_logits(hf, ids)
        e = rel_err(got, want)
        ok = e <= TOL
        passed += ok
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} export {r} -> {cls}: logits [{len(ids)}, {want.shape[1]}] rel err {e:.2e}")
    fx_dir = os.path.join(ROOT, "tests", "fixtures")
    for name in sorted(os.listdir(fx_dir)):
        if not name.startswith("hf_"):
            continue
        src = os.path.join(fx_dir, name)
        dst = os.path.join(tmp, "import_" + name)
        run([a.frugal, "convert", "--from-hf", src, "--out", dst])
        cfg = transformers.AutoConfig.from_pretrained(src)
        ids = prompt(cfg.vocab_size, 20)
        want, cls = hf_logits(src, ids)
        got = frugal_logits(a.frugal, dst, ids, tmp)
        e = rel_err(got, want)
        ok = e <= TOL
        passed += ok
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} import {cls} {name}: logits rel err {e:.2e}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
