"""The one C module (the fast route's one-pass rewrite); everything else is in pyproject.toml.

Optional: where no C compiler is found the package still installs, and the fast route runs its
Python passes instead (ispring_async/_parse/_fast.py), exact but about 1.7x slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "ispring_async._parse._speedups",
            sources=["ispring_async/_parse/_speedups.c"],
            optional=True,
            extra_compile_args=["-Wall", "-Wextra"],
        )
    ]
)
