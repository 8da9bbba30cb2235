"""Kill training with SIGKILL at random moments, resume, and compare the final checkpoint with an uninterrupted run.

Each trial starts ``python -m refimpl train`` (secure aggregation with fresh OS keys, the default), sends SIGKILL
at a random moment of training: it waits until a random round r in 1..R is under way (``metrics.jsonl`` holds r - 1
rows), then a random fraction of a round's measured length, and kills -- so kills land before, between and after
checkpoints (written every 2 rounds) and while rows are written. It then runs ``--resume`` (or starts over when
no checkpoint was written yet) until it finishes. The final ``checkpoint.npz`` must be byte-identical to the
uninterrupted run's and ``metrics.jsonl`` must hold rounds 1..R exactly once. Exit status 1 otherwise.

    python scripts/kill_resume.py                  # 10 trials
    python scripts/kill_resume.py --trials 16 --json out.json
    python scripts/kill_resume.py --extra "--secure secagg"
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--dataset", "mnist-10k", "--clients", "8", "--fraction", "1.0", "--batch-size", "50", "--model",
         "784,64,10", "--rounds", "12", "--checkpoint-every", "2", "--no-progress", "--no-plot", "--seed", "5"]


ROUNDS = 12


def _rows(out: Path) -> int:
    try:
        return (out / "metrics.jsonl").read_bytes().count(b"\n")
    except OSError:
        return 0


def train(out: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "refimpl", "train", *FLAGS, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seeds the kill moments (not any key)")
    p.add_argument("--json", default=None)
    p.add_argument("--extra", default="", help="more train flags for every run, e.g. '--secure secagg'")
    args = p.parse_args(argv)
    FLAGS.extend(args.extra.split())
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="refimpl-kill-"))
    trials = []
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "refimpl", "train", *FLAGS, "--out", str(root / "reference")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        first = None
        while proc.poll() is None:  # when does the first metrics row appear (the end of start-up and round 1)?
            if first is None and _rows(root / "reference") >= 1:
                first = time.perf_counter() - t0
            time.sleep(0.005)
        duration = time.perf_counter() - t0
        if proc.returncode != 0 or first is None:
            print(proc.stderr.read() if proc.stderr else "", file=sys.stderr)
            return 1
        reference = (root / "reference" / "checkpoint.npz").read_bytes()
        per_round = (duration - first) / (ROUNDS - 1)
        print(f"uninterrupted run: {duration:.1f} s, round 1 done after {first:.1f} s, {per_round:.2f} s a round",
              file=sys.stderr)
        for i in range(args.trials):
            out = root / f"trial{i}"
            target, fraction = rng.randint(1, ROUNDS), rng.random()
            proc = subprocess.Popen([sys.executable, "-m", "refimpl", "train", *FLAGS, "--out", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while proc.poll() is None and _rows(out) < target - 1:
                time.sleep(0.002)
            time.sleep(fraction * per_round)
            killed = proc.poll() is None
            delay = target - 1 + fraction
            rows_at_kill = _rows(out)
            if killed:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            ckpt = out / "checkpoint.npz"
            round_at_kill = None
            if ckpt.exists():
                from refimpl.fl import checkpoint, server
                round_at_kill = checkpoint.load(ckpt, server.server_optimizer("fedavg"))[0].round
            resumed = train(out, "--resume") if ckpt.exists() else train(out)
            final = ckpt.read_bytes() if ckpt.exists() else b""
            rounds = [json.loads(x)["round"] for x in (out / "metrics.jsonl").read_text().splitlines()] \
                if (out / "metrics.jsonl").exists() else []
            ok = resumed.returncode == 0 and final == reference and rounds == list(range(1, ROUNDS + 1))
            trials.append({"trial": i, "kill_at_round": round(delay, 2), "killed": killed,
                           "metrics_rows_at_kill": rows_at_kill,
                           "checkpoint_round_at_kill": round_at_kill, "resume_exit": resumed.returncode,
                           "byte_identical": final == reference,
                           "metrics_rounds_ok": rounds == list(range(1, ROUNDS + 1)),
                           "ok": ok, **({} if ok else {"stderr": resumed.stderr[-500:]})})
            print(json.dumps(trials[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"trials": len(trials), "killed": sum(t["killed"] for t in trials),
              "byte_identical": sum(t["byte_identical"] for t in trials), "ok": sum(t["ok"] for t in trials),
              "uninterrupted_seconds": round(duration, 1), "seconds_per_round": round(per_round, 3),
              "kills_mid_training": sum(t["killed"] and t["metrics_rows_at_kill"] < ROUNDS for t in trials),
              "flags": FLAGS, "details": trials}
    print(json.dumps({k: v for k, v in report.items() if k != "details"}, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] == len(trials) else 1


if __name__ == "__main__":
    raise SystemExit(main())
