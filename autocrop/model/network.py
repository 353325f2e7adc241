"""The view-ranking network: MobileNetV2 -> multi-scale stride-16 feature -> per-crop scores.

Baseline is GAIC's region head (RoIAlign + RoDAlign features -> FC -> score). Switchable by
:class:`ModelConfig`: VRN's feature splitter (+ image-wise learner), the spatial-aware feature of
Wang et al. 2023, and a pairwise rank classifier on pairs of crop embeddings.

Boxes are ``x1 y1 x2 y2`` in pixels of the *network input* (the resized image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autocrop import ops
from autocrop.model.backbone import MobileNetV2
from autocrop.model.config import ModelConfig
from autocrop.model.preprocess import IMAGENET_MEAN, IMAGENET_STD

# features[:7] -> stride 8 (32 ch), [7:14] -> stride 16 (96 ch), [14:18] -> stride 32 (320 ch).
STAGE_ENDS = (7, 14, 18)
STAGE_CHANNELS = (32, 96, 320)


def pixels_to_tensor(pixels: np.ndarray) -> Tensor:
    """uint8 RGB pixels [h, w, 3] -> float32 [1, 3, h, w] with values in 0..1 (a copy; channels-last strides)."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def normalize_image(image: Tensor) -> Tensor:
    """ImageNet normalisation: RGB images [B, 3, H, W] with values in 0..1 -> (image - mean) / std per channel.

    Training's copy (inference: :func:`autocrop.model.scorer.to_input_array`, numpy, bit-identical); the
    result keeps the input's dtype, device and memory layout.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    return (image - mean) / std


def _bin_edges(size_in: int, size_out: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Adaptive pooling bins along one axis: start [out] (inclusive), end [out] (exclusive), int64."""
    index = torch.arange(size_out, device=device)
    start = torch.div(index * size_in, size_out, rounding_mode="floor")
    end = torch.div((index + 1) * size_in + size_out - 1, size_out, rounding_mode="floor")
    return start, end


def adaptive_avg_pool2d_exact(x: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.adaptive_avg_pool2d(x, size)`` bit for bit, for any (symbolic) shape with in <= 2 * out per axis.

    x [B, C, H, W] -> [B, C, oh, ow]. Adaptive bins are then 1 to 3 cells wide; the bin sum is accumulated
    over 3 x 3 shifted gathers in torch's CPU order (rows, then columns; cells past a bin's end add exactly
    0) and divided by the bin height, then width, as torch does. Unlike ``F.adaptive_avg_pool2d`` this
    traces with symbolic sizes (torch.export / ONNX), and it equals it exactly (tested).
    """
    out_h, out_w = size
    height, width = x.shape[-2], x.shape[-1]
    torch._check(height <= 2 * out_h and width <= 2 * out_w, lambda: "adaptive_avg_pool2d_exact: in > 2 * out")
    start_h, end_h = _bin_edges(height, out_h, x.device)
    start_w, end_w = _bin_edges(width, out_w, x.device)
    total: Tensor | None = None
    for dh in range(3):
        rows = x.index_select(2, (start_h + dh).clamp(max=height - 1))
        row_live = (start_h + dh < end_h).to(x.dtype).view(-1, 1)
        for dw in range(3):
            live = row_live * (start_w + dw < end_w).to(x.dtype).view(1, -1)  # [oh, ow] of 0 / 1
            term = rows.index_select(3, (start_w + dw).clamp(max=width - 1)) * live
            total = term if total is None else total + term
    assert total is not None
    return total / (end_h - start_h).to(x.dtype).view(-1, 1) / (end_w - start_w).to(x.dtype).view(1, -1)


@dataclass
class NetOutput:
    """scores [N]: view score (higher is better). embeddings [N, E]: crop features before the last layer.
    image_score [B] or None: image-wise learner output (training only, VRN)."""

    scores: Tensor
    embeddings: Tensor
    image_score: Tensor | None


class FeatureSplitter(nn.Module):
    """VRN: SE-style channel weights w (view-wise) and 1 - w (image-wise) from the pooled feature."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """[B, C, H, W] -> (view-wise feature, image-wise feature), both [B, C, H, W]."""
        w = torch.sigmoid(self.fc(feat.mean(dim=(2, 3))))[:, :, None, None]
        return feat * w, feat * (1.0 - w)


class SpatialAwareFeature(nn.Module):
    """Wang et al. 2023: channel-max of every backbone layer, resized to S x S, channel attention,
    concatenated with the crop mask, then conv5x5+pool twice and an FC layer -> [N, spatial_dim].

    The first conv is linear in its input, so it is split into the shared maps part (computed once per
    image) and the per-crop mask part: conv(cat(A, M)) = conv_A(A) + conv_M(M). Same result, N x cheaper.
    """

    def __init__(self, num_maps: int, size: int, dim: int, hidden: int = 16) -> None:
        super().__init__()
        self.size = size
        self.attention = nn.Sequential(
            nn.Linear(num_maps, num_maps), nn.ReLU(inplace=True), nn.Linear(num_maps, num_maps)
        )
        self.conv1_maps = nn.Conv2d(num_maps, hidden, 5, padding=2)
        self.conv1_mask = nn.Conv2d(1, hidden, 5, padding=2, bias=False)
        self.conv2 = nn.Conv2d(hidden, hidden, 5, padding=2)
        self.fc = nn.Linear(hidden * (size // 4) ** 2, dim)

    def forward(
        self, layer_maps: list[Tensor], boxes: Tensor, batch_index: Tensor, image_hw: tuple[int, int]
    ) -> Tensor:
        """layer_maps: per-layer features [B, C_l, H_l, W_l]; boxes [N, 4] input pixels -> [N, dim]."""
        s = self.size
        maps = torch.cat(
            [
                F.interpolate(m.amax(dim=1, keepdim=True), size=(s, s), mode="bilinear", align_corners=False)
                for m in layer_maps
            ],
            dim=1,
        )  # [B, L, s, s]
        weights = torch.sigmoid(self.attention(maps.mean(dim=(2, 3))))[:, :, None, None]
        shared = self.conv1_maps(maps * weights)  # [B, hidden, s, s]
        mask = crop_masks(boxes, image_hw, s).unsqueeze(1)  # [N, 1, s, s]
        x = F.relu(shared[batch_index] + self.conv1_mask(mask))
        x = F.max_pool2d(x, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))


def crop_masks(boxes: Tensor, image_hw: tuple[int, int], size: int) -> Tensor:
    """Soft binary masks [N, size, size]: the fraction of each mask cell covered by the crop box."""
    height, width = image_hw
    edges = torch.arange(size, dtype=boxes.dtype, device=boxes.device)
    cell_x0, cell_y0 = edges * (width / size), edges * (height / size)
    cw, ch = width / size, height / size
    cover_x = ((torch.minimum(cell_x0 + cw, boxes[:, 2:3]) - torch.maximum(cell_x0, boxes[:, 0:1])).clamp(min=0) / cw)
    cover_y = ((torch.minimum(cell_y0 + ch, boxes[:, 3:4]) - torch.maximum(cell_y0, boxes[:, 1:2])).clamp(min=0) / ch)
    return cover_y.unsqueeze(2) * cover_x.unsqueeze(1)


class PairwiseRankClassifier(nn.Module):
    """Wang et al. 2023: probability (as a logit) that crop i is better than crop j from [e_i, e_j]."""

    def __init__(self, embed_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * embed_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, emb_i: Tensor, emb_j: Tensor) -> Tensor:
        """[P, E], [P, E] -> logits [P] (antisymmetrised so that p(i>j) = 1 - p(j>i))."""
        forward = self.mlp(torch.cat([emb_i, emb_j], dim=1)).squeeze(1)
        backward = self.mlp(torch.cat([emb_j, emb_i], dim=1)).squeeze(1)
        return 0.5 * (forward - backward)


class ViewRankingNet(nn.Module):
    """Scores crops of one or more images in one forward pass."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        features = MobileNetV2().features[: STAGE_ENDS[-1]]  # features.18 (1280 ch) is not used
        assert isinstance(features, nn.Sequential)
        self.features: nn.Sequential = features
        agg_ch = sum(STAGE_CHANNELS)
        self.splitter = FeatureSplitter(agg_ch) if config.splitter else None
        if config.splitter:
            self.image_learner = nn.Sequential(
                nn.Linear(agg_ch, config.embed_dim), nn.ReLU(inplace=True), nn.Linear(config.embed_dim, 1)
            )
        # linear reduction: a ReLU here can die and collapse every crop to one score (seen with smooth-L1 alone)
        self.reduce = nn.Conv2d(agg_ch, config.reduced_dim, 1)
        a = config.align_size
        self.region_fc = nn.Sequential(
            nn.Linear(2 * config.reduced_dim * a * a, config.fc_dim),
            nn.ReLU(inplace=True),
            nn.Linear(config.fc_dim, config.embed_dim),
            nn.ReLU(inplace=True),
        )
        embed = config.embed_dim
        if config.spatial:
            self.spatial = SpatialAwareFeature(STAGE_ENDS[-1], config.spatial_size, config.spatial_dim)
            embed += config.spatial_dim
        self.dropout = nn.Dropout(config.dropout)
        self.score_head = nn.Linear(embed, 1)
        self.pair_classifier = PairwiseRankClassifier(embed) if config.pairwise else None

    def backbone(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """[B, 3, H, W] normalised -> (aggregated stride-16 feature [B, 448, h, w], every layer's output)."""
        layer_maps: list[Tensor] = []
        x = images
        for layer in self.features:
            x = layer(x)
            layer_maps.append(x)
        f8, f16, f32 = (layer_maps[end - 1] for end in STAGE_ENDS)
        size = (f16.shape[-2], f16.shape[-1])
        f8 = adaptive_avg_pool2d_exact(f8, size)  # stride 8 -> 16: bins of 2 (or 3 next to an odd edge)
        f32 = F.interpolate(f32, size=size, mode="bilinear", align_corners=False)
        return torch.cat([f8, f16, f32], dim=1), layer_maps

    def forward(self, images: Tensor, boxes: Tensor, batch_index: Tensor | None = None) -> NetOutput:
        """images [B,3,H,W] (ImageNet-normalised), boxes [N,4] input pixels, batch_index [N] (default 0)."""
        if batch_index is None:
            batch_index = torch.zeros(boxes.shape[0], dtype=torch.long, device=boxes.device)
        aggregated, layer_maps = self.backbone(images)
        image_score = None
        if self.splitter is not None:
            view_feat, image_feat = self.splitter(aggregated)
            if self.training:
                image_score = self.image_learner(image_feat.mean(dim=(2, 3))).squeeze(1)
        else:
            view_feat = aggregated
        reduced = self.reduce(view_feat)
        # GAIC's RoI coordinates use the actual feature/input ratio (stride 16 up to rounding).
        scale = reduced.shape[-1] / images.shape[-1]
        rois = torch.cat([batch_index.to(boxes.dtype).unsqueeze(1), boxes], dim=1)
        size = (self.config.align_size, self.config.align_size)
        roi = ops.roi_align(reduced, rois, size, scale, self.config.sampling_ratio)
        rod = ops.rod_align(reduced, rois, size, scale, self.config.sampling_ratio)
        emb = self.region_fc(torch.cat([roi, rod], dim=1).flatten(1))
        if self.config.spatial:
            spatial = self.spatial(layer_maps, boxes, batch_index, tuple(images.shape[-2:]))
            emb = torch.cat([emb, spatial], dim=1)
        scores = self.score_head(self.dropout(emb)).squeeze(1)
        return NetOutput(scores=scores, embeddings=emb, image_score=image_score)

    def predict(self, image: Tensor, boxes: Tensor, flip_tta: bool | None = None) -> Tensor:
        """Inference scores [N] of boxes [N, 4] (input pixels) on one image [1, 3, H, W].

        With flip averaging (``flip_tta``, default ``config.flip_tta``) the mirror image is scored too
        (mirrored boxes, same forward pass, batch of two) and the two scores of each crop are averaged.
        """
        if not (self.config.flip_tta if flip_tta is None else flip_tta):
            return self(image, boxes).scores
        n, width = boxes.shape[0], image.shape[-1]
        mirrored = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        batch_index = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)]).to(boxes.device)
        scores = self(torch.cat([image, image.flip(-1)]), torch.cat([boxes, mirrored]), batch_index).scores
        return 0.5 * (scores[:n] + scores[n:])


def load_backbone_weights(net: ViewRankingNet, features: nn.Sequential) -> None:
    """Copy ImageNet weights of ``features[:18]`` into ``net.features`` (all keys must match)."""
    source = {k: v for k, v in features.state_dict().items() if int(k.split(".")[0]) < STAGE_ENDS[-1]}
    net.features.load_state_dict(source, strict=True)
