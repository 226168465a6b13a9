"""data_datatrove_bench.py: runs Hugging Face datatrove's quality-filter + dedup pipeline
on a JSONL file, the peer of `frugal clean` in bench/bench_clean.sh, and prints one line
of figures (MB of input per CPU-second, wall seconds, documents kept).

Pipeline (datatrove's own components, defaults unless noted, one task, one worker):
  1. JsonlReader -> GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter
     -> JsonlWriter (filtered)
  2. MinhashDedupSignature (5-grams, 14 buckets x 8 hashes) on the filtered documents
  3. MinhashDedupBuckets (one task per bucket, as datatrove requires, run one after another)
  4. MinhashDedupCluster
  5. JsonlReader(filtered) -> MinhashDedupFilter -> JsonlWriter (kept)
CPU time is this process and its children (getrusage) over the five stages; imports and a
20-document warm-up run (which loads spaCy's tokenizer) are excluded.

usage: python3 tools/data_datatrove_bench.py INPUT.jsonl WORKDIR
"""
import json
import os
import resource
import shutil
import sys
import time


def cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    inp, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter,
                                          MinhashDedupSignature)
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    # datatrove 0.10 passes str to xxhash, which xxhash >= 4 refuses: encode first (the
    # hash values are unchanged: xxhash 3 hashed the UTF-8 bytes of a str).
    import xxhash
    import datatrove.utils.hashes.xxhash as dx
    dx.xxhash64 = lambda s: xxhash.xxh64_intdigest(s.encode() if isinstance(s, str) else s)
    dx.xxhash32 = lambda s: xxhash.xxh32_intdigest(s.encode() if isinstance(s, str) else s)

    cfg = MinhashConfig()
    d = os.path.dirname(inp)
    name = os.path.basename(inp)

    def run(steps, logs, tasks=1):
        LocalPipelineExecutor(pipeline=steps, tasks=tasks, workers=1, logging_dir=os.path.join(work, logs),
                              skip_completed=False).run()

    # Warm-up on the first 20 documents (loads spaCy's tokenizer once, as a long run would
    # amortise it); not timed.
    os.makedirs(os.path.join(work, "warm"))
    with open(inp) as src, open(os.path.join(work, "warm", "w.jsonl"), "w") as dst:
        for i, line in enumerate(src):
            if i >= 20:
                break
            dst.write(line)
    run([JsonlReader(os.path.join(work, "warm")), GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
         JsonlWriter(os.path.join(work, "warm_out"), compression=None)], "l0")

    c0, t0 = cpu(), time.time()
    run([JsonlReader(d, glob_pattern=name), GopherRepetitionFilter(), GopherQualityFilter(), C4QualityFilter(),
         JsonlWriter(os.path.join(work, "filtered"), compression=None)], "l1")
    c1 = cpu()
    run([JsonlReader(os.path.join(work, "filtered")),
         MinhashDedupSignature(output_folder=os.path.join(work, "sigs"), config=cfg)], "l2")
    run([MinhashDedupBuckets(input_folder=os.path.join(work, "sigs"), output_folder=os.path.join(work, "buckets"),
                             config=cfg)], "l3", tasks=cfg.num_buckets)
    run([MinhashDedupCluster(input_folder=os.path.join(work, "buckets"), output_folder=os.path.join(work, "remove"),
                             config=cfg)], "l4")
    run([JsonlReader(os.path.join(work, "filtered")),
         MinhashDedupFilter(input_folder=os.path.join(work, "remove")),
         JsonlWriter(os.path.join(work, "kept"), compression=None)], "l5")
    c2, t2 = cpu(), time.time()
    kept = 0
    for root, _, files in os.walk(os.path.join(work, "kept")):
        for f in files:
            with open(os.path.join(root, f)) as fh:
                kept += sum(1 for _ in fh)
    mb = os.path.getsize(inp) / 1e6
    print(json.dumps({"tool": "datatrove", "input_mb": round(mb, 3), "cpu_s": round(c2 - c0, 3),
                      "filter_cpu_s": round(c1 - c0, 3), "wall_s": round(t2 - t0, 3),
                      "mb_per_cpu_s": round(mb / (c2 - c0), 3), "kept": kept}))


if __name__ == "__main__":
    main()
