"""Command line: ``python -m lverse {info,reconstruct} ...``."""

from __future__ import annotations

import argparse
import sys

from .cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lverse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands():
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError, RuntimeError) as err:
        # A user's mistake gets one line, not a traceback: only the first line of messages
        # that carry more (libtorch's, for one, append C++ frames).
        lines = str(err).strip().splitlines()
        message = lines[0].strip() if lines else type(err).__name__
        print(f"lverse {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
