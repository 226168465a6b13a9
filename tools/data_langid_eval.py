#!/usr/bin/env python3
# data_langid_eval.py: accuracy of Frugal's per-document language ("lang" in the kept
# JSONL) against a labelled set built from ../shared: the trafilatura evaluation pages
# whose <html lang> attribute is set (INDEX.tsv, column 3; the publisher's declaration,
# primary subtag compared, so "de-DE" is "de" and cld2's "zh-Hant" is "zh").
# usage: data_langid_eval.py INDEX.tsv KEPT.jsonl [KEPT.jsonl.rejects.jsonl]
# Pages without a lang attribute ("?") are not counted; a page with no "lang" in the
# output (rejected before cleaning) counts as wrong.
import collections, json, os, sys


def prim(code):
    return code.split("-")[0].split("_")[0].lower()


def main():
    labels = {}
    with open(sys.argv[1], encoding="utf-8") as fh:
        for line in fh:
            f = line.rstrip("\n").split("\t")
            if len(f) >= 3 and f[0].endswith(".gz") and f[2] not in ("?", ""):
                labels[f[0]] = prim(f[2])
    got = {}
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                j = json.loads(line)
                name = os.path.basename(j.get("source", ""))
                if name in labels and "lang" in j:
                    got[name] = prim(j["lang"])
    ok = sum(1 for n, l in labels.items() if got.get(n) == l)
    per = collections.Counter(labels.values())
    wrong = collections.Counter((l, got.get(n, "-")) for n, l in labels.items() if got.get(n) != l)
    print(f"language id: {ok}/{len(labels)} = {ok / len(labels):.3f} agree with <html lang> "
          f"({', '.join(f'{k} {v}' for k, v in per.most_common())})")
    for (want, have), k in wrong.most_common():
        print(f"  declared {want}, identified {have}: {k}")


if __name__ == "__main__":
    main()
