"""The application built on the library: the ``ispring-async`` command.

``cli`` reads settings from argv, ``ISPRING_*`` and a TOML file; ``export`` runs one export into a sink with
checkpoints and resume; ``progress`` shows it; ``demo`` is ``make run``. Nothing in the library imports this
package — the library is what ``ispring_async`` re-exports, the app is one user of it.
"""
