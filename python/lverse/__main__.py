"""Command line: ``python -m lverse {info,reconstruct} ...``."""

from __future__ import annotations

import argparse
import sys

from .cli import commands
from .errors import CheckpointError, first_line


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
        # A user's mistake gets a message, not a traceback: only the first line of messages
        # that carry more (libtorch's, for one, append C++ frames), except a checkpoint's,
        # whose following lines list what is wrong with it.
        message = (str(err).strip() or type(err).__name__) if isinstance(err, CheckpointError) else first_line(err)
        print(f"lverse {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
