"""Command line: ``python -m refimpl <command> [options]``.

Each command lives in its own module and is imported only when it runs, so a command that needs an optional package
(JAX for training, ``websockets`` for networked parties) says which extra to install when that package is missing.
To add a command, add one :class:`Command` to ``COMMANDS``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["COMMANDS", "Command", "main"]


class Command(NamedTuple):
    """A subcommand: ``target`` is ``"module:function"``, called with the remaining arguments; returns the exit code."""

    target: str
    extra: str
    help: str


COMMANDS: dict[str, Command] = {
    "demo": Command("refimpl.demos.cli:main", "fl",
                    "the tutorial's walkthrough: sharing among workers, fixed point, federated learning"),
    "train": Command("refimpl.fl.train:main", "fl",
                     "federated training (FedAvg over a JAX MLP); see python -m refimpl train --help"),
    "web": Command("refimpl.web.cli:main", "web",
                   "serve the browser worker page and run secure FedAvg rounds for tabs and Python clients"),
    "train-encrypted": Command("refimpl.fl.encrypted_train:main", "fl",
                               "train an MLP on secret-shared data with secret-shared weights (protecting the model)"),
    "data": Command("refimpl.fl.fetch:main", "fl",
                    "datasets: `data fetch mnist` downloads the MNIST IDX files to the cache, SHA-256 verified"),
    "certs": Command("refimpl.net.certs:main", "net",
                     "make a deployment CA and a certificate + key per party (mutual TLS)"),
    "worker": Command("refimpl.workers.server:main", "net",
                      "run one party (a worker) in this process, serving over mutual TLS WebSockets"),
    "aggregator": Command("refimpl.fl.deploy.cli:main", "net",
                          "secure FedAvg over the network: the lead aggregator or an additive share server"),
    "client": Command("refimpl.fl.deploy.client:main", "net",
                      "federated clients in this process, training locally, uploading masked or shared updates"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items()]
    return "usage: python -m refimpl {" + ",".join(COMMANDS) + "} [options]\n\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m refimpl``: dispatch to the command's module; exit code 2 on a usage error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"refimpl: unknown command {name!r}; choose one of {', '.join(COMMANDS)}\n\n{_usage()}", file=sys.stderr)
        return 2
    command = COMMANDS[name]
    module_name, func_name = command.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and not err.name.startswith("refimpl"):
            print(f"refimpl {name} needs the package {err.name!r}: pip install 'refimpl[{command.extra}]'",
                  file=sys.stderr)
            return 2
        raise
    return int(getattr(module, func_name)(rest) or 0)
