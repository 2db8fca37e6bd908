"""lverse's command line: python -m lverse COMMAND ... (or: lverse COMMAND ...).

Captions images, draws images from text, reconstructs images through the AugVAE, evaluates
a model and trains both stages. COMMAND --help lists a command's options. Progress bars
go to stderr; LVERSE_PROGRESS=0 turns them off."""

from __future__ import annotations

import argparse
import os
import sys

from .cli import commands
from .errors import CheckpointError, first_line


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog or _prog(), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")
    for command in commands():
        command.register(sub)
    return parser


def _prog() -> str:
    """How the user called lverse: the console script by its name, else ``python -m lverse``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name and name != "__main__.py" and not name.endswith(".py") else "python -m lverse"


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
