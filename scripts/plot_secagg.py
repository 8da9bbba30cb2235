"""Plots docs/secagg/accuracy.png (test accuracy against rounds: plaintext, secure, secure + DP) from the runs'
metrics.jsonl files and prints the figures quoted in the README.

Usage: ``python scripts/plot_secagg.py [docs/secagg]``; each run directory holds config.json and metrics.jsonl from
``python -m refimpl train`` (see docs/secagg/README_SECTION.md for the commands).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

RUNS = {  # directory: (label, colour, line style)
    "plaintext": ("plaintext FedAvg", "black", "-"),
    "secure": ("secure (additive, S=2, no DP)", "tab:blue", "--"),
    "secure-dp-z0.3": ("secure + distributed DP, C=1, z=0.3", "tab:orange", "-"),
}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def main(root: Path) -> int:
    from matplotlib.figure import Figure

    runs = {name: load(root / name / "metrics.jsonl") for name in RUNS if (root / name / "metrics.jsonl").exists()}
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, rows in runs.items():
        label, colour, style = RUNS[name]
        if rows and "epsilon" in rows[-1]:
            label += f" (eps={rows[-1]['epsilon']:.3g}, delta={rows[-1]['delta']:g})"
        rows = [r for r in rows if r.get("test_accuracy") is not None]
        ax.plot([r["round"] for r in rows], [100 * r["test_accuracy"] for r in rows], style, color=colour,
                label=label)
    ax.set(xlabel="round", ylabel="test accuracy (%)",
           title="Fashion-MNIST, 2NN, 100 clients IID, C=0.1, E=1, B=10")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(root / "accuracy.png", dpi=110)
    print(f"wrote {root / 'accuracy.png'}")

    if "plaintext" in runs and "secure" in runs:
        plain, sec = runs["plaintext"], runs["secure"]
        gaps = [abs(a["test_accuracy"] - b["test_accuracy"]) * 100 for a, b in zip(plain, sec)]
        ratio = statistics.median(b["seconds"] for b in sec) / statistics.median(a["seconds"] for a in plain)
        print(f"max per-round accuracy gap plaintext vs secure: {max(gaps):.2f} pp over {len(gaps)} rounds "
              f"(identical in {sum(g == 0 for g in gaps)} rounds)")
        print(f"median seconds per round: plaintext {statistics.median(a['seconds'] for a in plain):.3f}, "
              f"secure {statistics.median(b['seconds'] for b in sec):.3f} (ratio {ratio:.2f}x)")
        print(f"upload per client: {sec[-1]['bytes_up_per_client']:.0f} bytes = {sec[-1]['upload_ratio']:.5f}x "
              f"the encoded update (plaintext float32: {plain[-1]['bytes_up_per_client']} bytes)")
    for name, rows in runs.items():
        last = rows[-1]
        eps = f", epsilon {last['epsilon']:.3g} at delta {last['delta']:g}" if "epsilon" in last else ""
        print(f"{name}: round {last['round']} test accuracy {100 * last['test_accuracy']:.2f}%{eps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/secagg")))
