"""gen_tok_fixtures.py: writes tests/fixtures/tok/tiktoken_gpt2.json, the expected
GPT-2 token count and FNV-1a-64 hash of the ids (each id as 4 little-endian bytes,
documents concatenated in order, no separators) that tiktoken's gpt2 encoding gives
on ../shared/data texts: tinyshakespeare.txt (one document), every trafilatura page
that is valid UTF-8 (one document each), the Dolma/CCNet JSONL texts (one document
per line), cc_net's sample WET file, and tests/fixtures/tok/long_words.txt (written
here: words of 500-5000 bytes, for the heap merge path). test_tok.c recomputes both
with Frugal. Also writes hf_train.json (see write_hf_train).

    python3 tools/gen_tok_fixtures.py [--shared ../shared]
"""
import argparse
import gzip
import json
import os

import sys

import tiktoken


def fnv64(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def gpt2_encoding(shared):
    try:
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        ranks = data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=os.path.join(shared, "data/gpt2/vocab.bpe"),
            encoder_json_file=os.path.join(shared, "data/gpt2/encoder.json"))
        ref = tiktoken.get_encoding("gpt2")
        return tiktoken.Encoding("gpt2_local", pat_str=ref._pat_str, mergeable_ranks=ranks,
                                 special_tokens={"<|endoftext|>": 50256})
    except Exception:  # older tiktoken: use its cached copy (the same pinned files)
        return tiktoken.get_encoding("gpt2")


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--shared", default=os.path.join(here, "..", "..", "shared"))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "tok", "tiktoken_gpt2.json"))
    a = ap.parse_args()
    enc = gpt2_encoding(a.shared)
    data = os.path.join(a.shared, "data")
    entries = []

    def add(rel, kind, docs):
        ids = []
        nbytes = 0
        for d in docs:
            ids.extend(enc.encode_ordinary(d))
            nbytes += len(d.encode("utf-8"))
        entries.append({"path": rel, "kind": kind, "docs": len(docs), "bytes": nbytes, "n_tokens": len(ids),
                        "fnv64": "%016x" % fnv64(ids)})

    add("tinyshakespeare.txt", "raw", [open(os.path.join(data, "tinyshakespeare.txt"), encoding="utf-8").read()])
    # long words (beyond the linear-scan merge loop's 128 bytes: the heap path)
    import random
    rng = random.Random(7)
    parts = ["a" * 3000, " " + "ab" * 700, "\n" + "".join(rng.choice("etaoinshrdlu") for _ in range(2000)),
             " " + "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0" * 60, " " + "9" * 500, " " + "=-" * 300,
             " " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5000))]
    long_path = os.path.join(os.path.dirname(a.out), "long_words.txt")
    with open(long_path, "w", encoding="utf-8", newline="") as f:
        f.write("".join(parts))
    ids = enc.encode_ordinary("".join(parts))
    entries.append({"path": "tests/fixtures/tok/long_words.txt", "kind": "source", "docs": 1,
                    "bytes": len("".join(parts).encode("utf-8")), "n_tokens": len(ids), "fnv64": "%016x" % fnv64(ids)})
    add("web/cc/sample.warc.txt", "raw", [open(os.path.join(data, "web/cc/sample.warc.txt"), "rb").read().decode("utf-8")])
    for rel in ["web/dolma/000.json.gz", "web/dolma/cc_en_head-0091.jsonl.gz"]:
        docs = [json.loads(l)["text"] for l in gzip.open(os.path.join(data, rel), "rt", encoding="utf-8") if l.strip()]
        add(rel, "jsonl.gz", docs)
    tdir = os.path.join(data, "web/trafilatura_eval")
    skipped = 0
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".html.gz"):
            continue
        raw = gzip.open(os.path.join(tdir, name)).read()
        try:
            text = raw.decode("utf-8")  # tiktoken needs valid Unicode; others are left out
        except UnicodeDecodeError:
            skipped += 1
            continue
        if "\r" in text:  # Python's text round trip is exact; keep \r as is
            pass
        add("web/trafilatura_eval/" + name, "gz", [text])
    with open(a.out, "w") as f:
        json.dump({"encoding": "tiktoken gpt2 " + tiktoken.__version__ if hasattr(tiktoken, "__version__") else "gpt2",
                   "hash": "fnv1a64 over u32le ids", "entries": entries}, f, indent=0)
        f.write("\n")
    print("wrote %s: %d entries (%d pages not valid UTF-8 skipped), %d tokens" %
          (a.out, len(entries), skipped, sum(e["n_tokens"] for e in entries)))
    write_hf_train(data, os.path.join(os.path.dirname(a.out), "hf_train.json"))


def write_hf_train(data, out):
    """hf_train.json: Hugging Face BpeTrainer's merges (vocab 1000, min frequency 2,
    special <|endoftext|>, full byte alphabet) on the first 90% of tinyshakespeare (cut
    after a newline), and the count+hash of the ids its tokenizer gives on the rest,
    for both pre-tokenizer patterns. test_tok.c trains the same with Frugal."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import tok_hf_check as hc
    shakes = open(os.path.join(data, "tinyshakespeare.txt"), encoding="utf-8").read()
    cut = shakes.index("\n", int(len(shakes) * 0.9)) + 1
    res = {"train_bytes": len(shakes[:cut].encode("utf-8")), "vocab_size": 1000, "min_frequency": 2, "runs": []}
    for pattern in ["gpt2", "cl100k"]:
        tok = hc.hf_train([shakes[:cut]], pattern, 1000, 2)
        # HF numbers the special token first (id 0); Frugal puts specials last, so
        # HF's ids of ordinary tokens are Frugal's plus one
        ids = [i - 1 for i in tok.encode(shakes[cut:]).ids]
        res["runs"].append({"pattern": pattern, "merges": hc.merges_of(tok.to_str()), "heldout_tokens": len(ids),
                            "heldout_fnv64": "%016x" % fnv64(ids)})
    with open(out, "w") as f:
        json.dump(res, f, ensure_ascii=False)
        f.write("\n")
    print("wrote %s" % out)


if __name__ == "__main__":
    main()
