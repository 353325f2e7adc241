"""Build script: the compiled RoI operators (``autocrop._C``) when torch and a C++ compiler are there, else pure Python.

Metadata lives in pyproject.toml; this file only adds the optional C++ extension. torch is never a
build requirement (build isolation would download GBs): with ``pip install --no-build-isolation .``
and torch installed, ``ext/`` is compiled; with plain isolation (no torch), or when no working C++
compiler is found, the package is built without the extension (with one warning, which pip shows)
and ``autocrop.ops`` falls back to its exact pure-torch references.
Set ``AUTOCROP_NO_EXT=1`` to skip the extension even when torch and a compiler are present.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from glob import glob
from typing import Any

from setuptools import setup
from setuptools.errors import CCompilerError, ExecError, PlatformError

NO_EXT_ENV = "AUTOCROP_NO_EXT"
FALLBACK = "installing without compiled RoI ops (the pure-torch fallback is exact, slower)"

# What a missing or broken compiler raises: CCompilerError covers CompileError and LinkError; ExecError and
# PlatformError are distutils' DistutilsExecError / DistutilsPlatformError (no compiler, MSVC not found);
# OSError and SubprocessError come from spawning a missing executable; torch's ninja path raises RuntimeError.
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError, subprocess.SubprocessError, RuntimeError)


# setup.py also runs for metadata (egg_info) and sdists; the torch-absent line is printed only when building.
BUILD_COMMANDS = {"bdist_wheel", "editable_wheel", "build", "build_ext", "install", "develop", "bdist_egg"}


def _warn(message: str) -> None:
    # A UserWarning, not a print: pip (>= 25, through pyproject_hooks) shows a build backend's UserWarnings even
    # without -v, where it hides the build log; older pips and `python setup.py` print it to stderr.
    # setuptools runs this file as "<string>": name it, and no line (there is no source line worth quoting).
    warnings.warn_explicit(f"autocrop: {message}", UserWarning, filename="setup.py", lineno=0)


def _extension_kwargs() -> dict[str, Any]:
    """``ext_modules`` + ``cmdclass`` for setup(), or {} when the extension cannot or must not be built."""
    if os.environ.get(NO_EXT_ENV, "").strip() not in ("", "0"):
        return {}
    sources = sorted(glob("ext/*.cpp")) + sorted(glob("ext/cpu/*.cpp"))
    if not sources:  # an sdist or checkout without ext/: nothing to compile
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception as exc:  # torch absent (isolated build) or broken: build the pure-Python package
        if BUILD_COMMANDS.intersection(sys.argv[1:]):
            _warn(f"torch is not importable at build time ({type(exc).__name__}); {FALLBACK}. "
                  "Install torch first and build with pip's --no-build-isolation to compile them.")
        return {}

    class OptionalBuildExtension(BuildExtension):
        """torch's BuildExtension that warns and drops the extension when it cannot be compiled."""

        def run(self) -> None:
            inplace = self.inplace
            try:
                super().run()
            except BUILD_ERRORS as exc:
                # setuptools' run() resets inplace before building and restores it after; put it back, and
                # forget the extension so that editable/wheel steps do not look for a .so that was never built.
                self.inplace = inplace
                self.extensions = []
                self.distribution.ext_modules = []
                _warn(f"C++ compiler not found or the extension failed to build ({type(exc).__name__}); {FALLBACK}. "
                      f"Set {NO_EXT_ENV}=1 to skip this step.")

    extension = CppExtension(
        name="autocrop._C",
        sources=sources,
        extra_compile_args=["-O3", "-g0", "-fvisibility=hidden"] if os.name != "nt" else ["/O2"],
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": OptionalBuildExtension}}


setup(**_extension_kwargs())
