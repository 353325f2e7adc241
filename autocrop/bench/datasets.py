"""Benchmark inputs: dataset loading for the bench, FLMS, the predefined anchors, the training-image guard.

Two kinds of items:

* :class:`autocrop.data.ScoredImage` (GAICD): annotated candidates with their MOS.
* :class:`BoxImage` (FCDB, FLMS): one or more ground-truth crops ``gts`` float64 [G, 4] ``x1 y1 x2 y2``
  pixels of the image file.

FLMS (Fang et al., "Automatic image cropping using visual composition, boundary simplicity and
content preservation models", ACM MM 2014) is read in the layout of its public release::

    FLMS/
      500_image_dataset.mat     MATLAB file with a 500 x 1 struct array ``img_gt``; entry i holds
                                (file name, G x 4 matrix of expert crops ``y1 x1 y2 x2`` in pixels;
                                rows with a negative value mark a missing crop and are dropped)
      image/NAME.jpg            the 500 photos

Reading the ``.mat`` file needs scipy (``pip install scipy``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autocrop.errors import DatasetError, UsageError

DATASETS = ("gaicd", "fcdb", "flms")
ANCHORS_FILE = "pdefined_anchors_1745.json"
FLMS_MAT = "500_image_dataset.mat"
FLMS_LAYOUT = f"expected {FLMS_MAT} and image/*.jpg (the public FLMS release)"


@dataclass(frozen=True)
class BoxImage:
    """An image with ground-truth crops ``gts`` float64 [G, 4] (``x1 y1 x2 y2`` pixels of the file)."""

    path: Path
    name: str
    gts: np.ndarray


def load_flms(root: str | Path) -> tuple[list[BoxImage], int]:
    """FLMS images under ``root`` (public release layout, see module docstring) -> (images, missing)."""
    root = Path(root)
    mat_path, image_dir = root / FLMS_MAT, root / "image"
    if not mat_path.is_file() or not image_dir.is_dir():
        raise DatasetError(f"{root}: not an FLMS directory ({FLMS_LAYOUT})")
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError(f"{mat_path}: reading FLMS needs scipy (pip install scipy)") from None
    try:
        table = loadmat(str(mat_path))["img_gt"]
    except KeyError:
        raise DatasetError(f"{mat_path}: no 'img_gt' struct array ({FLMS_LAYOUT})") from None
    except Exception as err:  # scipy raises several unrelated types for damaged files
        raise DatasetError(f"{mat_path}: cannot read MATLAB file ({type(err).__name__}: {err})") from None
    images: list[BoxImage] = []
    missing = 0
    for index, entry in enumerate(np.asarray(table).reshape(-1)):
        try:
            name = str(np.asarray(entry[0]).reshape(-1)[0])
            crops = np.asarray(entry[1], dtype=np.float64).reshape(-1, 4)
        except (IndexError, TypeError, ValueError):
            raise DatasetError(
                f"{mat_path}: img_gt entry {index} is not (file name, G x 4 crops y1 x1 y2 x2)"
            ) from None
        crops = crops[(crops >= 0).all(axis=1)][:, [1, 0, 3, 2]]
        path = image_dir / name
        if not path.is_file():
            missing += 1
            continue
        if len(crops):
            images.append(BoxImage(path, name, crops))
    if not images and not missing:
        raise DatasetError(f"{mat_path}: no annotated images")
    return images, missing


def load_fcdb_boxes(root: str | Path, split: str) -> tuple[list[BoxImage], int]:
    """FCDB ``split`` as :class:`BoxImage` items (one ground truth each) -> (images, missing)."""
    from autocrop.data import load_fcdb

    items, missing = load_fcdb(root, split, with_pairs=False)
    return [BoxImage(i.path, i.name, np.asarray([i.best_box], dtype=np.float64)) for i in items], missing


def load_bench_dataset(dataset: str, root: Path, split: str) -> tuple[list[Any], int]:
    """Items of ``dataset`` ('gaicd' | 'fcdb' | 'flms') under ``root`` -> (items sorted by name, missing count).

    GAICD items are :class:`autocrop.data.ScoredImage`, FCDB and FLMS items :class:`BoxImage`.
    """
    items: list[Any]
    if dataset == "gaicd":
        from autocrop.data import load_gaicd

        items, missing = load_gaicd(root, split)
    elif dataset == "fcdb":
        items, missing = load_fcdb_boxes(root, split)
    elif dataset == "flms":
        if split != "test":
            raise UsageError(f"split {split!r}: FLMS has a single test set (split 'test')")
        items, missing = load_flms(root)
    else:
        raise UsageError(f"dataset {dataset!r}: unknown (choose {', '.join(DATASETS)})")
    return sorted(items, key=lambda item: item.name), missing


def anchor_file_candidates(data_dir: Path) -> list[Path]:
    """Where the 1745 predefined anchors are looked for, in order (the data root's ``anchors/`` last, if any)."""
    from autocrop.data.locate import find_data_root

    places = [data_dir / ANCHORS_FILE, data_dir / "anchors" / ANCHORS_FILE, data_dir.parent / "anchors" / ANCHORS_FILE]
    root = find_data_root()
    if root is not None:
        places.append(root / "anchors" / ANCHORS_FILE)
    return places


def load_anchors(data_dir: Path) -> tuple[np.ndarray, Path]:
    """The predefined normalised anchors float64 [A, 4] (``x1 y1 x2 y2`` in 0..1) and the file they came from."""
    for path in anchor_file_candidates(data_dir):
        if path.is_file():
            break
    else:
        raise DatasetError(
            f"{ANCHORS_FILE} not found (looked in {data_dir}, {data_dir / 'anchors'}, {data_dir.parent / 'anchors'} "
            "and $AUTOCROP_DATA_DIR/anchors)"
        )
    try:
        anchors = np.asarray(json.loads(path.read_text()), dtype=np.float64)
    except (json.JSONDecodeError, ValueError, TypeError) as err:
        raise DatasetError(f"{path}: not a JSON list of [x1, y1, x2, y2] anchors ({err})") from None
    if anchors.ndim != 2 or anchors.shape[1] != 4 or len(anchors) == 0:
        raise DatasetError(f"{path}: expected a JSON list of [x1, y1, x2, y2] anchors, got shape {anchors.shape}")
    inverted = (anchors[:, 2] <= anchors[:, 0]).any() or (anchors[:, 3] <= anchors[:, 1]).any()
    if anchors.min() < 0 or anchors.max() > 1 or inverted:
        raise DatasetError(f"{path}: anchors must be normalised boxes with 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
    return anchors, path


def training_names(card: dict, dataset: str) -> set[str]:
    """File names (and stems) the model card lists as training images of ``dataset``."""
    names: set[str] = set()
    for entry in card.get("training_images") or []:
        if not isinstance(entry, dict) or str(entry.get("dataset", "")).lower() != dataset:
            continue
        name = str(entry.get("name", ""))
        if name:
            names.add(name)
            names.add(Path(name).stem)
    return names


def is_training_item(item: Any, names: set[str]) -> bool:
    """Whether ``item`` (has ``.path`` and ``.name``) is listed in ``names`` (by file name or stem)."""
    return item.path.name in names or item.name in names or Path(item.name).stem in names


def split_training_items(items: list[Any], card: dict, dataset: str) -> tuple[list[Any], list[Any]]:
    """(items not listed as training images in ``card``, items that are)."""
    names = training_names(card, dataset)
    if not names:
        return list(items), []
    kept = [i for i in items if not is_training_item(i, names)]
    trained = [i for i in items if is_training_item(i, names)]
    return kept, trained
