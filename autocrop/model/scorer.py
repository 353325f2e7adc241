"""``ViewScorer``: the inference wrapper every command uses to score crops of one image."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig
from autocrop.model.weights import PACKAGED_WEIGHTS, TRAINING_ONLY_PREFIXES, load_weights

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from autocrop.model.network import ViewRankingNet


def input_size(width: int, height: int, config: ModelConfig) -> tuple[int, int]:
    """Network input (width, height) in pixels: short side = ``input_short_side``, long side capped."""
    scale = config.input_short_side / min(width, height)
    scale = min(scale, config.max_long_side / max(width, height))
    return max(32, round(width * scale)), max(32, round(height * scale))


def to_input_tensor(image: "Image.Image", config: ModelConfig) -> tuple["torch.Tensor", float, float]:
    """Resize + normalise a PIL RGB image -> ([1, 3, h, w] float32, scale_x, scale_y) (input px per image px)."""
    import torch
    from PIL import Image

    from autocrop.model.network import IMAGENET_MEAN, IMAGENET_STD

    pixels, sx, sy = resize_for_model(image, config)
    array = pixels.astype(np.float32) / 255.0
    array = (array - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    tensor = torch.from_numpy(array.transpose(2, 0, 1).copy()).unsqueeze(0)
    return tensor, sx, sy


def resize_for_model(image: "Image.Image", config: ModelConfig) -> tuple[np.ndarray, float, float]:
    """A PIL image resized to the network input -> (uint8 [h, w, 3], scale_x, scale_y) (input px per image px).

    The one resize used by inference and training alike, so a model sees the same pixels in both.
    """
    from PIL import Image

    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = input_size(image.width, image.height, config)
    resized = image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8), w / image.width, h / image.height


class ViewScorer:
    """A loaded ranking model. ``score(image, boxes)`` -> one float per box, higher is better."""

    def __init__(
        self, net: "ViewRankingNet", card: dict, weights_path: Path | None = None, device: str = "cpu"
    ) -> None:
        from autocrop.model.fuse import fold_batchnorm

        self.net = net.eval().to(device)
        fold_batchnorm(self.net.features)  # inference only: BatchNorm folded into the convolutions
        self.card = card
        self.weights_path = weights_path
        self.device = device

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def input_short_side(self) -> int:
        return self.config.input_short_side

    @classmethod
    def untrained(cls, seed: int = 0, config: ModelConfig | None = None) -> "ViewScorer":
        """Randomly initialised model (for tests only: its scores mean nothing)."""
        import torch

        from autocrop.model.network import ViewRankingNet

        torch.manual_seed(seed)
        net = ViewRankingNet(config or ModelConfig())
        return cls(net, {"name": "untrained", "training_images": []})

    def score(self, image: "Image.Image", boxes: np.ndarray | list) -> np.ndarray:
        """Scores float32 [N] for ``boxes`` [N, 4] (``x1 y1 x2 y2`` pixels of ``image``), one forward pass."""
        import torch

        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros(0, np.float32)
        tensor, sx, sy = to_input_tensor(image, self.config)
        scaled = boxes * np.asarray([sx, sy, sx, sy], np.float32)
        with torch.inference_mode():
            scores = self.net.predict(tensor.to(self.device), torch.from_numpy(scaled).to(self.device))
        return scores.float().cpu().numpy()


def load_scorer(path: str | Path | None = None, device: str = "cpu") -> ViewScorer:
    """Load a model file (``None``: the packaged default) with its card; no network access.

    Raises :class:`ModelError` (one line) when the file is missing, damaged, or does not match its card.
    """
    from autocrop.model.network import ViewRankingNet

    weights = Path(path).expanduser() if path is not None else PACKAGED_WEIGHTS
    if path is None and not weights.is_file():
        raise ModelError(f"{weights}: the packaged default model is missing (reinstall autocrop-views or pass --model)")
    tensors, config, card = load_weights(weights)
    net = ViewRankingNet(config)
    result = net.load_state_dict(tensors, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(TRAINING_ONLY_PREFIXES) and not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"{weights}: weights do not match the model config (missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})"
        )
    return ViewScorer(net, card, weights_path=weights, device=device)
