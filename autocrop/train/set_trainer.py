"""Training of the set model's decoder on cached backbone features (:mod:`autocrop.train.set_features`).

The backbone is frozen (the packaged grid model's), so an epoch is a pass of the small decoder over the
cached memories: photos of equal memory size are batched together; a photo is mirrored with probability
1/2 (its mirror memory was cached too). Targets per photo (:func:`photo_targets`):

* FCDB: the ground-truth crop (quality 1) + the grid teacher's views that overlap it by IoU <= 0.7 (soft
  quality from its scores); unmatched queries target 0, or, in a self-distillation round (``distill``),
  the first-round model's validity smoothed by IoU (:mod:`autocrop.train.set_targets`).
* GAICD: the best annotated crops by MOS as good crops; unmatched queries get quality-guided soft targets
  from every annotated crop.

Model selection: top-1 IoU of the best-validity crop on the FCDB validation split (else the GAICD
validation fold); never FCDB test. Checkpoints (``last.safetensors``: decoder + AdamW state, progress
JSON) resume bit-exactly: every epoch's shuffling, mirroring and dropout draw from seeds of (seed, epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autocrop.model.set_config import SetModelConfig
from autocrop.model.set_net import SetCropNet, SetHead, boxes_to_params
from autocrop.train.checkpoint import load_checkpoint, save_checkpoint
from autocrop.train.set_features import CachedPhoto
from autocrop.train.set_losses import LossWeights, PhotoTargets, set_loss
from autocrop.train.set_targets import good_crops, teacher_quality

GT_TEACHER_MAX_IOU = 0.7  # teacher views closer than this to the ground truth are left to it


@dataclass(frozen=True)
class SetRecipe:
    """Hyper-parameters of decoder training (recorded in the card)."""

    epochs: int = 12
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 1e-4
    seed: int = 0
    flip: bool = True
    teacher_crops: int = 2        # grid-teacher views added as extra good crops on FCDB (0: none)
    teacher_temperature: float = 1.0
    teacher_top_quality: float = 0.8
    distill: bool = False          # self-distillation round (needs a first-round model)
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    validity_weight: float = 2.0
    clip_norm: float = 1.0


@dataclass
class SetEpochStats:
    """One epoch: mean loss, seconds, validation metrics."""

    epoch: int
    loss: float
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)


def flip_boxes(boxes: np.ndarray) -> np.ndarray:
    """Mirror normalised boxes [K, 4] x1 y1 x2 y2 left-right."""
    return np.stack([1.0 - boxes[:, 2], boxes[:, 1], 1.0 - boxes[:, 0], boxes[:, 3]], axis=1).astype(np.float32)


def photo_targets(photo: CachedPhoto, recipe: SetRecipe, flipped: bool) -> PhotoTargets:
    """The matching targets of one cached photo (normalised boxes; mirrored with ``flipped``)."""
    boxes, quality = photo.boxes, photo.quality
    refs = ref_q = None
    if photo.dataset == "gaicd":
        keep = good_crops(quality)
        refs, ref_q = boxes, quality  # quality-guided smoothing from every annotated crop
        boxes, quality = boxes[keep], quality[keep]
    elif recipe.teacher_crops > 0 and len(photo.teacher):
        from autocrop.geometry import box_iou

        views = photo.teacher[: recipe.teacher_crops]
        soft = teacher_quality(photo.teacher_scores[: recipe.teacher_crops], recipe.teacher_temperature,
                               recipe.teacher_top_quality)
        far = box_iou(views, boxes).max(axis=1) <= GT_TEACHER_MAX_IOU
        boxes = np.concatenate([boxes, views[far]]).astype(np.float32)
        quality = np.concatenate([quality, soft[far]]).astype(np.float32)
    if flipped:
        boxes = flip_boxes(boxes)
        refs = flip_boxes(refs) if refs is not None else None
    as_t = torch.from_numpy
    return PhotoTargets(as_t(np.ascontiguousarray(boxes)), as_t(np.ascontiguousarray(quality)),
                        as_t(np.ascontiguousarray(refs)) if refs is not None else None,
                        as_t(np.ascontiguousarray(ref_q)) if ref_q is not None else None)


def kmeans_anchors(boxes: np.ndarray, k: int, seed: int = 0, iterations: int = 30) -> np.ndarray:
    """k-means (Lloyd) of normalised boxes [M, 4] -> k centres float32 [k, 4] (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    boxes = np.asarray(boxes, np.float64)
    centres = boxes[rng.choice(len(boxes), size=k, replace=len(boxes) < k)].copy()
    for _ in range(iterations):
        owner = ((boxes[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        for c in range(k):
            members = boxes[owner == c]
            if len(members):
                centres[c] = members.mean(0)
    return centres.astype(np.float32)


def validate(net: SetCropNet, photos: list[CachedPhoto]) -> dict[str, float]:
    """Top-1 IoU / Disp of the best-validity crop (FCDB: vs the ground truth; GAICD: vs the best-MOS crop)
    and ``top3_iou``: mean pairwise IoU of the top-3 diverse crops (NMS at IoU 0.7)."""
    from autocrop.bench.metrics import box_metrics
    from autocrop.geometry import box_iou
    from autocrop.model.set_scorer import diverse

    if not photos:
        return {}
    was = net.training
    net.eval()
    chosen, truths, sizes, pair_iou = [], [], [], []
    with torch.inference_mode():
        for photo in photos:
            boxes, logits = net.decode(photo.memory.float()[None])
            w, h = photo.size
            scale = np.asarray([w, h, w, h], np.float64)
            pixels = boxes[0].double().numpy() * scale
            validity = logits[0].numpy()
            chosen.append(pixels[int(np.argmax(validity))])
            gt = photo.boxes if photo.dataset == "fcdb" else photo.boxes[[int(np.argmax(photo.quality))]]
            truths.append(gt.astype(np.float64) * scale)
            sizes.append((float(w), float(h)))
            top = pixels[diverse(pixels, validity, 3, 0.7)]
            iou = box_iou(top, top)
            pair_iou.append(float(iou[np.triu_indices(len(top), 1)].mean()) if len(top) > 1 else 1.0)
    net.train(was)
    result = box_metrics(chosen, truths, sizes)
    return {"iou": result.iou, "disp": result.disp, "top3_iou": float(np.mean(pair_iou))}


class SetTrainer:
    """Trains ``SetCropNet.head`` on cached memories; writes ``last.safetensors`` and ``best.safetensors``."""

    def __init__(self, config: SetModelConfig, recipe: SetRecipe, train: list[CachedPhoto], val: list[CachedPhoto],
                 out: Path, backbone: dict[str, torch.Tensor], first_round: SetHead | None = None) -> None:
        self.config, self.recipe, self.train, self.val, self.out = config, recipe, train, val, out
        with torch.random.fork_rng(devices=[]):  # seeded initialisation; the caller's random stream is kept
            torch.manual_seed(recipe.seed)
            self.net = SetCropNet(config)
        result = self.net.features.load_state_dict(backbone, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise ValueError(f"backbone tensors do not fit MobileNetV2 (missing {missing[:3]}, "
                             f"unexpected {result.unexpected_keys[:3]})")
        self.net.features.eval().requires_grad_(False)
        good = np.concatenate([p.boxes[[int(np.argmax(p.quality))]] for p in train])
        anchors = kmeans_anchors(good, config.queries, recipe.seed)
        with torch.no_grad():
            self.net.head.anchors.copy_(boxes_to_params(torch.from_numpy(anchors), config.min_size))
        self.first_round = first_round.eval() if first_round is not None else None
        self.optimizer = torch.optim.AdamW(self.net.head.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.weights = LossWeights(recipe.l1_weight, recipe.giou_weight, recipe.validity_weight)
        self.start_epoch = 0
        self.best = -math.inf
        self.history: list[dict[str, Any]] = []

    @property
    def last_checkpoint(self) -> Path:
        return self.out / "last.safetensors"

    def resume(self) -> bool:
        """Continue from ``last.safetensors`` when it exists (True) -- decoder, AdamW state, progress."""
        if not self.last_checkpoint.is_file():
            return False
        progress, _ = load_checkpoint(self.last_checkpoint, self.net.head, self.optimizer)
        self.start_epoch = int(progress["epoch"]) + 1
        self.best = float(progress["best"])
        self.history = list(progress["history"])
        return True

    def batches(self, epoch: int) -> list[list[tuple[CachedPhoto, bool]]]:
        """The epoch's batches: photos grouped by memory size, shuffled, each with its mirror flag."""
        generator = torch.Generator().manual_seed(self.recipe.seed * 1000003 + epoch)
        order = torch.randperm(len(self.train), generator=generator).tolist()
        flips = (torch.rand(len(self.train), generator=generator) < 0.5).tolist()
        groups: dict[tuple[int, ...], list[tuple[CachedPhoto, bool]]] = {}
        for i in order:
            photo = self.train[i]
            groups.setdefault(tuple(photo.memory.shape), []).append((photo, self.recipe.flip and flips[i]))
        size = self.recipe.batch_size
        batches = [g[s:s + size] for g in groups.values() for s in range(0, len(g), size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def step_loss(self, batch: list[tuple[CachedPhoto, bool]]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of one batch (every decoder layer)."""
        memory = torch.stack([(p.memory_flip if f and p.memory_flip is not None else p.memory) for p, f in batch])
        memory = memory.float()
        targets = [photo_targets(p, self.recipe, f and p.memory_flip is not None) for p, f in batch]
        if self.first_round is not None and self.recipe.distill:
            with torch.no_grad():
                ref_boxes, ref_logits = self.first_round(memory)[-1]
            for b, target in enumerate(targets):
                if target.ref_boxes is None:
                    target.ref_boxes, target.ref_quality = ref_boxes[b], torch.sigmoid(ref_logits[b])
        return set_loss(self.net.decode_layers(memory), targets, self.weights)

    def train_epoch(self, epoch: int, on_step: Callable[[int, int, float], None] | None = None) -> SetEpochStats:
        """One pass over the training photos (cosine learning rate); the caller's random stream is kept."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.recipe.seed * 7919 + epoch)  # dropout
            return self._train_epoch(epoch, on_step)

    def _train_epoch(self, epoch: int, on_step: Callable[[int, int, float], None] | None) -> SetEpochStats:
        start = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = self.recipe.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.recipe.epochs))
        self.net.head.train()
        batches = self.batches(epoch)
        losses = []
        for step, batch in enumerate(batches, 1):
            loss, _ = self.step_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.head.parameters(), self.recipe.clip_norm)
            self.optimizer.step()
            losses.append(float(loss.detach()))
            if on_step:
                on_step(step, len(batches), float(np.mean(losses)))
        return SetEpochStats(epoch, float(np.mean(losses)), time.perf_counter() - start)

    def fit(self, card: dict[str, Any], on_step: Callable[[int, int, float], None] | None = None,
            on_epoch: Callable[[SetEpochStats], None] | None = None) -> None:
        """Train to ``recipe.epochs``: after each epoch validate, keep the best model, write the checkpoint."""
        for epoch in range(self.start_epoch, self.recipe.epochs):
            stats = self.train_epoch(epoch, on_step)
            stats.metrics = validate(self.net, self.val)
            self.history.append(asdict(stats))
            score = stats.metrics.get("iou", -stats.loss)
            if score > self.best or not (self.out / "best.safetensors").is_file():
                self.best = score
                self.save_model(self.out / "best.safetensors", card, epoch, stats.metrics)
            progress = {"epoch": epoch, "best": self.best, "history": self.history}
            save_checkpoint(self.last_checkpoint, self.net.head, self.optimizer, progress)
            if on_epoch:
                on_epoch(stats)
        self.save_model(self.out / "final.safetensors", card, self.recipe.epochs - 1,
                        self.history[-1]["metrics"] if self.history else {})

    def save_model(self, path: Path, card: dict[str, Any], epoch: int, metrics: dict[str, float]) -> None:
        """The whole network (backbone + decoder) as a set model file with its card."""
        from autocrop.model.set_weights import save_set_weights

        full = {**card, "recipe": asdict(self.recipe), "best_epoch": epoch, "validation": metrics,
                "history": self.history}
        save_set_weights(path, self.net.state_dict(), self.config, full)
