"""tok_hf_check.py: checks a Frugal-trained vocabulary against Hugging Face tokenizers.

For each pattern (gpt2, cl100k):
  1. trains with `frugal tokenize train` and with HF's BpeTrainer (ByteLevel alphabet,
     same vocab size, min frequency and special token) on the same training text;
  2. compares the two merge lists;
  3. loads Frugal's tokenizer.json in HF and checks HF's ids == Frugal's ids on
     held-out texts (tinyshakespeare tail + web texts);
  4. compares bytes/token of both vocabularies on the held-out text (must be within 1%).
Exit 1 on any failure.

    python3 tools/tok_hf_check.py --frugal build-tok/frugal [--vocab 4000] [--shared ../shared]
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

CL100K = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")


def safe_chunks(text, size=1 << 20):
    """Cuts text where no pre-token crosses (after a '\\n' between a visible ASCII
    character and an ASCII letter/digit), as Frugal does, so HF's per-sequence
    pre-tokenization sees the same words."""
    out, pos = [], 0
    while pos < len(text):
        end = min(len(text), pos + size)
        while end < len(text) and not (text[end - 1] == "\n" and "!" <= text[end - 2] <= "~" and
                                       text[end].isascii() and text[end].isalnum()):
            end += 1
        out.append(text[pos:end])
        pos = end
    return out


def hf_tokenizer(pattern):
    tok = Tokenizer(models.BPE())
    if pattern == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(CL100K), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_train(texts, pattern, vocab, min_freq):
    tok = hf_tokenizer(pattern)
    tr = trainers.BpeTrainer(vocab_size=vocab, min_frequency=min_freq, special_tokens=["<|endoftext|>"],
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    chunks = [c for t in texts for c in safe_chunks(t)]
    tok.train_from_iterator(chunks, trainer=tr, length=len(chunks))
    return tok


def merges_of(tok_json):
    m = json.loads(tok_json)["model"]["merges"]
    return [x if isinstance(x, str) else " ".join(x) for x in m]


def web_texts(data):
    out = []
    for rel in ["web/dolma/000.json.gz", "web/dolma/cc_en_head-0091.jsonl.gz"]:
        out += [json.loads(l)["text"] for l in gzip.open(os.path.join(data, rel), "rt", encoding="utf-8") if l.strip()]
    tdir = os.path.join(data, "web/trafilatura_eval")
    for name in [n for n in sorted(os.listdir(tdir)) if n.endswith(".html.gz")][:40]:
        try:
            out.append(gzip.open(os.path.join(tdir, name)).read().decode("utf-8"))
        except UnicodeDecodeError:
            pass
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--frugal", default=os.path.join(here, "..", "build-tok", "frugal"))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--min-frequency", type=int, default=2)
    a = ap.parse_args()
    data = os.path.join(a.shared, "data")
    shakes = open(os.path.join(data, "tinyshakespeare.txt"), encoding="utf-8").read()
    cut = shakes.index("\n", int(len(shakes) * 0.9)) + 1
    train_text, held = shakes[:cut], [shakes[cut:]] + web_texts(data)
    failures = 0
    with tempfile.TemporaryDirectory() as td:
        train_path = os.path.join(td, "train.txt")
        open(train_path, "w", encoding="utf-8").write(train_text)
        held_path = os.path.join(td, "held.jsonl")
        with open(held_path, "w", encoding="utf-8") as f:
            for t in held:
                f.write(json.dumps({"text": t}) + "\n")
        held_bytes = sum(len(t.encode("utf-8")) for t in held)
        for pattern in ["gpt2", "cl100k"]:
            out = os.path.join(td, "frugal_%s.json" % pattern)
            subprocess.run([a.frugal, "tokenize", "train", "--vocab-size", str(a.vocab), "--min-frequency",
                            str(a.min_frequency), "--pattern", pattern, "--out", out, train_path], check=True,
                           stdout=subprocess.DEVNULL)
            hf = hf_train([train_text], pattern, a.vocab, a.min_frequency)
            fm, hm = merges_of(open(out, encoding="utf-8").read()), merges_of(hf.to_str())
            same = fm == hm
            first = next((i for i, (x, y) in enumerate(zip(fm, hm)) if x != y), min(len(fm), len(hm)))
            print("[%s] merges: frugal %d, HF %d, identical: %s%s" % (
                pattern, len(fm), len(hm), same, "" if same else " (first difference at %d: %r vs %r)" % (
                    first, fm[first] if first < len(fm) else None, hm[first] if first < len(hm) else None)))
            # HF loads Frugal's file and must give Frugal's ids
            mine = Tokenizer.from_file(out)
            got = subprocess.run([a.frugal, "tokenize", "encode", "--tokenizer", out, "--print", "--no-eot", held_path],
                                 check=True, capture_output=True, text=True).stdout.split()
            frugal_ids = [int(x) for x in got]
            hf_ids = [i for t in held for i in mine.encode(t).ids]
            ids_same = frugal_ids == hf_ids
            print("[%s] HF on Frugal's tokenizer.json: %d vs %d ids on %d held-out bytes, identical: %s" % (
                pattern, len(hf_ids), len(frugal_ids), held_bytes, ids_same))
            n_hf = sum(len(hf.encode(t).ids) for t in held)
            bpt_f, bpt_h = held_bytes / len(frugal_ids), held_bytes / n_hf
            rel = abs(bpt_f - bpt_h) / bpt_h
            print("[%s] held-out bytes/token: frugal %.4f, HF trainer %.4f (diff %.3f%%, limit 1%%)" % (
                pattern, bpt_f, bpt_h, 100 * rel))
            failures += (not ids_same) + (rel > 0.01)
    print("FAIL" if failures else "OK")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
