"""autocrop: crop photos the way a good photographer would.

The public API is imported lazily, so ``import autocrop`` stays light (no torch, no Pillow):

    from autocrop import Cropper
    result = Cropper().crop("photo.jpg", ratio="16:9", top=3, out="crops/")
    scores = Cropper().score("photo.jpg", [[0, 0, 800, 450]])
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Cropper": "autocrop.cropper",
    "CropSettings": "autocrop.settings",
    "CropResult": "autocrop.results",
    "Crop": "autocrop.results",
    "AutocropError": "autocrop.errors",
    "InputError": "autocrop.errors",
    "UsageError": "autocrop.errors",
    "OutputError": "autocrop.errors",
    "ModelError": "autocrop.errors",
    "DatasetError": "autocrop.errors",
}

__all__ = ["AutocropError", "Crop", "CropResult", "CropSettings", "Cropper", "DatasetError", "InputError",
           "ModelError", "OutputError", "UsageError", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from autocrop.cropper import Cropper
    from autocrop.errors import AutocropError, DatasetError, InputError, ModelError, OutputError, UsageError
    from autocrop.results import Crop, CropResult
    from autocrop.settings import CropSettings

    __version__: str


def _version() -> str:
    """The installed distribution's version (read on first use: importlib.metadata costs ~20 ms at start-up)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("autocrop-views")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'autocrop' has no attribute {name!r}")
    value = getattr(import_module(module_name), name)
    globals()[name] = value
    return value
