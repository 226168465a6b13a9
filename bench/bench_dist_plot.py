#!/usr/bin/env python3
"""bench_dist_plot.py: the loss curves of bench_dist_compress.sh's runs (training loss per
step, smoothed over 25 steps, the final validation loss in the legend, the end of the
compressed runs' density warm-up dashed), one panel per output directory, in one PNG. Runs
other than the bench's named ones (e.g. a link to another directory's run) follow them.
Usage: bench/bench_dist_plot.py [--png PNG] OUT_DIR [OUT_DIR ...]
(PNG defaults to docs/dist_compress_runs.png; the old form OUT_DIR PNG.png still works)."""
import json
import os
import sys

RUNS = ["dense", "k5_u32_f32", "k5_delta_bf16", "k1_u32_f32", "k1_delta_bf16"]


def curve(path):
    steps, losses, val = [], [], None
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if "loss" in o and o["loss"] is not None:
                steps.append(o["step"])
                losses.append(o["loss"])
            elif "val_loss" in o:
                val = o["val_loss"]
    return steps, losses, val


def smooth(xs, w=25):
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= w:
            acc -= xs[i - w]
        out.append(acc / min(i + 1, w))
    return out


def config(run_dir):
    try:
        with open(os.path.join(run_dir, "config.json")) as f:
            return json.load(f)
    except OSError:
        return {}


def main():
    args = sys.argv[1:]
    png = "docs/dist_compress_runs.png"
    if "--png" in args:
        i = args.index("--png")
        png = args[i + 1]
        del args[i : i + 2]
    elif len(args) == 2 and args[1].endswith(".png"):
        png = args.pop()
    if not args:
        sys.exit(__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(args), figsize=(7 * len(args), 4.2), squeeze=False)
    for ax, root in zip(axes[0], args):
        model, warm = "", 0
        extra = sorted(
            n for n in os.listdir(root) if n not in RUNS and n != "prep" and os.path.exists(os.path.join(root, n, "metrics.jsonl"))
        )
        for name in RUNS + extra:
            d = os.path.join(root, name)
            p = os.path.join(d, "metrics.jsonl")
            if not os.path.exists(p):
                continue
            c = config(d)
            if not model and c:
                model = f"L{c.get('n_layer')} C{c.get('d_model')}, {c.get('batch_size')}x{c.get('seq_len')} tokens/micro-batch"
            if c.get("compress", 0) > 0:
                warm = max(warm, c.get("compress_warmup", 0))
            s, l, v = curve(p)
            ax.plot(s, smooth(l), label=f"{name} (val {v:.4f})" if v is not None else name, linewidth=1)
        if warm:
            ax.axvline(warm, color="grey", linestyle="--", linewidth=0.8, label=f"end of density warm-up ({warm})")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (25-step mean)")
        ax.set_title(f"dp=4, dense all-reduce vs top-k: {model}", fontsize=10)
        ax.set_ylim(top=min(ax.get_ylim()[1], 9.0))
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(png)


if __name__ == "__main__":
    main()
