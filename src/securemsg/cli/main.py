"""``securemsg``: the command-line entry point.

Subcommands:
    demo    the main job: an in-process walkthrough of what securemsg does today.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="securemsg",
        description="End-to-end encrypted messaging, byte-compatible with libsignal 0.103.0. "
        "Keys live only on the clients.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="walk through a PQXDH session set-up and a conversation between two clients",
        description="Runs two clients (Alice and Bob) in this process with in-memory stores. "
        "Shows what each client sees and exactly which bytes a relay would carry.",
    )
    demo.add_argument("--messages", type=int, default=6, help="messages to exchange (default 6)")
    demo.add_argument(
        "--seed",
        default=None,
        help="make the run reproducible with a deterministic RNG (TESTING ONLY: keys become "
        "predictable)",
    )
    ns = parser.parse_args(argv)
    if ns.command == "demo":
        from securemsg.demo import run_demo

        return run_demo(messages=ns.messages, seed=ns.seed, out=sys.stdout)
    parser.print_help()
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
