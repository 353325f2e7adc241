"""autocrop: crop photos the way a good photographer would.

The public API is imported lazily so that ``import autocrop`` stays light (no torch):

    from autocrop import Cropper
    result = Cropper().crop("photo.jpg", ratio="16:9", top=3)
    scores = Cropper().score("photo.jpg", [[0, 0, 800, 450]])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Cropper": "autocrop.api",
    "Crop": "autocrop.api",
    "CropResult": "autocrop.api",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from autocrop.api import Crop, Cropper, CropResult


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'autocrop' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
