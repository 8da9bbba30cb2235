"""``python -m refimpl demo``: the tutorial's walkthrough, part by part."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    """Run the demo parts selected by ``--part`` (all by default)."""
    parser = argparse.ArgumentParser(prog="refimpl demo", description="Walk through the tutorial, on refimpl.")
    parser.add_argument("--part", default="all",
                        choices=["sharing", "workers", "federated", "encrypted-training", "all"],
                        help="which part to run (default: all the parts whose dependencies are installed)")
    parser.add_argument("--network", action="store_true",
                        help="run the parties as separate processes on 127.0.0.1 over mutual TLS instead "
                             "(workers, encrypted prediction, secure FedAvg; needs refimpl[net])")
    args = parser.parse_args(argv)
    if args.network:
        from refimpl.demos.network import network_demo

        network_demo(print)
        return 0
    if args.part in ("sharing", "all"):
        from refimpl.demos.sharing import sharing_demo

        sharing_demo(print)
    if args.part in ("workers", "all"):
        from refimpl.demos.workers import workers_demo

        print()
        workers_demo(print)
    if args.part in ("federated", "all"):
        _federated(print)
    if args.part in ("encrypted-training", "all"):
        from refimpl.demos.encrypted_training import encrypted_training_demo

        print()
        encrypted_training_demo(print)
    return 0


def _federated(out: Callable[[str], None]) -> None:
    """The federated-learning part, when its dependencies (the ``fl`` extra) are installed."""
    try:
        from refimpl.demos.federated import federated_demo
    except ModuleNotFoundError as err:
        out(f"\n(skipping the federated-learning part: {err.name} is not installed; pip install 'refimpl[fl]')")
        return
    out("")
    federated_demo(out)
