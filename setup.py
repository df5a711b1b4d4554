"""The optional native codec (walship/core/_codec.c); everything else is in pyproject.toml.

``optional=True``: where the extension cannot be built (no compiler, no Python headers) the
install still succeeds and walship runs on its pure-Python codec (``walship.core.frame.NATIVE``
is then ``False``). ``pip install -e .`` builds it in place.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "walship.core._codec",
            sources=["walship/core/_codec.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
