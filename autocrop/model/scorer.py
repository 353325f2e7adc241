"""``ViewScorer``: the inference wrapper every command uses to score crops of one image, and :func:`load_scorer`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from autocrop.model.network import ViewRankingNet


def input_size(width: int, height: int, config: ModelConfig) -> tuple[int, int]:
    """Network input (width, height) in pixels: short side = ``input_short_side``, long side capped."""
    scale = config.input_short_side / min(width, height)
    scale = min(scale, config.max_long_side / max(width, height))
    return max(32, round(width * scale)), max(32, round(height * scale))


def to_input_tensor(image: Image.Image, config: ModelConfig) -> tuple[torch.Tensor, float, float]:
    """Resize + normalise a PIL RGB image -> ([1, 3, h, w] float32 contiguous, scale_x, scale_y).

    Scales are input pixels per image pixel.
    """
    from autocrop.model.network import normalize_image, pixels_to_tensor

    pixels, sx, sy = resize_for_model(image, config)
    return normalize_image(pixels_to_tensor(pixels)).contiguous(), sx, sy


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


class ViewScorer:
    """A loaded ranking model. ``score(image, boxes)`` -> one float per box, higher is better.

    net: the network (put in eval mode, moved to ``device``, BatchNorm folded into its convolutions).
    card: the model card (dict). weights_path: the file it was loaded from (None for built models).
    device: a torch device text (``cpu``, ``cuda``, ``cuda:1``, ``mps``), already checked.
    """

    def __init__(
        self, net: ViewRankingNet, card: dict[str, Any], weights_path: Path | None = None, device: str = "cpu"
    ) -> None:
        from autocrop.model.fuse import fold_batchnorm

        self.net = net.eval().to(device)
        fold_batchnorm(self.net.features)  # inference only: BatchNorm folded into the convolutions
        self.card = card
        self.weights_path = weights_path
        self.device = device

    @property
    def config(self) -> ModelConfig:
        """The model's configuration (from its weights file)."""
        return self.net.config

    @property
    def input_short_side(self) -> int:
        """Short side (pixels) of the network input; photos are decoded to at least this."""
        return self.config.input_short_side

    @classmethod
    def untrained(cls, seed: int = 0, config: ModelConfig | None = None) -> ViewScorer:
        """Randomly initialised model (for tests only: its scores mean nothing)."""
        import torch

        from autocrop.model.network import ViewRankingNet

        torch.manual_seed(seed)
        net = ViewRankingNet(config or ModelConfig())
        return cls(net, {"name": "untrained", "training_images": []})

    def score(self, image: Image.Image, boxes: np.ndarray | list[Any]) -> np.ndarray:
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


def load_scorer(model: str | Path | None = None, device: str = "cpu") -> ViewScorer:
    """Load a model file (``None`` or ``""``: the packaged default) with its card, on ``device``; no network access.

    device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`autocrop.model.resolve.resolve_device`).
    Raises :class:`ModelError` (one line) when the file is missing, damaged, or does not match its card,
    and :class:`~autocrop.errors.UsageError` (one line) for a device this torch or machine cannot use.
    """
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.resolve import resolve_device, resolve_weights
    from autocrop.model.weights import load_state_checked, load_weights

    weights = resolve_weights(model)
    target = resolve_device(device)
    tensors, config, card = load_weights(weights)
    net = ViewRankingNet(config)
    load_state_checked(net, tensors, weights)
    try:
        return ViewScorer(net, card, weights_path=weights, device=target)
    except RuntimeError as err:  # e.g. the GPU is out of memory or busy
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{weights}: cannot put the model on {target} ({detail})") from None
