"""The public API: a curated, sorted ``__all__`` that names everything ``ispring_async`` exports."""

from __future__ import annotations

import inspect
import types

import ispring_async
from ispring_async import _exceptions


def public_names() -> set[str]:
    """Names a user can import from ``ispring_async``: not private, not a submodule."""
    return {
        name
        for name, value in vars(ispring_async).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }


def test_all_is_sorted() -> None:
    """``__all__`` is sorted, so additions are easy to review."""
    assert ispring_async.__all__ == sorted(ispring_async.__all__)


def test_all_is_complete_and_exact() -> None:
    """Everything imported into the package is in ``__all__``, and everything in ``__all__`` exists."""
    assert set(ispring_async.__all__) == public_names()
    assert len(set(ispring_async.__all__)) == len(ispring_async.__all__)


def test_core_api_and_every_exception_exported() -> None:
    """The documented entry points and the whole exception tree are importable from the package."""
    core = {"Client", "DateRange", "LearnerResult", "ResultsPage", "ResultsQuery", "RetryEvent", "Timeouts"}
    assert core <= set(ispring_async.__all__)
    assert set(_exceptions.__all__) <= set(ispring_async.__all__)


def test_every_export_is_documented() -> None:
    """Each public object carries its own docstring."""
    undocumented = [
        name for name in ispring_async.__all__ if not inspect.getdoc(getattr(ispring_async, name))
    ]
    assert undocumented == []


def test_version_constant_is_the_installed_distributions() -> None:
    """``_version.VERSION`` (read without importlib.metadata at start-up) equals the package metadata's."""
    import importlib.metadata
    import subprocess
    import sys

    from ispring_async._client import DEFAULT_USER_AGENT
    from ispring_async._version import VERSION

    assert importlib.metadata.version("ispring-async") == VERSION
    assert DEFAULT_USER_AGENT.startswith(f"ispring-async/{VERSION} ")
    # The CLI's start no longer imports importlib.metadata (about 50 ms of CPU per run).
    probe = "import sys, ispring_async._app.cli; print('importlib.metadata' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"
