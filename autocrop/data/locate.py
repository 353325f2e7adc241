"""Where the public datasets live. Never relative to the current directory.

Data root (the folder holding ``GAICD/``, ``FCDB/``, ``anchors/``, ``weights/``):

1. ``$AUTOCROP_DATA_DIR`` when set;
2. else, only when autocrop runs from a source checkout (the folder above the ``autocrop`` package
   holds ``pyproject.toml``), ``<checkout>/../shared/data``;
3. else there is no default: :func:`default_data_root` raises :class:`DatasetError`.

A dataset folder given explicitly (``data_dir``) always wins over the data root.
"""

from __future__ import annotations

import os
from pathlib import Path

from autocrop.errors import DatasetError

DATA_ENV = "AUTOCROP_DATA_DIR"
DATASET_FOLDERS = {"gaicd": "GAICD", "fcdb": "FCDB", "flms": "FLMS"}
NO_DATA_ROOT = f"no dataset folder: set {DATA_ENV} or pass --data-dir"


def checkout_root() -> Path | None:
    """The source checkout this package runs from (the folder above ``autocrop/`` holds ``pyproject.toml``), or None."""
    root = Path(__file__).resolve().parent.parent.parent
    return root if (root / "pyproject.toml").is_file() else None


def find_data_root() -> Path | None:
    """The data root by the rules above, or None when there is none (installed package, no ``$AUTOCROP_DATA_DIR``).

    The folder need not exist; callers that only report (``autocrop doctor``) use this.
    """
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    checkout = checkout_root()
    return checkout.parent / "shared" / "data" if checkout is not None else None


def default_data_root() -> Path:
    """The data root by the rules above.

    Raises :class:`DatasetError` (one line naming ``AUTOCROP_DATA_DIR``) when there is none.
    """
    root = find_data_root()
    if root is None:
        raise DatasetError(NO_DATA_ROOT)
    return root


def resolve_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Directory of dataset ``name`` ('gaicd', 'fcdb', 'flms', ...), or ``data_dir`` when given.

    Raises :class:`DatasetError` with a one-line message when there is no data root or the directory
    does not exist.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
    else:
        path = default_data_root() / DATASET_FOLDERS.get(name.lower(), name)
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset directory '{name}' does not exist (set --data-dir or ${DATA_ENV})")
    return path
