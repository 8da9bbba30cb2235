"""Command line: ``python -m refimpl demo`` and ``python -m refimpl train ...``.

Subcommands that need optional packages (JAX for training) import them only when they run, and say which extra to
install when they are missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["main"]


def _demo(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="refimpl demo", description="Walk through the tutorial, on refimpl.")
    parser.add_argument("--part", choices=["sharing", "workers", "federated", "all"], default="all",
                        help="which part to run (default: all the parts whose dependencies are installed)")
    args = parser.parse_args(argv)
    if args.part in ("sharing", "all"):
        from refimpl.demos.sharing import sharing_demo

        sharing_demo(print)
    if args.part in ("workers", "all"):
        from refimpl.demos.workers import workers_demo

        print()
        workers_demo(print)
    if args.part in ("federated", "all"):
        _optional_parts(print)
    return 0


def _optional_parts(out: Callable[[str], None]) -> None:
    """Run the demo parts that later modules add, when their modules and dependencies are present."""
    try:
        from refimpl.demos.federated import federated_demo
    except ModuleNotFoundError as err:
        out(f"\n(skipping the federated-learning part: {err.name} is not installed; pip install 'refimpl[fl]')")
        return
    out("")
    federated_demo(out)


def _train(argv: Sequence[str]) -> int:
    try:
        from refimpl.fl.train import main as train_main
    except ModuleNotFoundError as err:
        print(f"refimpl train needs {err.name}: pip install 'refimpl[fl]'", file=sys.stderr)
        return 2
    return int(train_main(list(argv)) or 0)


_COMMANDS = {"demo": _demo, "train": _train}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m refimpl``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in _COMMANDS:
        print("usage: python -m refimpl {demo,train} [options]\n\n"
              "  demo    the tutorial's walkthrough: sharing among workers, fixed point, federated learning\n"
              "  train   federated training (FedAvg over a JAX MLP); see python -m refimpl train --help",
              file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    return _COMMANDS[argv[0]](argv[1:])
