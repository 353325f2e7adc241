"""Training / validation splits. The test split of FCDB is never read here.

- GAICD (the images in ../shared/data/GAICD): k folds from a fixed permutation of the image names
  (seed 0, independent of the training seed); ``fold=i`` validates on fold i and trains on the rest;
  ``fold=None`` trains on all of them (no GAICD validation).
- FCDB: the official train list only; a fixed 10% of it (by a hash of the file name) is validation.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autocrop.data import list_images, load_fcdb, load_gaicd, resolve_data_dir
from autocrop.errors import DatasetError, InputError
from autocrop.model.config import ModelConfig
from autocrop.train.samples import TrainSample, fcdb_sample, gaicd_sample

FCDB_VAL_PERCENT = 10


@dataclass
class Splits:
    train: list[TrainSample] = field(default_factory=list)
    val: list[TrainSample] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def training_images(self) -> list[dict[str, str]]:
        """Every image the model is trained on, as recorded in the model card."""
        return [{"dataset": s.dataset, "name": Path(s.name).name if s.dataset == "fcdb" else f"{s.name}.jpg"} for s in self.train]


def unique_images(records: list[dict]) -> list[dict]:
    """Training-image records (``{"dataset", "name"}``) without repeats, first occurrence kept."""
    seen: set[tuple] = set()
    unique = []
    for record in records:
        key = (record.get("dataset"), record.get("name"))
        if key not in seen:
            seen.add(key)
            unique.append(record)
    return unique


def gaicd_folds(names: list[str], folds: int) -> list[int]:
    """Fold index of each name (fixed permutation, seed 0)."""
    order = np.random.default_rng(0).permutation(len(names))
    fold_of = np.empty(len(names), dtype=int)
    fold_of[order] = np.arange(len(names)) % folds
    return fold_of.tolist()


def is_fcdb_validation(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 100 < FCDB_VAL_PERCENT


def decode_samples(items: list, make, config: ModelConfig, workers: int = 2) -> tuple[list[TrainSample], int]:
    """``make(item, config)`` for every item, in parallel threads -> (samples, count of unreadable images)."""
    samples, broken = [], 0

    def one(item):
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


def build_splits(
    datasets: list[str],
    config: ModelConfig,
    data_dir: str | Path | None = None,
    folds: int = 5,
    fold: int | None = None,
    limit: int | None = None,
) -> Splits:
    """Decode and split the requested datasets ('gaicd', 'fcdb', or a folder of GAICD layout)."""
    splits = Splits()
    for name in datasets:
        key = name.lower()
        if key == "fcdb":
            root = resolve_data_dir("fcdb", data_dir if len(datasets) == 1 else None)
            images, missing = load_fcdb(root, "train")
            images = images[:limit] if limit else images
            samples, broken = decode_samples(images, fcdb_sample, config)
            for s in samples:
                (splits.val if is_fcdb_validation(s.name) else splits.train).append(s)
            splits.skipped["fcdb_missing"] = missing
            splits.skipped["fcdb_unreadable"] = broken
        else:
            if key == "gaicd":
                root = resolve_data_dir("gaicd", data_dir if len(datasets) == 1 else None)
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


def unlabeled_folder(path: str | Path) -> list[Path]:
    """Photos of a plain folder (rank-consistency data)."""
    files = list_images(path)
    if not files:
        raise DatasetError(f"{path}: no images found")
    return files
