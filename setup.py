"""The one C module (the fast route's one-pass rewrite); everything else is in pyproject.toml.

Optional: where no C compiler is found the package still installs, and the fast route runs its
Python passes instead (ispring_async/_parse/_fast.py), exact but slower. ``make install`` sets
``ISPRING_REQUIRE_C=1``: there a C file that does not compile fails the install, rather than leave
the tests running the last module that did.
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ispring_async._parse._speedups",
            sources=["ispring_async/_parse/_speedups.c"],
            optional=os.environ.get("ISPRING_REQUIRE_C") != "1",
            extra_compile_args=["-Wall", "-Wextra"],
        )
    ]
)
