"""The trainer behind ``autocrop train``: one image per step, all its crops scored in one forward pass.

Exact resume: every epoch re-seeds shuffling, augmentation and dropout from (seed, epoch), and a
checkpoint is written after every epoch, so an interrupted run continues from its last finished
epoch and produces the same result as an uninterrupted one.
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

from autocrop.model.config import ModelConfig
from autocrop.model.network import PairwiseRankClassifier, ViewRankingNet, normalize_image, pixels_to_tensor
from autocrop.model.weights import load_state_checked, save_weights
from autocrop.train import losses as L
from autocrop.train.augment import flip_boxes, photometric_jitter, random_rescale
from autocrop.train.checkpoint import load_checkpoint, save_checkpoint
from autocrop.train.recipe import Recipe
from autocrop.train.samples import FCDB_IOU_TEMPERATURE, TrainSample
from autocrop.train.validate import validate

__all__ = ["EpochStats", "Recipe", "Trainer"]


@dataclass
class EpochStats:
    """One epoch: mean training loss, wall time (s), speed (images/s) and validation metrics."""

    epoch: int
    loss: float
    seconds: float
    images_per_second: float
    metrics: dict[str, float] = field(default_factory=dict)


def _selection_score(metrics: dict[str, float], select: str) -> float:
    """Higher is better. 'auto': SRCC + Acc1/5 when GAICD validation exists, else IoU."""
    if select != "auto":
        return metrics.get(select, -math.inf) * (-1 if select == "disp" else 1)
    if "srcc" in metrics:
        return metrics["srcc"] + metrics["acc1_5"] / 100.0
    return metrics.get("iou", -math.inf)


class Trainer:
    """Trains a :class:`ViewRankingNet` on prepared samples; writes checkpoints and the best model to ``out``."""

    def __init__(
        self,
        config: ModelConfig,
        recipe: Recipe,
        train_samples: list[TrainSample],
        val_samples: list[TrainSample],
        out: Path,
        init_features: torch.nn.Sequential | None = None,
        init_state: dict[str, torch.Tensor] | None = None,
        init_name: str = "initial model",
    ) -> None:
        self.config, self.recipe, self.out = config, recipe, Path(out)
        self.train_samples, self.val_samples = train_samples, val_samples
        torch.manual_seed(recipe.seed)
        self.net = ViewRankingNet(config)
        if init_state is not None:
            # training-only heads may be added (fresh) or dropped (e.g. --no-pairwise from a pairwise model)
            load_state_checked(self.net, init_state, init_name)
        elif init_features is not None:
            from autocrop.model.network import load_backbone_weights

            load_backbone_weights(self.net, init_features)
        backbone = list(self.net.features.parameters())
        backbone_ids = {id(p) for p in backbone}
        head = [p for p in self.net.parameters() if id(p) not in backbone_ids]
        self.optimizer = torch.optim.AdamW(
            [{"params": backbone, "lr": recipe.backbone_lr}, {"params": head, "lr": recipe.head_lr}],
            weight_decay=recipe.weight_decay,
        )
        self.base_lrs = [recipe.backbone_lr, recipe.head_lr]
        human = [s.mos for s in train_samples if s.mos is not None and not s.teacher_labelled]
        mos = np.concatenate(human or [np.asarray([3.0, 4.0])])
        self.mos_mean, self.mos_std = float(mos.mean()), float(mos.std() or 1.0)
        self.smooth_l1 = L.SmoothL1ScoreLoss()
        self.rank_gain = L.RankingGainLoss()
        self.listwise = L.ListwiseTop1Loss(recipe.listwise_temperature)
        self.listwise_iou = L.ListwiseTop1Loss(FCDB_IOU_TEMPERATURE)
        self.pair_bce = L.PairwiseBCELoss()
        self.consistency = L.RankConsistencyLoss()
        self.swa_state: dict[str, torch.Tensor] | None = None
        self.swa_count = 0
        self.history: list[dict[str, Any]] = []
        self.best_score = -math.inf
        self.start_epoch = 0

    # ----------------------------------------------------------------------------- checkpoints
    @property
    def last_checkpoint(self) -> Path:
        """``out/last.safetensors``: model + optimizer state after the last finished epoch."""
        return self.out / "last.safetensors"

    def resume(self) -> bool:
        """Continue from ``out/last.safetensors`` when it exists; returns whether it did."""
        if not self.last_checkpoint.is_file():
            return False
        progress, extra = load_checkpoint(self.last_checkpoint, self.net, self.optimizer)
        self.swa_count = int(progress.get("swa_count", 0))
        self.swa_state = {k[len("swa.") :]: v for k, v in extra.items() if k.startswith("swa.")} or None
        self.start_epoch = int(progress["epoch"]) + 1
        self.history = progress["history"]
        self.best_score = float(progress["best_score"])
        self.mos_mean, self.mos_std = progress["mos_mean"], progress["mos_std"]
        return True

    # ----------------------------------------------------------------------------- one step
    def _set_train_mode(self) -> None:
        self.net.train()
        for module in self.net.features.modules():  # one image per step: keep ImageNet BN statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()

    @property
    def _pair_classifier(self) -> PairwiseRankClassifier:
        """The pair classifier head (only called when ``config.pairwise``)."""
        classifier = self.net.pair_classifier
        if classifier is None:
            raise RuntimeError("the model has no pair classifier (config.pairwise is off)")
        return classifier

    def _loss(self, sample: TrainSample, generator: torch.Generator) -> torch.Tensor:
        """The training loss (scalar) of one augmented image: GAICD (MOS) or FCDB (IoU targets + voted pairs)."""
        r, cfg = self.recipe, self.config
        pixels, boxes = sample.pixels, sample.boxes
        pair_a, pair_b = sample.pair_a, sample.pair_b
        if r.flip and torch.rand(1, generator=generator).item() < 0.5:
            width = pixels.shape[1]
            pixels = pixels[:, ::-1]
            boxes, pair_a, pair_b = flip_boxes(boxes, width), flip_boxes(pair_a, width), flip_boxes(pair_b, width)
        image = pixels_to_tensor(pixels)
        if r.scale_jitter > 0:
            image, box_scale = random_rescale(image, generator, r.scale_jitter)
            boxes, pair_a, pair_b = boxes * box_scale, pair_a * box_scale, pair_b * box_scale
        if r.jitter > 0:
            image = photometric_jitter(image, generator, r.jitter)
        image = normalize_image(image)

        if sample.mos is not None:
            count = min(r.crops_per_image, len(boxes))
            pick = torch.randperm(len(boxes), generator=generator)[:count]
            crop_boxes = torch.from_numpy(boxes)[pick]
            out = self.net(image, crop_boxes)
            z = (torch.from_numpy(sample.mos)[pick] - self.mos_mean) / self.mos_std
            if cfg.splitter:
                view_target = z - z.mean()
                loss = self.smooth_l1(out.scores, view_target) + self.smooth_l1(out.image_score, z.mean().view(1))
            else:
                view_target = z
                loss = self.smooth_l1(out.scores, view_target)
            loss = loss + r.lambda_rank_gain * self.rank_gain(out.scores, view_target)
            loss = loss + r.lambda_listwise * self.listwise(out.scores, view_target)
            if cfg.pairwise:
                i, j = L.mos_pairs(z * self.mos_std, margin=0.5, max_pairs=256, generator=generator)
                if len(i):
                    swap = torch.rand(len(i), generator=generator) < 0.5
                    a, b = torch.where(swap, j, i), torch.where(swap, i, j)
                    logits = self._pair_classifier(out.embeddings[a], out.embeddings[b])
                    loss = loss + r.lambda_pair * self.pair_bce(logits, (~swap).float())
            return loss

        # FCDB: listwise soft targets from IoU with the best crop + human-voted pairs
        iou_target = torch.from_numpy(sample.iou_target)
        if len(boxes) > r.crops_per_image:  # a random subset of the grid, always with the annotated crop (last)
            pick = torch.randperm(len(boxes) - 1, generator=generator)[: r.crops_per_image - 1]
            pick = torch.cat([pick, torch.tensor([len(boxes) - 1])])
            boxes, iou_target = boxes[pick.numpy()], iou_target[pick]
        n_cand, n_pairs = len(boxes), len(pair_a)
        all_boxes = torch.from_numpy(np.concatenate([boxes, pair_a, pair_b], axis=0))
        out = self.net(image, all_boxes)
        scores = out.scores
        loss = self.listwise_iou(scores[:n_cand], iou_target)
        if n_pairs:
            s_a, s_b = scores[n_cand : n_cand + n_pairs], scores[n_cand + n_pairs :]
            q = torch.from_numpy(sample.pair_q)
            loss = loss + self.pair_bce(s_a - s_b, q)
            if cfg.pairwise:
                e_a, e_b = out.embeddings[n_cand : n_cand + n_pairs], out.embeddings[n_cand + n_pairs :]
                loss = loss + r.lambda_pair * self.pair_bce(self._pair_classifier(e_a, e_b), q)
        if cfg.pairwise and r.lambda_consistency > 0:
            i = torch.randint(0, n_cand, (r.consistency_pairs,), generator=generator)
            j = torch.randint(0, n_cand, (r.consistency_pairs,), generator=generator)
            p = torch.sigmoid(self._pair_classifier(out.embeddings[i], out.embeddings[j]))
            loss = loss + r.lambda_consistency * self.consistency(scores[i], scores[j], p)
        return loss

    # ----------------------------------------------------------------------------- epochs
    def _epoch_order(self, epoch: int) -> list[TrainSample]:
        generator = torch.Generator().manual_seed(self.recipe.seed * 100003 + epoch)
        items: list[TrainSample] = []
        fcdb = [s for s in self.train_samples if s.mos is None or s.teacher_labelled]
        quota = self.recipe.fcdb_per_epoch
        if quota is not None and quota < len(fcdb):  # a different random subset every epoch
            fcdb = [fcdb[i] for i in torch.randperm(len(fcdb), generator=generator)[:quota].tolist()]
        for sample in self.train_samples:
            if sample.mos is not None and not sample.teacher_labelled:
                items.extend([sample] * self.recipe.gaicd_repeat)
        items.extend(fcdb)
        order = torch.randperm(len(items), generator=generator).tolist()
        return [items[i] for i in order]

    def _set_lr(self, epoch: int) -> None:
        """Cosine decay over epochs (a function of the epoch only, so resume is exact)."""
        factor = 0.5 * (1 + math.cos(math.pi * epoch / max(1, self.recipe.epochs)))
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * max(factor, 0.05)

    def train_epoch(self, epoch: int, on_step: Callable[[int, int, float], None] | None = None) -> EpochStats:
        """One epoch (0-based ``epoch``); ``on_step(step, steps, mean loss so far)`` after every image."""
        self._set_train_mode()
        self._set_lr(epoch)
        torch.manual_seed(self.recipe.seed * 7919 + epoch)  # dropout
        generator = torch.Generator().manual_seed(self.recipe.seed * 15485863 + epoch)
        order = self._epoch_order(epoch)
        start, total = time.perf_counter(), 0.0
        for step, sample in enumerate(order):
            loss = self._loss(sample, generator)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach())
            if on_step:
                on_step(step + 1, len(order), total / (step + 1))
        seconds = time.perf_counter() - start
        return EpochStats(epoch, total / max(1, len(order)), seconds, len(order) / max(seconds, 1e-9))

    def fit(self, card: dict[str, Any], on_step: Callable[[int, int, float], None] | None = None,
            on_epoch: Callable[[EpochStats], None] | None = None) -> dict[str, Any]:
        """Train the remaining epochs; returns the card of the best model (``out/best.safetensors``)."""
        self.out.mkdir(parents=True, exist_ok=True)
        best_card: dict[str, Any] = {}
        for epoch in range(self.start_epoch, self.recipe.epochs):
            stats = self.train_epoch(epoch, on_step)
            self._update_swa(epoch)
            model = self.evaluation_model()
            stats.metrics = validate(model, self.val_samples) if self.val_samples else {}
            self.history.append(asdict(stats))
            score = _selection_score(stats.metrics, self.recipe.select_metric) if stats.metrics else float(epoch)
            if score > self.best_score:
                self.best_score = score
                best_card = self._save_model(self.out / "best.safetensors", card, stats, model)
            if epoch == self.recipe.epochs - 1:  # the last epoch's model too: cross-validation reports it
                self._save_model(self.out / "final.safetensors", card, stats, model)
            progress = {
                "epoch": epoch,
                "history": self.history,
                "best_score": self.best_score,
                "mos_mean": self.mos_mean,
                "mos_std": self.mos_std,
                "swa_count": self.swa_count,
                "recipe": asdict(self.recipe),
                "config": asdict(self.config),
            }
            extra = {f"swa.{k}": v for k, v in (self.swa_state or {}).items()}
            save_checkpoint(self.last_checkpoint, self.net, self.optimizer, progress, extra)
            if on_epoch:
                on_epoch(stats)
        return best_card

    def _update_swa(self, epoch: int) -> None:
        """Running mean of the weights of epochs >= ``swa_start`` (stochastic weight averaging)."""
        start = self.recipe.swa_start
        if start is None or epoch < min(start, self.recipe.epochs - 1):
            return
        current = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        if self.swa_state is None:
            self.swa_state, self.swa_count = current, 1
            return
        self.swa_count += 1
        for key, value in current.items():
            if value.is_floating_point():
                self.swa_state[key] += (value - self.swa_state[key]) / self.swa_count
            else:
                self.swa_state[key] = value

    def evaluation_model(self) -> ViewRankingNet:
        """The network whose weights are validated and saved: the weight average once it exists."""
        if self.swa_state is None:
            return self.net
        model = ViewRankingNet(self.config)
        model.load_state_dict(self.swa_state)
        return model

    def _save_model(
        self, path: Path, card: dict[str, Any], stats: EpochStats, model: torch.nn.Module
    ) -> dict[str, Any]:
        """Write ``model`` to ``path`` with ``card`` + this run's recipe, validation, history, MOS standardisation."""
        card = dict(card)
        card.update(
            recipe=asdict(self.recipe),
            best_epoch=stats.epoch,
            validation=stats.metrics,
            history=self.history,
            mos_standardization={"mean": self.mos_mean, "std": self.mos_std},
        )
        return save_weights(path, model.state_dict(), self.config, card)
