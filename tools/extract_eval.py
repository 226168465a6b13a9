#!/usr/bin/env python3
# extract_eval.py: scores main-content extraction on trafilatura's evaluation pages the
# way trafilatura's own evaluation does (tests/comparison*.py: each "with" string found in
# the text is a true positive, missing a false negative; each "without" string found a
# false positive), for Frugal's output and for trafilatura run here, with MB/s per core.
# usage: extract_eval.py EVALDATA.json.gz PAGES_DIR [--frugal KEPT.jsonl REPORT.json]...
#        [--trafilatura] [--per-page FILE]
# PAGES_DIR holds the *.html.gz pages; a page Frugal rejected scores as empty text (its
# "with" strings are all missed). MB are the decompressed HTML bytes; per-core speed is
# MB / CPU seconds (Frugal: the report's cpu_seconds with --threads 1; trafilatura:
# process time around each extract() call, so reading and gunzip are not counted for it).
import argparse, gzip, hashlib, json, os, sys, time


def half(f):
    """The page's half (0/1) by the MD5 of its name: rules tuned on one half are checked on
    the other (docs/perf/extract.md)."""
    return int(hashlib.md5(f.encode()).hexdigest(), 16) % 2


def halves(texts, items):
    return " ".join(f"{'AB'[h]} {score(texts, {f: v for f, v in items.items() if half(f) == h})[2]:.3f}"
                    for h in (0, 1))


def score(texts, items):
    tp = fn = fp = tn = 0
    per = {}
    for f, it in items.items():
        t = texts.get(f)
        a = b = c = d = 0
        for s in it["with"]:
            if t is not None and s in t:
                a += 1
            else:
                b += 1
        for s in it["without"]:
            if t is not None and s in t:
                c += 1
            else:
                d += 1
        per[f] = (a, b, c, d)
        tp, fn, fp, tn = tp + a, fn + b, fp + c, tn + d
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1, per


def load_frugal(kept, pages):
    texts = {}
    for path in (kept, kept + ".rejects.jsonl"):
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                j = json.loads(line)
                src = j.get("source", "")
                name = os.path.basename(src)
                if name.endswith(".gz"):
                    name = name[:-3]
                if name in pages:
                    texts[name] = None if "reject" in j else j["text"]
    return texts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("evaldata")
    ap.add_argument("pages")
    ap.add_argument("--frugal", nargs=3, action="append", default=[], metavar=("NAME", "KEPT", "REPORT"))
    ap.add_argument("--trafilatura", action="store_true")
    ap.add_argument("--per-page")
    a = ap.parse_args()
    with gzip.open(a.evaldata, "rt", encoding="utf-8") as fh:
        ev = json.load(fh)
    byfile = {v["file"]: v for v in ev.values()}
    pages = sorted(f[:-3] for f in os.listdir(a.pages) if f.endswith(".html.gz"))
    items = {f: byfile[f] for f in pages if f in byfile}
    raw = {f: gzip.open(os.path.join(a.pages, f + ".gz")).read() for f in items}
    mb = sum(len(b) for b in raw.values()) / 1e6
    print(f"pages: {len(items)} scored ({len(pages)} in {a.pages}), {mb:.1f} MB of HTML")
    print(f"{'extractor':34s} {'P':>6s} {'R':>6s} {'F1':>6s}   MB/s/core  (CPU s)   F1 on halves")
    rows = {}
    for name, kept, rep in a.frugal:
        texts = load_frugal(kept, items)
        p, r, f1, per = score(texts, items)
        cpu = json.load(open(rep))["cpu_seconds"]
        rows[name] = per
        print(f"{name:34s} {p:6.3f} {r:6.3f} {f1:6.3f}   {mb / cpu:8.2f}  ({cpu:5.2f})   {halves(texts, items)}")
    if a.trafilatura:
        import trafilatura
        for name, kw in (("trafilatura " + trafilatura.__version__, {}),
                         ("trafilatura fast", {"fast": True})):
            texts, cpu = {}, 0.0
            for f, b in raw.items():
                t0 = time.process_time()
                texts[f] = trafilatura.extract(b, include_comments=False, **kw)
                cpu += time.process_time() - t0
            p, r, f1, per = score(texts, items)
            rows[name] = per
            print(f"{name:34s} {p:6.3f} {r:6.3f} {f1:6.3f}   {mb / cpu:8.2f}  ({cpu:5.2f})   {halves(texts, items)}")
    if a.per_page:
        with open(a.per_page, "w") as fh:
            names = list(rows)
            fh.write("page\t" + "\t".join(f"{n} tp/fn/fp/tn" for n in names) + "\n")
            for f in items:
                fh.write(f + "\t" + "\t".join("/".join(map(str, rows[n][f])) for n in names) + "\n")


if __name__ == "__main__":
    sys.exit(main())
