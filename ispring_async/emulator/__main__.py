"""``python -m ispring_async.emulator [options]``: the same as ``ispring-async emulator [options]``."""

import sys

from ispring_async.emulator._cli import main

sys.exit(main(sys.argv[1:]))
