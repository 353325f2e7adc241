"""FCDB reader: json crop lists (``{"url", "crop": [x, y, w, h]}``) + human pairwise votes.

Image files are ``data/<basename of url>``; 45 files of the official lists are gone from Flickr, so
missing files are skipped and counted, never fatal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from autocrop.errors import DatasetError

SPLIT_FILES = {"train": "cropping_training_set.json", "test": "cropping_testing_set.json"}


@dataclass(frozen=True)
class RankingPair:
    """A human comparison of two crops (pixels, ``x1 y1 x2 y2``) with the votes each received."""

    box_a: tuple[float, float, float, float]
    box_b: tuple[float, float, float, float]
    votes_a: int
    votes_b: int


@dataclass(frozen=True)
class FCDBImage:
    """One FCDB image: its best crop (``x1 y1 x2 y2`` pixels) and any pairwise votes."""

    path: Path
    name: str
    best_box: tuple[float, float, float, float]
    pairs: tuple[RankingPair, ...] = field(default=())


def _xywh_to_xyxy(box: list[float]) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in box)
    return (x, y, x + w, y + h)


def _read_json(path: Path) -> list:
    if not path.is_file():
        raise DatasetError(f"{path.parent}: not an FCDB directory (expected {path.name})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: invalid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of annotations")
    return data


def load_ranking_pairs(root: Path) -> dict[str, tuple[RankingPair, ...]]:
    """Pairwise votes keyed by image file name (train side only); empty when the file is absent."""
    path = root / "ranking_annotation.json"
    if not path.is_file():
        return {}
    pairs: dict[str, tuple[RankingPair, ...]] = {}
    for entry in _read_json(path):
        name = entry["url"].rsplit("/", 1)[-1]
        pairs[name] = tuple(
            RankingPair(
                _xywh_to_xyxy(c["crop_0"]), _xywh_to_xyxy(c["crop_1"]), int(c["vote_for_0"]), int(c["vote_for_1"])
            )
            for c in entry.get("crops", [])
        )
    return pairs


def load_fcdb(root: str | Path, split: str = "test", with_pairs: bool = True) -> tuple[list[FCDBImage], int]:
    """FCDB images of ``split`` ('train' | 'test') present under ``root/data``; returns (images, missing)."""
    root = Path(root)
    if split not in SPLIT_FILES:
        raise DatasetError(f"{root}: unknown FCDB split {split!r} (use 'train' or 'test')")
    entries = _read_json(root / SPLIT_FILES[split])
    if not entries:
        raise DatasetError(f"{root / SPLIT_FILES[split]}: no annotations")
    pairs = load_ranking_pairs(root) if (with_pairs and split == "train") else {}
    images: list[FCDBImage] = []
    missing = 0
    for entry in entries:
        name = entry["url"].rsplit("/", 1)[-1]
        path = root / "data" / name
        if not path.is_file():
            missing += 1
            continue
        images.append(FCDBImage(path, name, _xywh_to_xyxy(entry["crop"]), pairs.get(name, ())))
    return images, missing
