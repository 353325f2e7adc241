"""Training / validation splits. The test split of FCDB is never read here.

- GAICD (the images of the GAICD folder): k folds from a fixed permutation of the image names
  (seed 0, independent of the training seed); ``fold=i`` validates on fold i and trains on the rest;
  ``fold=None`` trains on all of them (no GAICD validation).
- FCDB: the official train list only; a fixed 10% of it (by a hash of the file name) is validation.

Dataset folders: ``data_dir`` when exactly one dataset is asked for, else ``gaicd_dir`` / ``fcdb_dir``,
else ``GAICD`` / ``FCDB`` under the data root (:func:`autocrop.data.locate.default_data_root`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from autocrop.data import load_fcdb, load_gaicd, resolve_data_dir
from autocrop.errors import DatasetError, InputError
from autocrop.model.config import ModelConfig
from autocrop.train.samples import TrainSample, fcdb_sample, gaicd_sample

Item = TypeVar("Item")

FCDB_VAL_PERCENT = 10


@dataclass
class Splits:
    """Decoded training and validation samples; ``skipped`` counts missing / unreadable images per dataset."""

    train: list[TrainSample] = field(default_factory=list)
    val: list[TrainSample] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def training_images(self) -> list[dict[str, str]]:
        """Every image the model is trained on, as recorded in the model card."""
        return [
            {"dataset": s.dataset, "name": Path(s.name).name if s.dataset == "fcdb" else f"{s.name}.jpg"}
            for s in self.train
        ]


def gaicd_folds(names: list[str], folds: int) -> list[int]:
    """Fold index of each name (fixed permutation, seed 0)."""
    order = np.random.default_rng(0).permutation(len(names))
    fold_of = np.empty(len(names), dtype=int)
    fold_of[order] = np.arange(len(names)) % folds
    return fold_of.tolist()


def is_fcdb_validation(name: str) -> bool:
    """True for the fixed ~10 % of FCDB train images (by a hash of the file name) held out for validation."""
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100 < FCDB_VAL_PERCENT


def decode_samples(
    items: Sequence[Item], make: Callable[[Item, ModelConfig], TrainSample], config: ModelConfig, workers: int = 2
) -> tuple[list[TrainSample], int]:
    """``make(item, config)`` for every item, in parallel threads -> (samples, count of unreadable images)."""
    samples: list[TrainSample] = []
    broken = 0

    def one(item: Item) -> TrainSample | None:
        try:
            return make(item, config)
        except (InputError, OSError, ValueError, SyntaxError):  # corrupt, truncated or unreadable image
            return None

    with ThreadPoolExecutor(workers) as pool:
        for result in pool.map(one, items):
            if result is None:
                broken += 1
            else:
                samples.append(result)
    return samples, broken


def dataset_dir(
    name: str, datasets: Sequence[str], data_dir: str | Path | None = None,
    gaicd_dir: str | Path | None = None, fcdb_dir: str | Path | None = None,
) -> Path:
    """Folder of dataset ``name`` ('gaicd' | 'fcdb'): ``data_dir`` when it is the only dataset asked for,
    else ``gaicd_dir`` / ``fcdb_dir``, else the data root's ``GAICD`` / ``FCDB``. Raises :class:`DatasetError`."""
    if data_dir is not None and len(datasets) == 1:
        return resolve_data_dir(name, data_dir)
    return resolve_data_dir(name, {"gaicd": gaicd_dir, "fcdb": fcdb_dir}.get(name.lower()))


def build_splits(
    datasets: list[str],
    config: ModelConfig,
    data_dir: str | Path | None = None,
    folds: int = 5,
    fold: int | None = None,
    limit: int | None = None,
    gaicd_dir: str | Path | None = None,
    fcdb_dir: str | Path | None = None,
) -> Splits:
    """Decode and split the requested datasets ('gaicd', 'fcdb', or a folder of GAICD layout).

    Folders: see :func:`dataset_dir`. ``limit``: at most this many images per dataset (smoke tests).
    """
    splits = Splits()
    for name in datasets:
        key = name.lower()
        if key == "fcdb":
            root = dataset_dir("fcdb", datasets, data_dir, gaicd_dir, fcdb_dir)
            photos, missing = load_fcdb(root, "train")
            photos = photos[:limit] if limit else photos
            samples, broken = decode_samples(photos, fcdb_sample, config)
            for s in samples:
                (splits.val if is_fcdb_validation(s.name) else splits.train).append(s)
            splits.skipped["fcdb_missing"] = missing
            splits.skipped["fcdb_unreadable"] = broken
        else:
            if key == "gaicd":
                root = dataset_dir("gaicd", datasets, data_dir, gaicd_dir, fcdb_dir)
            else:  # a folder in GAICD layout
                root = Path(name)
                if not root.is_dir():
                    raise DatasetError(f"{root}: data path does not exist")
            images, missing = load_gaicd(root, "test" if (root / "annotations" / "test").is_dir() else "train")
            images = images[:limit] if limit else images
            fold_of = gaicd_folds([im.name for im in images], folds) if fold is not None else [None] * len(images)
            samples, broken = decode_samples(images, gaicd_sample, config)
            by_name = {im.name: f for im, f in zip(images, fold_of)}
            for s in samples:
                (splits.val if fold is not None and by_name[s.name] == fold else splits.train).append(s)
            splits.skipped["gaicd_missing"] = missing
            splits.skipped["gaicd_unreadable"] = broken
    if not splits.train:
        raise DatasetError(f"no training images found in {', '.join(datasets)}")
    return splits
