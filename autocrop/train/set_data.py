"""Training photos of the set model: FCDB train (its validation split held out) and GAICD (k folds).

FCDB test photos are never listed here. Boxes of :class:`PhotoSource` are pixels of the photo file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autocrop.data import load_fcdb, load_gaicd
from autocrop.train.datasets import gaicd_folds, is_fcdb_validation
from autocrop.train.set_features import PhotoSource
from autocrop.train.set_targets import mos_quality


def fcdb_sources(root: Path, limit: int | None = None) -> tuple[list[PhotoSource], int]:
    """FCDB *train* photos (validation split marked ``train=False``) -> (sources, missing files)."""
    images, missing = load_fcdb(root, "train", with_pairs=False)
    images = images[:limit] if limit else images
    sources = [
        PhotoSource("fcdb", im.name, im.path, np.asarray([im.best_box], np.float32), np.ones(1, np.float32),
                    train=not is_fcdb_validation(im.name))
        for im in images
    ]
    return sources, missing


def gaicd_sources(root: Path, folds: int = 5, fold: int | None = None,
                  limit: int | None = None) -> tuple[list[PhotoSource], int]:
    """GAICD photos with every annotated crop and its MOS quality; fold ``fold`` is validation (None: all train)."""
    split = "test" if (root / "annotations" / "test").is_dir() else "train"
    images, missing = load_gaicd(root, split)
    images = images[:limit] if limit else images
    fold_of = gaicd_folds([im.name for im in images], folds) if fold is not None else [None] * len(images)
    sources = [
        PhotoSource("gaicd", im.name, im.path, np.asarray(im.boxes, np.float32), mos_quality(im.scores),
                    train=fold is None or f != fold)
        for im, f in zip(images, fold_of)
    ]
    return sources, missing


def training_images(sources: list[PhotoSource]) -> list[dict[str, str]]:
    """The card's ``training_images`` records of the photos trained on (validation photos excluded)."""
    return [{"dataset": s.dataset, "name": s.name if s.dataset == "fcdb" else f"{s.name}.jpg"}
            for s in sources if s.train]
