#!/usr/bin/env python3
# data_datatrove_compare.py: kept-set agreement between `frugal clean --profile datatrove`
# and datatrove's default GopherRepetitionFilter + GopherQualityFilter + C4QualityFilter
# on one JSONL file (documents identified by line number), with datatrove's reason for
# each disagreement, and MB per CPU-second of datatrove's filter stage.
# usage: data_datatrove_compare.py INPUT.jsonl FRUGAL_KEPT.jsonl WORKDIR
# FRUGAL_KEPT must come from a run on INPUT with --no-dedup (each line keeps "line").
import json, os, resource, shutil, sys


def cpu():
    s = resource.getrusage(resource.RUSAGE_SELF)
    return s.ru_utime + s.ru_stime


def main():
    inp, fk, work = sys.argv[1:4]
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    docs = [json.loads(l) for l in open(inp, encoding="utf-8")]
    filters = [GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter()]
    dt_keep, reason = set(), {}
    # warm-up (spaCy's tokenizer loads on first use), not timed
    for f in filters:
        f.filter(Document(text="Warm up the tokenizer. " * 10, id="w"))
    c0 = cpu()
    for i, d in enumerate(docs):
        doc = Document(text=d["text"], id=str(i))
        why = None
        for f in filters:
            r = f.filter(doc)
            ok, w = (r, f.name) if isinstance(r, bool) else (r[0], f"{f.name}:{r[1]}")
            if not ok:
                why = w
                break
        if why is None:
            dt_keep.add(i)
        else:
            reason[i] = why
    c1 = cpu()
    fr_keep = set()
    for l in open(fk, encoding="utf-8"):
        j = json.loads(l)
        fr_keep.add(int(j["line"]))
    inter, union = len(dt_keep & fr_keep), len(dt_keep | fr_keep)
    mb = os.path.getsize(inp) / 1e6
    print(f"documents {len(docs)}: datatrove keeps {len(dt_keep)}, frugal {len(fr_keep)}, both {inter}, "
          f"Jaccard {inter / union if union else 1:.3f}")
    print(f"datatrove filters: {mb / (c1 - c0):.3f} MB per CPU-second ({c1 - c0:.2f} s for {mb:.2f} MB)")
    for i in sorted(fr_keep - dt_keep):
        print(f"  frugal keeps, datatrove rejects ({reason[i]}): line {i}: {docs[i]['text'][:80]!r}")
    for i in sorted(dt_keep - fr_keep):
        print(f"  datatrove keeps, frugal rejects: line {i}: {docs[i]['text'][:80]!r}")


if __name__ == "__main__":
    main()
