"""The set-prediction crop network (Jia et al., CVPR 2022): N crops regressed from learnable anchors.

MobileNetV2 -> the 448-channel stride-16 map of the grid model (stride 8 pooled, 16, stride 32 upsampled)
= the *memory*; a 1x1 projection to ``d_model`` + sine positions; a small conditional-DETR decoder whose
N queries each carry a learnable reference box, refined layer by layer; per query a box and a validity
logit. Everything is shape-generic (no Python branching on image sizes), so ONNX export with dynamic
H / W works.

Boxes are ``x1 y1 x2 y2`` *normalised* to the network input (0..1 of its width / height). A box is
parametrised by four logits (px, py, lw, lh): side w = min_size + (1 - min_size) * sigmoid(lw),
left x1 = sigmoid(px) * (1 - w), x2 = x1 + w (same for y). So every box lies inside the photo,
x1 < x2 and y1 < y2 always, and each side is at least ``min_size``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autocrop.model.backbone import MobileNetV2
from autocrop.model.network import STAGE_ENDS, adaptive_avg_pool2d_exact
from autocrop.model.set_config import MEMORY_CHANNELS, SetModelConfig


def sine_embed(coords: Tensor, dim_per_coord: int, temperature: float = 10000.0) -> Tensor:
    """Sine/cosine encoding of coordinates in 0..1: [..., K] -> [..., K * dim_per_coord] (dim_per_coord even)."""
    half = dim_per_coord // 2
    freq = temperature ** (torch.arange(half, dtype=coords.dtype, device=coords.device) / half)
    angles = coords.unsqueeze(-1) * (2 * math.pi) / freq  # [..., K, half]
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def memory_positions(memory: Tensor, dim: int) -> Tensor:
    """Sine positions [h*w, dim] of the cells of ``memory`` [B, C, h, w] (cell centres, normalised 0..1)."""
    h, w = memory.shape[-2], memory.shape[-1]
    ys = (torch.arange(h, dtype=memory.dtype, device=memory.device) + 0.5) / h
    xs = (torch.arange(w, dtype=memory.dtype, device=memory.device) + 0.5) / w
    grid = torch.stack([xs.view(1, -1).expand(h, w), ys.view(-1, 1).expand(h, w)], dim=-1).reshape(-1, 2)
    return sine_embed(grid, dim // 2)


def params_to_boxes(params: Tensor, min_size: float) -> Tensor:
    """Box logits [..., 4] (px, py, lw, lh) -> boxes [..., 4] normalised x1 y1 x2 y2 inside 0..1 (module doc)."""
    size = min_size + (1.0 - min_size) * torch.sigmoid(params[..., 2:])
    start = torch.sigmoid(params[..., :2]) * (1.0 - size)
    return torch.cat([start, (start + size).clamp(max=1.0)], dim=-1)


def boxes_to_params(boxes: Tensor, min_size: float, eps: float = 1e-4) -> Tensor:
    """Inverse of :func:`params_to_boxes` (up to clamping): boxes [..., 4] normalised x1 y1 x2 y2 -> logits [..., 4]."""
    size = (boxes[..., 2:] - boxes[..., :2]).clamp(min_size + eps, 1.0 - eps)
    frac_size = ((size - min_size) / (1.0 - min_size)).clamp(eps, 1 - eps)
    frac_start = (boxes[..., :2] / (1.0 - size).clamp(min=eps)).clamp(eps, 1 - eps)
    return torch.cat([torch.logit(frac_start), torch.logit(frac_size)], dim=-1)


def centre_size(boxes: Tensor) -> Tensor:
    """Boxes [..., 4] x1 y1 x2 y2 -> [..., 4] cx cy w h (same units)."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], dim=-1)


def default_anchors(queries: int) -> Tensor:
    """A deterministic spread of reference boxes [queries, 4] (normalised x1 y1 x2 y2): sizes 0.5..0.95,
    centres on a jittered lattice around the middle (training replaces them with k-means of real crops)."""
    k = torch.arange(queries, dtype=torch.float32)
    golden = (k * 0.6180339887) % 1.0
    size_w = 0.5 + 0.45 * ((k * 0.37 + 0.5) % 1.0)
    size_h = 0.5 + 0.45 * ((k * 0.71 + 0.25) % 1.0)
    cx = 0.5 + (golden - 0.5) * (1.0 - size_w)
    cy = 0.5 + (((k * 0.4142) % 1.0) - 0.5) * (1.0 - size_h)
    return torch.stack([cx - size_w / 2, cy - size_h / 2, cx + size_w / 2, cy + size_h / 2], dim=1)


def box_vote(boxes: Tensor, logits: Tensor, min_iou: float) -> Tensor:
    """Box voting: boxes [B, N, 4] (normalised x1 y1 x2 y2) -> [B, N, 4], each the validity^2-weighted mean of the
    boxes overlapping it by IoU >= ``min_iou`` (itself included, so a lone box stays). Convex combinations of
    valid boxes, so x1 < x2, y1 < y2 and 0..1 still hold. Pure tensor ops (exports to ONNX)."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    low = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    high = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (high - low).clamp(min=0).prod(dim=-1)
    iou = inter / (area[:, :, None] + area[:, None, :] - inter)
    eye = torch.eye(boxes.shape[1], dtype=boxes.dtype, device=boxes.device)
    weight = ((iou >= min_iou).to(boxes.dtype) + eye).clamp(max=1.0) * torch.sigmoid(logits)[:, None, :] ** 2
    return torch.bmm(weight, boxes) / weight.sum(dim=-1, keepdim=True)


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers of ``dims`` with ReLU between them."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SetDecoderLayer(nn.Module):
    """Self-attention among queries, conditional cross-attention to the memory, feed-forward (post-norm).

    The cross-attention query is content + (a content-dependent scale) * (the reference box's position
    embedding), as in conditional DETR, so each query looks around its own box.
    """

    def __init__(self, config: SetModelConfig) -> None:
        super().__init__()
        d, p = config.d_model, config.dropout
        self.self_attn = nn.MultiheadAttention(d, config.heads, dropout=p, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, config.heads, dropout=p, batch_first=True)
        self.pos_scale = mlp([d, d, d])
        self.ffn = mlp([d, config.ffn_dim, d])
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout = nn.Dropout(p)

    def forward(self, tgt: Tensor, query_pos: Tensor, memory: Tensor, memory_pos: Tensor) -> Tensor:
        """tgt, query_pos [B, N, d]; memory [B, L, d], memory_pos [1, L, d] -> tgt [B, N, d]."""
        q = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout(self.self_attn(q, q, tgt, need_weights=False)[0]))
        q = tgt + query_pos * self.pos_scale(tgt)
        attended = self.cross_attn(q, memory + memory_pos, memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout(attended))
        return self.norm3(tgt + self.dropout(self.ffn(tgt)))


class SetHead(nn.Module):
    """Memory [B, 448, h, w] -> per decoder layer (boxes [B, N, 4] normalised x1 y1 x2 y2, logits [B, N])."""

    def __init__(self, config: SetModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.input_proj = nn.Sequential(nn.Conv2d(MEMORY_CHANNELS, d, 1), nn.GroupNorm(8, d))
        self.content = nn.Parameter(torch.randn(config.queries, d) * 0.1)
        self.anchors = nn.Parameter(boxes_to_params(default_anchors(config.queries), config.min_size))
        self.ref_embed = mlp([d, d, d])
        self.layers = nn.ModuleList([SetDecoderLayer(config) for _ in range(config.layers)])
        self.box_deltas = nn.ModuleList([mlp([d, d, 4]) for _ in range(config.layers)])
        for delta in self.box_deltas:  # start at the reference boxes
            assert isinstance(delta, nn.Sequential)
            last = delta[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.validity = nn.Linear(d, 1)
        nn.init.constant_(self.validity.bias, -2.0)  # most queries are invalid at first

    def forward(self, memory: Tensor, all_layers: bool = False) -> list[tuple[Tensor, Tensor]]:
        """memory [B, 448, h, w] -> [(boxes [B, N, 4], logits [B, N])] for the last layer (or every layer)."""
        d = self.config.d_model
        projected = self.input_proj(memory)
        memory_pos = memory_positions(projected, d).unsqueeze(0)  # [1, L, d]
        tokens = projected.flatten(2).transpose(1, 2)  # [B, L, d]
        batch = tokens.shape[0]
        tgt = self.content.unsqueeze(0).expand(batch, -1, -1)
        params = self.anchors.unsqueeze(0).expand(batch, -1, -1)
        outputs: list[tuple[Tensor, Tensor]] = []
        for index, (layer, delta) in enumerate(zip(self.layers, self.box_deltas)):
            boxes = params_to_boxes(params, self.config.min_size)
            query_pos = self.ref_embed(sine_embed(centre_size(boxes), d // 4))
            tgt = layer(tgt, query_pos, tokens, memory_pos)
            params = params.detach() + delta(tgt) if index else params + delta(tgt)
            if all_layers or index == len(self.layers) - 1:
                boxes = params_to_boxes(params, self.config.min_size)
                outputs.append((boxes, self.validity(tgt).squeeze(-1)))
        return outputs


class SetCropNet(nn.Module):
    """MobileNetV2 features (the grid model's, frozen in training) + :class:`SetHead`."""

    def __init__(self, config: SetModelConfig) -> None:
        super().__init__()
        self.config = config
        features = MobileNetV2().features[: STAGE_ENDS[-1]]  # same keys as ViewRankingNet.features
        assert isinstance(features, nn.Sequential)
        self.features: nn.Sequential = features
        self.head = SetHead(config)

    def memory(self, images: Tensor) -> Tensor:
        """images [B, 3, H, W] ImageNet-normalised -> memory [B, 448, ~H/16, ~W/16] (the cached features).

        The same aggregation as :meth:`autocrop.model.network.ViewRankingNet.backbone`: stride 8 average-
        pooled and stride 32 bilinearly upsampled to the stride-16 map, concatenated.
        """
        stages: list[Tensor] = []
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index + 1 in STAGE_ENDS:
                stages.append(x)
        f8, f16, f32 = stages
        size = (f16.shape[-2], f16.shape[-1])
        f8 = adaptive_avg_pool2d_exact(f8, size)
        f32 = F.interpolate(f32, size=size, mode="bilinear", align_corners=False)
        return torch.cat([f8, f16, f32], dim=1)

    def decode(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """memory [B, 448, h, w] -> (boxes [B, N, 4] normalised x1 y1 x2 y2, x1 < x2, y1 < y2; logits [B, N]).

        The boxes are the last decoder layer's after box voting (:func:`box_vote`, ``config.vote_iou``).
        """
        boxes, logits = self.head(memory)[-1]
        if self.config.vote_iou < 1.0:  # a config constant, not a size: export-safe
            boxes = box_vote(boxes, logits, self.config.vote_iou)
        return boxes, logits

    def decode_layers(self, memory: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Every decoder layer's raw (boxes [B, N, 4], logits [B, N]), without voting (training)."""
        return self.head(memory, all_layers=True)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images [B, 3, H, W] ImageNet-normalised, any H, W -> (boxes [B, N, 4] normalised, logits [B, N])."""
        return self.decode(self.memory(images))
