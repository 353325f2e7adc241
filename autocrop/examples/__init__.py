"""A bundled example photo, so that autocrop can be tried without one of your own.

    autocrop "$(python -c 'from autocrop.examples import example_photo; print(example_photo())')" --ratio 1:1

``coffee.jpg``: "Coffee cup" by Rachel Michetti (CC0), from scikit-image's sample data; see ATTRIBUTION.md.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_NAME = "coffee.jpg"


def example_photo() -> Path:
    """Path of the bundled example photo (a 600x400 JPEG, CC0)."""
    path = Path(__file__).resolve().parent / EXAMPLE_NAME
    if not path.is_file():  # pragma: no cover - a broken install
        from autocrop.errors import InputError

        raise InputError(f"{path}: the bundled example photo is missing (reinstall autocrop-views)")
    return path
