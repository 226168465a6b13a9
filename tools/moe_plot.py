"""moe_plot.py: plots and summarises the runs of bench/bench_moe.sh (JSONL logs written by
bench/bench_moe_train). Writes PNG figures and prints a Markdown table.

Usage: python3 tools/moe_plot.py RUN_DIR [--png-prefix docs/moe]
RUN_DIR holds <name>.jsonl for names: bias, bias_sign, bias_prop, none, seqaux, switch (balance)
and dense (cost; compared with the MoE run "bias"). Missing runs are skipped.
"After warm-up" is every window that starts after the log's warmup_steps (the LR warm-up);
logs without it (older runs) use the second half of the run.
"""
import json
import os
import sys


def load(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    head = rows[0]
    steps = [r for r in rows if "loss" in r]
    vals = [r for r in rows if "val_loss" in r and "final" not in r]
    final = [r for r in rows if r.get("final")]
    return head, steps, vals, final[0] if final else {}


def late(steps, key, frac=0.5):
    """Values of key over the last `frac` of the steps (after warm-up)."""
    n = len(steps)
    return [s[key] for s in steps[int(n * (1 - frac)):] if key in s]


def warm(head, steps):
    """Steps of warm-up: the log's LR warm-up, else half the run."""
    return head.get("warmup_steps", len(steps) // 2)


def rolling_max_mean(steps, window, start):
    """Max/mean expert load of the worst layer, with counts summed over `window`
    consecutive steps, for each window ending at a step >= start (after warm-up)."""
    out = []
    counts = [s["counts"] for s in steps if "counts" in s]
    for end in range(max(start, window), len(counts) + 1):
        worst = 0.0
        for l in range(len(counts[0])):
            tot = [sum(counts[i][l][e] for i in range(end - window, end)) for e in range(len(counts[0][l]))]
            mean = sum(tot) / len(tot)
            worst = max(worst, max(tot) / mean if mean > 0 else 0.0)
        out.append(worst)
    return out


def main():
    run = sys.argv[1]
    prefix = "docs/moe"
    if "--png-prefix" in sys.argv:
        prefix = sys.argv[sys.argv.index("--png-prefix") + 1]
    runs = {}
    for name in ["bias", "bias_sign", "bias_prop", "none", "seqaux", "switch", "dense"]:
        p = os.path.join(run, name + ".jsonl")
        if os.path.exists(p):
            runs[name] = load(p)

    windows = [1, 8, 16, 32]
    print("| run | params total / active | final val loss | " +
          " | ".join("max/mean, %d-step window (median, max)" % w for w in windows) +
          " | load CV per step (median) | tokens per CPU-s | tokens/s wall |")
    print("|---|---|---|" + "---|" * len(windows) + "---|---|---|")
    for name, (head, steps, vals, final) in runs.items():
        def med(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2] if xs else float("nan")
        cells = []
        for w in windows:
            r = rolling_max_mean(steps, w, warm(head, steps) + w) if name != "dense" else []
            cells.append("%.2f, %.2f" % (med(r), max(r)) if r else "-")
        cv = late(steps, "load_cv")
        print("| %s | %d / %d | %.4f | %s | %s | %.0f | %.0f |" % (
            name, head["params"], head["active_params"], final.get("val_loss", float("nan")), " | ".join(cells),
            "%.3f" % med(cv) if name != "dense" else "-",
            final.get("tokens_per_cpu_s", 0), final.get("tokens_per_s", 0)))
    print()
    print("(windows that start after the LR warm-up; a window sums each expert's routed pairs over that "
          "many steps and takes the worst MoE layer)")
    print()
    for name, (head, steps, vals, final) in runs.items():
        if name == "dense":
            continue
        cells = []
        wu = warm(head, steps)
        for w in [1, 8, 16, 32]:
            r = rolling_max_mean(steps, w, wu + w)
            bad = [v for v in r if v > 1.3]
            cells.append("%d-step: %s" % (w, "all %d <= 1.3" % len(r) if not bad else
                                          "%d of %d > 1.3" % (len(bad), len(r))))
        r = rolling_max_mean(steps, 16, 16)
        bad = [i for i, v in enumerate(r) if v > 1.3]
        since = "never" if bad and bad[-1] == len(r) - 1 else "step %d" % (16 + (bad[-1] + 1 if bad else 0))
        print("- %s (warm-up %d steps): windows after warm-up %s; every later 16-step window <= 1.3 from the one "
              "ending at %s" % (name, wu, "; ".join(cells), since))
    print()
    for name, (head, steps, vals, final) in runs.items():
        cl = [s["top_cluster"] for s in steps[warm(head, steps):] if "top_cluster" in s]
        if not cl:
            continue
        def med(xs):
            xs = sorted(xs)
            return xs[len(xs) // 2] if xs else float("nan")
        per_layer = [med([c[l][3] / c[l][1] for c in cl if c[l][1] > 0]) for l in range(len(cl[0]))]
        print("- %s: the most loaded expert of a step after warm-up gets this share of its pairs from one token "
              "id (median, per MoE layer): %s" % (name, ", ".join("%.2f" % v for v in per_layer)))
    if "dense" in runs and "bias" in runs:
        d, m = runs["dense"][3], runs["bias"][3]
        print()
        print("MoE (bias) / dense: params %.2fx, active params %.3fx, tokens per CPU-second %.3fx, "
              "tokens/s wall %.3fx, training FLOPs %.3fx, val loss %.4f vs %.4f" % (
                  runs["bias"][0]["params"] / runs["dense"][0]["params"],
                  runs["bias"][0]["active_params"] / runs["dense"][0]["active_params"],
                  m["tokens_per_cpu_s"] / d["tokens_per_cpu_s"], m["tokens_per_s"] / d["tokens_per_s"],
                  m["flops"] / d["flops"], m["val_loss"], d["val_loss"]))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no figures", file=sys.stderr)
        return
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, (head, steps, vals, final) in runs.items():
        tpf = head["tokens_per_step"] * head["flops_per_token"]
        ax[0].plot([v["step"] * tpf / 1e12 for v in vals], [v["val_loss"] for v in vals], marker="o", label=name)
        if name != "dense":
            r = rolling_max_mean(steps, 16, 0)
            ax[1].plot(range(16, 16 + len(r)), r, label=name)
            wu = warm(head, steps)
    ax[0].set_xlabel("training FLOPs (TFLOP, 6 N_active + attention)")
    ax[0].set_ylabel("validation loss (LM only)")
    ax[0].set_title("loss at equal training FLOPs")
    ax[0].legend()
    ax[1].axhline(1.3, color="gray", ls="--", lw=1)
    if len(runs) > (1 if "dense" in runs else 0):
        ax[1].axvline(wu + 16, color="gray", ls=":", lw=1)
    ax[1].set_yscale("log")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("max/mean expert load (worst layer, 16-step window)")
    ax[1].set_title("expert balance")
    ax[1].legend()
    fig.tight_layout()
    out = prefix + "_runs.png"
    fig.savefig(out, dpi=110)
    print("wrote " + out, file=sys.stderr)


if __name__ == "__main__":
    main()
