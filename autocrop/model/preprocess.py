"""The one preprocessing of photos for the network (both runtimes and training): resize, ImageNet normalisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from autocrop.model.config import ModelConfig

if TYPE_CHECKING:
    import torch
    from PIL import Image

# ImageNet statistics of the input normalisation (autocrop.model.network, training's copy, imports them from here).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_size(width: int, height: int, config: ModelConfig) -> tuple[int, int]:
    """Network input (width, height) in pixels: short side = ``input_short_side``, long side capped."""
    scale = config.input_short_side / min(width, height)
    scale = min(scale, config.max_long_side / max(width, height))
    return max(32, round(width * scale)), max(32, round(height * scale))


def to_input_array(image: Image.Image, config: ModelConfig) -> tuple[np.ndarray, float, float]:
    """Resize + ImageNet-normalise a PIL image -> (float32 [1, 3, h, w] C-contiguous, scale_x, scale_y).

    Scales are input pixels per image pixel. numpy only (no torch); bit-identical to
    ``normalize_image(pixels_to_tensor(pixels))`` of :mod:`autocrop.model.network` (tested), the training path.
    """
    pixels, sx, sy = resize_for_model(image, config)
    planes = pixels.transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((planes - mean) / std), sx, sy


def to_input_tensor(image: Image.Image, config: ModelConfig) -> tuple[torch.Tensor, float, float]:
    """:func:`to_input_array` as a torch tensor ([1, 3, h, w] float32 contiguous, scale_x, scale_y)."""
    import torch

    array, sx, sy = to_input_array(image, config)
    return torch.from_numpy(array), sx, sy


def resize_for_model(image: Image.Image, config: ModelConfig) -> tuple[np.ndarray, float, float]:
    """A PIL image resized to the network input -> (uint8 [h, w, 3], scale_x, scale_y) (input px per image px).

    The one resize used by inference and training alike, so a model sees the same pixels in both.
    """
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = input_size(image.width, image.height, config)
    resized = image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8), w / image.width, h / image.height
