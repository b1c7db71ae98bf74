"""The ``ispring-async`` command: ``export`` (the nightly pull) and ``emulator`` (the local server)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

USAGE = "usage: ispring-async {export,emulator} [options]  (ispring-async COMMAND --help for details)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m ispring_async``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "emulator":
        from ispring_async.emulator._cli import main as emulator_main

        return emulator_main(rest)
    print(f"ispring-async: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2
