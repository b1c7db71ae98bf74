"""The package's version, as a constant: ``importlib.metadata`` costs ~50 ms of CPU at every process
start (it imports email, zipfile and csv, then scans ``sys.path``), which a CLI run pays before its
first request. ``tests/test_public_api.py`` pins it to the installed distribution's version."""

VERSION = "0.1.0"
