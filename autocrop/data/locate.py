"""Where the public datasets live: ``--data-dir`` > ``AUTOCROP_DATA_DIR`` > ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

from autocrop.errors import DatasetError

DATA_ENV = "AUTOCROP_DATA_DIR"


def default_data_root() -> Path:
    """Root holding ``GAICD/``, ``FCDB/``, ``anchors/``: ``$AUTOCROP_DATA_DIR`` or ``../shared/data``."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path.cwd().parent / "shared" / "data"


def resolve_data_dir(name: str, data_dir: str | Path | None = None) -> Path:
    """Directory of dataset ``name`` ('gaicd', 'fcdb', ...), or ``data_dir`` when given.

    Raises :class:`DatasetError` with a one-line message when the directory does not exist.
    """
    if data_dir is not None:
        path = Path(data_dir).expanduser()
    else:
        folder = {"gaicd": "GAICD", "fcdb": "FCDB", "flms": "FLMS"}.get(name.lower(), name)
        path = default_data_root() / folder
    if not path.is_dir():
        raise DatasetError(f"{path}: dataset directory '{name}' does not exist (set --data-dir or ${DATA_ENV})")
    return path
