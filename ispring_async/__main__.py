"""``python -m ispring_async`` runs the ``ispring-async`` command."""

import sys

from ispring_async._app.cli import main

sys.exit(main())
