"""Model cards: the JSON file beside each weights file (``m.safetensors`` -> ``m.json``).

A card says what a model is and how it was made: its config, the training recipe, every training
image, validation figures, and the sha256 / size of the weights file it describes. Every writer of
cards goes through this module (``autocrop train``, model soups, ``benchmarks/package_model.py``), so
the file-describing fields and the union of training images are computed in one way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from autocrop.errors import ModelError

#: Fields that describe one weights file; a card for another file must not carry them over.
FILE_FIELDS = ("weights_file", "sha256", "size_bytes")
#: Fields that describe one training run (its validation figures, its epochs).
RUN_FIELDS = ("validation", "history", "best_epoch")
#: The JSON type of every card field autocrop reads (other fields are kept, unread).
FIELD_TYPES: dict[str, type] = {
    "name": str, "version": str, "autocrop_version": str, "created": str, "weights_file": str, "sha256": str,
    "size_bytes": int, "config": dict, "recipe": dict, "validation": dict, "mos_standardization": dict,
    "datasets": list, "training_images": list, "validation_images": list,
}
_JSON_NAMES = {str: "text", int: "a whole number", dict: "an object", list: "a list"}


def card_path_for(weights: str | Path) -> Path:
    """The card of a weights file: the same name with ``.json``."""
    return Path(weights).with_suffix(".json")


def read_card(weights: str | Path) -> dict[str, Any]:
    """The card beside ``weights`` (``{}`` when there is none); one-line :class:`ModelError` when it is not JSON."""
    path = card_path_for(weights)
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path}: model card is not valid JSON ({err})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{path}: model card is not a JSON object (it is a JSON {type(card).__name__})")
    problem = card_problem(card)
    if problem:
        raise ModelError(f"{path}: model card field {problem}")
    return card


def card_problem(card: dict[str, Any]) -> str | None:
    """What is wrong with the fields of ``card`` ("sha256 5: must be text"), or None."""
    for key, kind in FIELD_TYPES.items():
        if key not in card or card[key] is None:
            continue
        value = card[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{key} {_short(value)}: must be {_JSON_NAMES.get(kind, kind.__name__)}"
    sha = card.get("sha256")
    if isinstance(sha, str) and not (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha.lower())):
        return f"sha256 {_short(sha)}: must be 64 hex digits"
    for key in ("training_images", "validation_images"):
        for item in card.get(key) or []:  # thousands of entries, checked on every load: no inner generator
            if not (isinstance(item, dict) and isinstance(item.get("dataset"), str)
                    and isinstance(item.get("name"), str)):
                return f"{key} entry {_short(item)}: must be an object with text dataset and name"
    for key in ("mean", "std"):
        value = (card.get("mos_standardization") or {}).get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"mos_standardization.{key} {_short(value)}: must be a number"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def card_bytes(card: dict[str, Any]) -> bytes:
    """The card file's content: indented JSON in insertion order, one trailing newline."""
    return (json.dumps(card, indent=1) + "\n").encode("utf-8")


def write_card(weights: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` beside ``weights`` atomically (replacing an older card); returns the card's path."""
    from autocrop.io.fs import atomic_write_bytes

    path = card_path_for(weights)
    atomic_write_bytes(path, card_bytes(card), overwrite=True)
    return path


def provenance() -> dict[str, str]:
    """``autocrop_version`` (this autocrop) and ``created`` (now, UTC, ISO 8601 to the second) of a new card."""
    from autocrop import __version__

    return {"autocrop_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def stamped(card: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``card`` with :func:`provenance` set (fields it has keep their place)."""
    return {**card, **provenance()}


def unique_images(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training-image records (``{"dataset", "name"}``) without repeats, first occurrence kept."""
    seen: set[tuple[Any, Any]] = set()
    unique = []
    for record in records:
        key = (record.get("dataset"), record.get("name"))
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique


def merged_training_images(
    cards: Iterable[dict[str, Any]], extra: Iterable[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Every image the models of ``cards`` were trained on, then ``extra``, without repeats.

    A model fine-tuned from another has seen its starting model's images; an average of models has
    seen every member's images.
    """
    records = [item for card in cards for item in card.get("training_images", [])]
    return unique_images([*records, *extra])


def without_fields(card: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``card`` without ``fields`` (e.g. :data:`FILE_FIELDS` + :data:`RUN_FIELDS` for a derived model)."""
    drop = set(fields)
    return {k: v for k, v in card.items() if k not in drop}
