"""Accuracy against simulated hours (and rounds) for recorded population runs, on one figure.

    python scripts/plot_population.py docs/population/overselect docs/population/waitall \
        --labels "over-select 1.3 + 120 s deadline" "wait for all selected" --out docs/population/accuracy_vs_hours.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="train --out directories with metrics.jsonl")
    p.add_argument("--labels", nargs="+", default=None)
    p.add_argument("--goal", type=float, default=0.85)
    p.add_argument("--out", default="accuracy_vs_hours.png")
    args = p.parse_args()
    labels = args.labels or [Path(r).name for r in args.runs]
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_h, ax_r = fig.subplots(1, 2)
    for run, label in zip(args.runs, labels):
        rows = [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines() if x.strip()]
        rows = [r for r in rows if r.get("test_accuracy") is not None]
        hit = next((r for r in rows if r["test_accuracy"] >= args.goal), None)
        tag = f" ({args.goal:.0%} at {hit['sim_hours']:.1f} h)" if hit else ""
        ax_h.plot([r["sim_hours"] for r in rows], [r["test_accuracy"] for r in rows], label=label + tag)
        ax_r.plot([r["round"] for r in rows], [r["test_accuracy"] for r in rows], label=label)
    for ax, xlabel in ((ax_h, "simulated hours"), (ax_r, "round")):
        ax.axhline(args.goal, color="gray", lw=0.8, ls="--")
        ax.set(xlabel=xlabel, ylabel="test accuracy", ylim=(0.6, 0.9))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
