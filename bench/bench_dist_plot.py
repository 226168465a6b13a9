#!/usr/bin/env python3
"""bench_dist_plot.py: the loss curves of bench_dist_compress.sh's runs (training loss per
step, smoothed over 25 steps, and the final validation loss in the legend), drawn into
one PNG. Usage: bench/bench_dist_plot.py OUT_DIR [PNG=docs/dist_compress_runs.png]."""
import json
import os
import sys


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


def main():
    root = sys.argv[1]
    png = sys.argv[2] if len(sys.argv) > 2 else "docs/dist_compress_runs.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in ["dense", "k5_u32_f32", "k5_delta_bf16", "k1_u32_f32", "k1_delta_bf16"]:
        p = os.path.join(root, name, "metrics.jsonl")
        if not os.path.exists(p):
            continue
        s, l, v = curve(p)
        ax.plot(s, smooth(l), label=f"{name} (val {v:.3f})" if v is not None else name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (25-step mean)")
    ax.set_title("dp=4: dense all-reduce vs top-k compression")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(png)


if __name__ == "__main__":
    main()
