"""data_make_labeled.py: builds a web-quality labeled set (JSONL) from trafilatura's
evaluation pages and ground truth in ../shared/data/web, for `frugal clean`'s
ambiguous-only vs classify-all comparison (bench/bench_clean.sh).

For each page in web/trafilatura_eval, the HTML is turned into text lines (scripts and
styles dropped, block tags -> newlines, other tags removed, entities decoded). A line
holding one of the page's "with" strings (main content, by trafilatura's human labels)
centres a positive segment; a line holding a "without" string (boilerplate) centres a
negative one. A segment is the line and its +-W neighbours; segments holding both kinds
are dropped, and repeated segments are kept once. Pages are split into train / test by
a hash of the file name, so no page gives segments to both sides.

usage: python3 tools/data_make_labeled.py SHARED_DATA_DIR OUT_PREFIX [--window W]
writes OUT_PREFIX.train.jsonl and OUT_PREFIX.test.jsonl with {"text", "label", "page"}.
"""
import gzip
import hashlib
import html
import json
import os
import re
import sys

SCRIPT = re.compile(r"<(script|style|noscript|template|svg|head)\b[^>]*>.*?</\1\s*>", re.I | re.S)
BLOCK = re.compile(r"</?(p|div|br|li|ul|ol|h[1-6]|tr|td|table|section|article|header|footer|nav|aside|blockquote|pre|form|hr|title|main)\b[^>]*>", re.I)
TAG = re.compile(r"<[^>]*>")


def page_lines(raw):
    t = SCRIPT.sub(" ", raw)
    t = re.sub(r"<!--.*?-->", "", t, flags=re.S)
    t = BLOCK.sub("\n", t)
    t = TAG.sub("", t)
    t = html.unescape(t)
    lines = [re.sub(r"[ \t\xa0]+", " ", l).strip() for l in t.split("\n")]
    return [l for l in lines if l]


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    data, prefix = sys.argv[1], sys.argv[2]
    window = int(sys.argv[sys.argv.index("--window") + 1]) if "--window" in sys.argv else 3
    with gzip.open(os.path.join(data, "web", "evaldata.json.gz"), "rt", encoding="utf-8") as f:
        truth = {v["file"]: v for v in json.load(f).values()}
    pages = sorted(os.listdir(os.path.join(data, "web", "trafilatura_eval")))
    out = {"train": [], "test": []}
    seen = set()
    for name in pages:
        if not name.endswith(".html.gz"):
            continue
        t = truth.get(name[:-3])
        if not t:
            continue
        with gzip.open(os.path.join(data, "web", "trafilatura_eval", name), "rb") as f:
            raw = f.read().decode("utf-8", errors="replace")
        lines = page_lines(raw)
        split = "test" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % 10 < 3 else "train"
        for label, key in ((1, "with"), (0, "without")):
            for s in t.get(key, []):
                idx = [i for i, l in enumerate(lines) if s in l]
                if not idx:
                    continue
                i = idx[0]
                seg = lines[max(0, i - window): i + window + 1]
                text = "\n".join(seg)
                other = t.get("without" if label else "with", [])
                if any(o in text for o in other) or text in seen:
                    continue
                seen.add(text)
                out[split].append({"text": text, "label": label, "page": name})
    for split, rows in out.items():
        with open(f"{prefix}.{split}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        pos = sum(r["label"] for r in rows)
        print(f"{prefix}.{split}.jsonl: {len(rows)} segments, {pos} positive, {len(rows) - pos} negative")


if __name__ == "__main__":
    main()
