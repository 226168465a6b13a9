#!/usr/bin/env python3
"""gguf_check.py: the real client for `frugal convert --to-gguf`: llama.cpp, through
llama-cpp-python (PyPI; its install builds llama.cpp).

Trains a small llama-layout run with the frugal binary (or takes --run), exports it as
GGUF f32 and Q8_0, and checks with llama.cpp:
  1. the f32 file's greedy continuation of 4 prompts equals Frugal's
     (`frugal convert --greedy`) for 32 tokens;
  2. the perplexity on the run's validation tokens (data/val.bin) of Frugal fp32
     (`frugal convert --logits`), llama.cpp f32 and llama.cpp Q8_0: f32 logits must agree
     with Frugal to 1e-4 relative (KV cache in f32), Q8_0 is reported (and must stay
     within 2%).
Exit 0 with "N passed, 0 failed"; 77 (skip) without llama_cpp or numpy.

usage: gguf_check.py --frugal build/frugal [--run RUN] [--corpus FILE] [--windows N]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from llama_cpp import Llama
except ImportError as e:  # pragma: no cover
    print(f"gguf_check: skipped: {e} (pip install llama-cpp-python numpy)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_GEN = 32


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def read_shard(path):
    """Token ids of a Frugal v2/v1 shard (64-byte header) or an llm.c file."""
    b = open(path, "rb").read()
    if b[:4] == b"HSGF":
        tb = int.from_bytes(b[8:12], "little")
        n = int.from_bytes(b[16:24], "little")
        return np.frombuffer(b[64:64 + n * tb], dtype="<u2" if tb == 2 else "<u4").astype(np.int64)
    n = int.from_bytes(b[8:12], "little")
    return np.frombuffer(b[1024:1024 + 2 * n], dtype="<u2").astype(np.int64)


def frugal_logits(frugal, run_dir, ids, tmp):
    out = os.path.join(tmp, "logits.f32")
    run([frugal, "convert", "--run", run_dir, "--tokens", ",".join(map(str, ids)), "--logits", out])
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1)


def nll(logits, ids):
    """Sum of -log p(ids[t+1] | ids[..t]) over the window, and the count."""
    lg = logits[:-1].astype(np.float64)
    m = lg.max(axis=1, keepdims=True)
    lse = (m[:, 0] + np.log(np.exp(lg - m).sum(axis=1)))
    tgt = np.asarray(ids[1:])
    return float((lse - lg[np.arange(len(tgt)), tgt]).sum()), len(tgt)


def llama_logits(llm, ids):
    llm.reset()
    llm.eval(list(map(int, ids)))
    return np.array(llm.scores[:len(ids)], dtype=np.float32)


def llama_greedy(llm, prompt, n):
    llm.reset()
    llm.eval(list(map(int, prompt)))
    out = []
    for _ in range(n):
        t = int(np.argmax(llm.scores[llm.n_tokens - 1]))  # lowest id on ties, as Frugal's sampler
        out.append(t)
        llm.eval([t])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frugal", default=os.path.join(ROOT, "build", "frugal"))
    ap.add_argument("--run", default=None)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--windows", type=int, default=48)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--keep", default=None)
    a = ap.parse_args()
    tmp = a.keep or tempfile.mkdtemp(prefix="gguf_check.")
    os.makedirs(tmp, exist_ok=True)
    r = a.run
    if not r:
        corpus = a.corpus
        if not corpus:
            shake = os.path.join(ROOT, "..", "shared", "data", "tinyshakespeare.txt")
            corpus = os.path.join(tmp, "corpus.txt")
            if os.path.exists(shake):
                open(corpus, "wb").write(open(shake, "rb").read()[:300000])
            else:
                with open(corpus, "w") as f:
                    for i in range(5000):
                        f.write(f"the cat {i % 7} sat on the mat {i % 13}. a dog ran {i % 5} times.\n")
        r = os.path.join(tmp, "run_llama")
        run([a.frugal, "train", "--layout", "llama", "--n-layer", "2", "--d-model", "64", "--n-head", "4",
             "--seq-len", "64", "--batch-size", "8", "--max-steps", "150", "--lr", "3e-3", "--val-batches", "1",
             "--data", corpus, "--out", r, "--tokenizer", "byte", "--overwrite", "1"])
    val = read_shard(os.path.join(r, "data", "val.bin"))
    cfg = json.load(open(os.path.join(r, "config.json")))
    maxT = cfg["max_seq_len"]
    files = {}
    for t in ("f32", "q8_0"):
        files[t] = os.path.join(tmp, f"model_{t}.gguf")
        run([a.frugal, "convert", "--to-gguf", files[t], "--run", r, "--type", t])
    passed = failed = 0

    def check(ok, msg):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {msg}")

    # KV cache in f32 (llama.cpp's default is f16, which alone costs ~3e-4 of relative logit error)
    llms = {t: Llama(model_path=files[t], n_ctx=maxT, n_batch=maxT, logits_all=True, verbose=False, n_threads=2,
                     seed=0, type_k=0, type_v=0) for t in files}
    n_prompt = maxT - N_GEN
    for p in range(a.prompts):
        prompt = [int(x) for x in val[p * 997 % max(1, len(val) - n_prompt):][:n_prompt]]
        want = [int(x) for x in run([a.frugal, "convert", "--run", r, "--tokens", ",".join(map(str, prompt)),
                                     "--greedy", str(N_GEN)]).split()]
        got = llama_greedy(llms["f32"], prompt, N_GEN)
        same = sum(1 for x, y in zip(got, want) if x == y)
        check(got == want, f"prompt {p}: greedy continuation, {N_GEN} tokens after {n_prompt}: llama.cpp f32 "
              f"{'equals' if got == want else 'differs from'} Frugal ({same}/{N_GEN} equal)\n"
              f"  frugal {want}\n  llama  {got}")
    # perplexity over non-overlapping windows of the validation tokens
    sums = {"frugal": [0.0, 0], "f32": [0.0, 0], "q8_0": [0.0, 0]}
    worst = 0.0
    for w in range(a.windows):
        ids = val[w * maxT:(w + 1) * maxT]
        if len(ids) < maxT:
            break
        fl = frugal_logits(a.frugal, r, ids, tmp)
        for k, lg in (("frugal", fl), ("f32", llama_logits(llms["f32"], ids)), ("q8_0", llama_logits(llms["q8_0"], ids))):
            s, n = nll(lg, ids)
            sums[k][0] += s
            sums[k][1] += n
            if k == "f32":
                worst = max(worst, float(np.max(np.abs(lg - fl)) / np.max(np.abs(fl))))
    ppl = {k: math.exp(s / n) for k, (s, n) in sums.items()}
    print(f"validation: {sums['frugal'][1]} predicted tokens in windows of {maxT} (run {r})")
    print(f"  perplexity Frugal fp32 {ppl['frugal']:.4f} | llama.cpp f32 {ppl['f32']:.4f} | llama.cpp Q8_0 "
          f"{ppl['q8_0']:.4f} ({100 * (ppl['q8_0'] / ppl['frugal'] - 1):+.3f}%)")
    check(worst <= 1e-4, f"llama.cpp f32 logits vs Frugal: max rel err {worst:.2e} <= 1e-4")
    check(abs(ppl["f32"] / ppl["frugal"] - 1) <= 1e-4, "llama.cpp f32 perplexity equals Frugal's to 1e-4")
    check(abs(ppl["q8_0"] / ppl["frugal"] - 1) <= 0.02, "Q8_0 perplexity within 2% of Frugal fp32")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
