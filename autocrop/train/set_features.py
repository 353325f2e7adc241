"""Feature cache of set-model training: the frozen backbone's memory of every photo, computed once.

The backbone (MobileNetV2 of the packaged grid model) is frozen while the decoder trains, so each
photo's memory [448, h, w] (and that of its mirror image) is computed once and stored as float16 under
the run folder (``<out>/features/<key>.safetensors``, key = sha256 of backbone sha256 + dataset + name +
input size + split + number of teacher views). The grid model also labels FCDB *train* photos as a
teacher: its ``teacher_crops`` best diverse grid views (refined as the Cropper refines them) and their
scores. FCDB test photos never come here.

Boxes are ``x1 y1 x2 y2`` normalised to the photo (0..1).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autocrop.model.network import ViewRankingNet, normalize_image, pixels_to_tensor
from autocrop.model.set_config import SetModelConfig
from autocrop.train.samples import decode_resized

CACHE_VERSION = "1"
TEACHER_DIVERSITY = 0.6  # teacher views overlap each other by at most this IoU


@dataclass(frozen=True)
class PhotoSource:
    """A training photo before caching: boxes float32 [G, 4] pixels of the file, quality float32 [G] in 0..1."""

    dataset: str
    name: str
    path: Path
    boxes: np.ndarray
    quality: np.ndarray
    train: bool = True  # False: a validation photo (no mirror image, no teacher labels)


@dataclass
class CachedPhoto:
    """A photo ready for decoder training.

    memory / memory_flip: float16 [448, h, w] of the photo and its mirror image (None for validation photos).
    boxes [G, 4] normalised + quality [G]: the labelled crops (FCDB: the ground truth, quality 1; GAICD: every
    annotated crop, quality from MOS). teacher [K, 4] normalised + teacher_scores [K]: the grid teacher's views.
    size: (width, height) of the photo file in pixels.
    """

    dataset: str
    name: str
    memory: torch.Tensor
    memory_flip: torch.Tensor | None
    boxes: np.ndarray
    quality: np.ndarray
    teacher: np.ndarray
    teacher_scores: np.ndarray
    size: tuple[int, int]
    train: bool = True


def cache_key(backbone_sha: str, source: PhotoSource, config: SetModelConfig, teacher_crops: int) -> str:
    """The cache file stem of ``source``: 24 hex digits (backbone, photo, input size, split, teacher views)."""
    text = "|".join([CACHE_VERSION, backbone_sha, source.dataset, source.name, str(config.input_short_side),
                     str(config.max_long_side), str(source.train), str(teacher_crops)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@torch.inference_mode()
def compute_photo(grid: ViewRankingNet, source: PhotoSource, config: SetModelConfig, teacher_crops: int,
                  decoded: tuple[np.ndarray, float, float, tuple[int, int]]) -> CachedPhoto:
    """Memory (and mirror), normalised labels and teacher views of one decoded photo."""
    from autocrop.candidates import grid_candidates
    from autocrop.model.set_scorer import diverse
    from autocrop.select import refine_boxes

    pixels, _, _, size = decoded
    image = normalize_image(pixels_to_tensor(pixels))
    memory = grid.backbone(image)[0][0]
    h, w = pixels.shape[:2]
    norm = np.asarray([size[0], size[1], size[0], size[1]], np.float32)
    boxes = np.clip(np.asarray(source.boxes, np.float32).reshape(-1, 4) / norm, 0.0, 1.0)
    flip = teacher = scores = None
    if source.train:
        flip = grid.backbone(image.flip(-1))[0][0].half()
        if teacher_crops > 0:
            candidates = grid_candidates(w, h).astype(np.float32)
            grid_scores = grid.predict(image, torch.from_numpy(candidates)).numpy()
            chosen = diverse(candidates, grid_scores, teacher_crops, TEACHER_DIVERSITY)
            refined = refine_boxes(candidates, grid_scores, chosen)
            teacher = np.clip(refined / np.asarray([w, h, w, h]), 0.0, 1.0).astype(np.float32)
            scores = grid_scores[chosen].astype(np.float32)
    return CachedPhoto(
        source.dataset, source.name, memory.half(), flip, boxes, np.asarray(source.quality, np.float32),
        teacher if teacher is not None else np.zeros((0, 4), np.float32),
        scores if scores is not None else np.zeros(0, np.float32), size, source.train,
    )


def save_cached(path: Path, photo: CachedPhoto) -> None:
    """Write one cached photo (safetensors; atomically)."""
    from safetensors.torch import save

    from autocrop.io.fs import atomic_write_bytes

    tensors = {"memory": photo.memory.contiguous(), "boxes": torch.from_numpy(photo.boxes),
               "quality": torch.from_numpy(photo.quality), "teacher": torch.from_numpy(photo.teacher),
               "teacher_scores": torch.from_numpy(photo.teacher_scores)}
    if photo.memory_flip is not None:
        tensors["memory_flip"] = photo.memory_flip.contiguous()
    meta = {"dataset": photo.dataset, "name": photo.name, "size": json.dumps(list(photo.size)),
            "train": json.dumps(photo.train)}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata=meta), overwrite=True)


def load_cached(path: Path) -> CachedPhoto:
    """Read one cached photo written by :func:`save_cached`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
        t = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - safe_open has no iterator
    size = json.loads(meta["size"])
    return CachedPhoto(meta["dataset"], meta["name"], t["memory"], t.get("memory_flip"), t["boxes"].numpy(),
                       t["quality"].numpy(), t["teacher"].numpy(), t["teacher_scores"].numpy(),
                       (int(size[0]), int(size[1])), json.loads(meta["train"]))


def build_cache(
    sources: Sequence[PhotoSource], grid: ViewRankingNet, backbone_sha: str, folder: Path, config: SetModelConfig,
    teacher_crops: int = 3, progress: Callable[[int, int], None] | None = None,
) -> tuple[list[CachedPhoto], int]:
    """Cached photos of ``sources`` (computed where missing, read where present) -> (photos, unreadable count).

    grid: the packaged grid model (eval mode): its backbone makes the memory, its scores the teacher views.
    Decoding runs in a helper thread while the backbone computes.
    """
    from autocrop.errors import InputError

    preprocess = config.preprocess_config()
    todo = [(s, folder / f"{cache_key(backbone_sha, s, config, teacher_crops)}.safetensors") for s in sources]

    def decode(item: tuple[PhotoSource, Path]) -> tuple[np.ndarray, float, float, tuple[int, int]] | None:
        source, path = item
        if path.is_file():
            return None
        try:
            return decode_resized(source.path, preprocess)
        except (InputError, OSError, ValueError, SyntaxError):
            return None

    photos: list[CachedPhoto] = []
    broken = 0
    with ThreadPoolExecutor(1) as pool:
        for index, ((source, path), decoded) in enumerate(zip(todo, _prefetch(pool, decode, todo))):
            if path.is_file():
                photos.append(load_cached(path))
            elif decoded is None:
                broken += 1
            else:
                photo = compute_photo(grid, source, config, teacher_crops, decoded)
                save_cached(path, photo)
                photos.append(photo)
            if progress:
                progress(index + 1, len(todo))
    return photos, broken


def _prefetch(pool: ThreadPoolExecutor, fn: Callable, items: list, ahead: int = 4) -> Iterator:
    """``map(fn, items)`` computed ``ahead`` items in advance in ``pool``."""
    futures = [pool.submit(fn, item) for item in items[:ahead]]
    for index in range(len(items)):
        if index + ahead < len(items):
            futures.append(pool.submit(fn, items[index + ahead]))
        yield futures[index].result()
