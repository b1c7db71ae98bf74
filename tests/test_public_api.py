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


def test_public_classes_name_the_package_they_are_imported_from() -> None:
    """Every exported class of ispring_async, .sinks and .emulator shows that package as its module."""
    import ispring_async.emulator
    import ispring_async.sinks

    for package in (ispring_async, ispring_async.sinks, ispring_async.emulator):
        for name in package.__all__:
            value = getattr(package, name)
            if isinstance(value, type) and value.__module__.startswith("ispring_async"):
                # The sinks' own public modules (ispring_async.sinks.csv, ...) may keep their names.
                assert "._" not in value.__module__, f"{package.__name__}.{name}: {value.__module__}"
    assert repr(ispring_async.LearnerResult) == "<class 'ispring_async.LearnerResult'>"


def test_published_structs_still_decode_encode_and_pickle() -> None:
    """Moving ``__module__`` keeps msgspec's types resolvable and pickling by the public name."""
    import pickle

    import msgspec

    record = msgspec.json.decode(
        b'{"userId":"u","courseId":"c","courseTitle":"t","accessDate":"2020-01-01T00:00:00Z",'
        b'"completionStatus":"passed","isOverdue":false,"progress":12.5}',
        type=ispring_async.LearnerResult,
    )
    assert record.access_date.tzinfo is not None and record.progress == 12.5
    assert pickle.loads(pickle.dumps(record)) == record
    error = ispring_async.PartitionError("p failed", partition="p")
    assert type(pickle.loads(pickle.dumps(error))) is ispring_async.PartitionError


def test_the_library_never_imports_uvloop() -> None:
    """uvloop is the export command's extra: importing the library and its subpackages loads none of it."""
    import subprocess
    import sys

    code = (
        "import sys, ispring_async, ispring_async.sinks, ispring_async.emulator\n"
        "assert 'uvloop' not in sys.modules, 'uvloop imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_drawn_exception_tree_holds_every_error_under_its_parent() -> None:
    """The tree drawn in ``_exceptions`` names every ISpringError subclass (SinkError too) under its base."""
    import re

    import ispring_async.sinks

    assert _exceptions.__doc__ is not None
    drawn: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in _exceptions.__doc__.splitlines():
        found = re.match(r"^[\s│├└─]*([A-Z]\w+Error)\s", line + " ")
        if not found:
            continue
        depth = found.start(1)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[found.group(1)] = stack[-1][1] if stack else ""
        stack.append((depth, found.group(1)))

    def subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
        found = {cls}
        for sub in cls.__subclasses__():
            found |= subclasses(sub)
        return found

    assert ispring_async.sinks.SinkError in subclasses(_exceptions.ISpringError)
    for cls in subclasses(_exceptions.ISpringError):
        # A subclass marked internal is shown to users as its base (expat's syntax error as ParseError).
        if cls is _exceptions.ISpringError or (cls.__doc__ or "").startswith("Internal:"):
            continue
        assert cls.__name__ in drawn, f"{cls.__name__} missing from the drawn tree"
        parent = next(b for b in cls.__mro__[1:] if issubclass(b, _exceptions.ISpringError))
        assert drawn[cls.__name__] == parent.__name__, cls.__name__


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
