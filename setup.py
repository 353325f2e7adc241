"""Build script: the compiled RoI operators (``autocrop._C``) when torch is importable, else pure Python.

Metadata lives in pyproject.toml; this file only adds the optional C++ extension. torch is never a
build requirement (build isolation would download GBs): with ``pip install --no-build-isolation .``
and torch installed, ``ext/`` is compiled; with plain isolation (no torch) the package is built
without the extension and ``autocrop.ops`` falls back to its exact pure-torch references.
Set ``AUTOCROP_NO_EXT=1`` to skip the extension even when torch is present.
"""

from __future__ import annotations

import os
from glob import glob

from setuptools import setup


def _extension_kwargs() -> dict:
    """``ext_modules`` + ``cmdclass`` for setup(), or {} when the extension cannot or must not be built."""
    if os.environ.get("AUTOCROP_NO_EXT", "").strip() not in ("", "0"):
        return {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except Exception:  # torch absent (isolated build) or broken: build the pure-Python package
        return {}
    sources = sorted(glob("ext/*.cpp")) + sorted(glob("ext/cpu/*.cpp"))
    if not sources:
        return {}
    extension = CppExtension(
        name="autocrop._C",
        sources=sources,
        extra_compile_args=["-O3", "-g0", "-fvisibility=hidden"] if os.name != "nt" else ["/O2"],
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


setup(**_extension_kwargs())
