"""tok_bench_peers.py: the peer side of bench/bench_tok.sh.

  prepare: writes the benchmark texts (tinyshakespeare, the Dolma/CCNet texts and every
           trafilatura page that is valid UTF-8, one file each) and the ~100 MB training
           corpus (those texts joined by newlines, repeated, cut after the first newline
           past --train-mb MB).
  run:     times tiktoken (gpt2) and Hugging Face tokenizers (Frugal's GPT-2
           tokenizer.json, which HF encodes identically) on the same texts, single
           thread and all threads, and HF's BpeTrainer on the training corpus; reads
           the Frugal figures written by bench_tok and prints MB/s and ratios.
Timings are the best of --reps runs.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import time


def prepare(a):
    data = os.path.join(a.shared, "data")
    tdir = os.path.join(a.out, "texts")
    os.makedirs(tdir, exist_ok=True)
    texts = [open(os.path.join(data, "tinyshakespeare.txt"), encoding="utf-8").read()]
    for rel in ["web/dolma/000.json.gz", "web/dolma/cc_en_head-0091.jsonl.gz"]:
        texts += [json.loads(l)["text"] for l in gzip.open(os.path.join(data, rel), "rt", encoding="utf-8") if l.strip()]
    pdir = os.path.join(data, "web/trafilatura_eval")
    for name in sorted(os.listdir(pdir)):
        if name.endswith(".html.gz"):
            try:
                texts.append(gzip.open(os.path.join(pdir, name)).read().decode("utf-8"))
            except UnicodeDecodeError:
                pass
    for i, t in enumerate(texts):
        with open(os.path.join(tdir, "%04d.txt" % i), "w", encoding="utf-8", newline="") as f:
            f.write(t)
    corpus = ("\n".join(texts) + "\n").encode("utf-8")
    target = a.train_mb * 1000000
    written = 0
    with open(os.path.join(a.out, "train.txt"), "wb") as f:
        while written < target:  # whole repetitions, the last one cut after a newline
            part = corpus
            if written + len(part) > target:
                cut = part.find(b"\n", target - written)
                part = part[:cut + 1] if cut >= 0 else part
            f.write(part)
            written += len(part)
    print("prepared %d texts (%.1f MB), training corpus %.1f MB (the texts repeated %.2f times)" % (
        len(texts), sum(len(t.encode("utf-8")) for t in texts) / 1e6, written / 1e6, written / len(corpus)))


def load_texts(tdir):
    return [open(os.path.join(tdir, n), encoding="utf-8", newline="").read() for n in sorted(os.listdir(tdir))]


def best(fn, reps):
    b = 1e30
    out = None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        b = min(b, time.perf_counter() - t0)
    return b, out


# GPT-2's pre-tokenizer pattern (tiktoken's "gpt2" encoding uses the same string).
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def gpt2_tiktoken(shared):
    """tiktoken's GPT-2 encoding from ../shared/data/gpt2 (vocab.bpe, encoder.json), so the
    benchmark needs no download: tiktoken.get_encoding("gpt2") fetches its files from the
    network on first use. Falls back to it when the shared files are absent."""
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    d = os.path.join(shared, "data", "gpt2")
    if not os.path.exists(os.path.join(d, "vocab.bpe")):
        return tiktoken.get_encoding("gpt2")
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=os.path.join(d, "vocab.bpe"),
                                            encoder_json_file=os.path.join(d, "encoder.json"))
    return tiktoken.Encoding("gpt2_shared", pat_str=GPT2_PAT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def single(a):
    """Single-thread encodes (run in a child with RAYON_NUM_THREADS=1)."""
    import tiktoken
    from tokenizers import Tokenizer
    texts = load_texts(a.texts)
    enc = gpt2_tiktoken(a.shared)
    hf = Tokenizer.from_file(a.gpt2_json)
    t_tt, n_tt = best(lambda: sum(len(enc.encode_ordinary(t)) for t in texts), a.reps)
    t_hf, n_hf = best(lambda: sum(len(hf.encode(t).ids) for t in texts), a.reps)
    print(json.dumps({"tiktoken_1": [t_tt, n_tt], "hf_1": [t_hf, n_hf]}))


def run(a):
    import tiktoken
    from tokenizers import Tokenizer
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tok_hf_check as hc
    texts = load_texts(a.texts)
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    threads = os.cpu_count()
    env = dict(os.environ, RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    child = subprocess.run([sys.executable, __file__, "single", "--texts", a.texts, "--gpt2-json", a.gpt2_json,
                            "--reps", str(a.reps), "--shared", a.shared], env=env, check=True, capture_output=True,
                           text=True)
    r = json.loads(child.stdout.strip().splitlines()[-1])
    enc = gpt2_tiktoken(a.shared)
    hf = Tokenizer.from_file(a.gpt2_json)
    t_ttn, n_ttn = best(lambda: sum(len(x) for x in enc.encode_ordinary_batch(texts, num_threads=threads)), a.reps)
    t_hfn, n_hfn = best(lambda: sum(len(e.ids) for e in hf.encode_batch(texts)), a.reps)
    fr = {}
    for line in open(a.frugal):
        p = line.split()
        if p[0] == "frugal" and p[1] != "bytes":
            fr[p[1]] = (float(p[2]), float(p[3]), int(p[4]))
    mb = nbytes / 1e6
    rows = [("frugal", "1 thread", fr["encode_1thread"][0], fr["encode_1thread"][2]),
            ("tiktoken", "1 thread", r["tiktoken_1"][0], r["tiktoken_1"][1]),
            ("HF tokenizers", "1 thread", r["hf_1"][0], r["hf_1"][1]),
            ("frugal", "%d threads" % threads, fr["encode_allthreads"][0], fr["encode_allthreads"][2]),
            ("tiktoken", "%d threads" % threads, t_ttn, n_ttn),
            ("HF tokenizers", "%d threads" % threads, t_hfn, n_hfn)]
    print("encode GPT-2, %d texts, %.1f MB (tinyshakespeare + web), best of %d:" % (len(texts), mb, a.reps))
    print("  %-14s %-10s %8s %8s %10s %s" % ("tokenizer", "threads", "s", "MB/s", "tokens", "frugal speed-up"))
    for name, th, t, n in rows:
        ref = fr["encode_1thread"][0] if th == "1 thread" else fr["encode_allthreads"][0]
        print("  %-14s %-10s %8.3f %8.2f %10d %6.2fx" % (name, th, t, mb / t, n, t / ref))
    same = len({n for _, _, _, n in rows}) == 1
    print("  token counts identical across tokenizers: %s" % same)
    if a.train:
        corpus = open(a.train, encoding="utf-8", newline="").read()
        tb = len(corpus.encode("utf-8")) / 1e6
        t0 = time.perf_counter()
        tok = hc.hf_train([corpus], "gpt2", a.vocab, 2)
        t_hf = time.perf_counter() - t0
        key = "train_%d" % a.vocab
        t_fr = fr[key][0] if key in fr else float("nan")
        print("train %d vocab on %.1f MB (min frequency 2, %d threads): frugal %.1f s, HF BpeTrainer %.1f s "
              "(frugal %.2fx faster); merges frugal %s, HF %d" % (
                  a.vocab, tb, threads, t_fr, t_hf, t_hf / t_fr, fr[key][2] if key in fr else "?",
                  len(hc.merges_of(tok.to_str()))))
    if not same:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["prepare", "run", "single"])
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
    ap.add_argument("--out")
    ap.add_argument("--texts")
    ap.add_argument("--train")
    ap.add_argument("--gpt2-json")
    ap.add_argument("--frugal")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--train-mb", type=int, default=100)
    a = ap.parse_args()
    {"prepare": prepare, "run": run, "single": single}[a.mode](a)


if __name__ == "__main__":
    main()
