"""Augmentation on (pixels, boxes): horizontal flip, scale jitter and photometric jitter, driven by a torch Generator.

Pixels become tensors and are ImageNet-normalised by :func:`autocrop.model.network.pixels_to_tensor` and
:func:`autocrop.model.network.normalize_image`, the functions inference uses.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror x1 y1 x2 y2 boxes [N, 4] in an image ``width`` pixels wide."""
    out = boxes.copy()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


def photometric_jitter(image: Tensor, generator: torch.Generator, strength: float = 0.2) -> Tensor:
    """Random brightness, contrast and saturation factors in [1 - strength, 1 + strength]; [1,3,h,w] 0..1."""
    b, c, s = (1.0 + strength * (2 * torch.rand(3, generator=generator) - 1)).tolist()
    image = image * b
    mean = image.mean()
    image = (image - mean) * c + mean
    gray = image.mean(dim=1, keepdim=True)
    image = (image - gray) * s + gray
    return image.clamp(0.0, 1.0)


def random_rescale(image: Tensor, generator: torch.Generator, strength: float) -> tuple[Tensor, np.ndarray]:
    """Resize [1, 3, h, w] by a random factor in [1 - strength, 1 + strength] (antialiased bilinear).

    Returns (resized image, box scale [4] float32) -- multiply x1 y1 x2 y2 boxes by the scale.
    """
    h, w = image.shape[-2:]
    factor = 1.0 + strength * (2 * torch.rand(1, generator=generator).item() - 1)
    new_h, new_w = max(32, round(h * factor)), max(32, round(w * factor))
    resized = torch.nn.functional.interpolate(
        image, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
    )
    return resized, np.asarray([new_w / w, new_h / h, new_w / w, new_h / h], np.float32)
