"""``publish``: public classes name the module they are imported from (``ispring_async``, not ``._client``).

Reprs, tracebacks, ``help()`` and the docs then name the import a user writes. A class's string annotations
(every module here has ``from __future__ import annotations``) are resolved against the module that defined
it, so they are resolved first, while ``__module__`` still names that module: msgspec, dataclasses and
``typing.get_type_hints`` look names up in ``sys.modules[cls.__module__]`` and would not find them in the
package's namespace.
"""

from __future__ import annotations

import inspect
import sys
import typing
from collections.abc import Iterable, Mapping

__all__ = ["publish"]


def publish(namespace: Mapping[str, object], names: Iterable[str], module: str) -> None:
    """Set ``__module__`` to ``module`` on each class of ``names`` defined in a private module below it.

    An annotation that cannot be resolved fails here, at import, rather than at the first decode.
    """
    for name in names:
        cls = namespace[name]
        if not isinstance(cls, type) or not cls.__module__.startswith(f"{module}._"):
            continue
        own = inspect.get_annotations(cls)
        if own:
            defining = vars(sys.modules[cls.__module__])
            hints = typing.get_type_hints(cls, globalns=defining, include_extras=True)
            # Only the class's own annotations, resolved: the bases keep theirs (and are published too).
            resolved = {key: hints[key] for key in own if key in hints}
            type.__setattr__(cls, "__annotations__", {**own, **resolved})
        type.__setattr__(cls, "__module__", module)
