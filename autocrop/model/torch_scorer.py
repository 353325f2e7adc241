"""``ViewScorer``: the torch runtime of the ranking model (training, reference, GPU)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig
from autocrop.model.preprocess import to_input_array

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.model.network import ViewRankingNet


class ViewScorer:
    """A loaded ranking model. ``score(image, boxes)`` -> one float per box, higher is better.

    net: the network (put in eval mode, moved to ``device``, BatchNorm folded into its convolutions).
    card: the model card (dict). weights_path: the file it was loaded from (None for built models).
    device: a torch device text (``cpu``, ``cuda``, ``cuda:1``, ``mps``), already checked.
    runtime_note: None, or why this torch scorer stands in for ONNX Runtime (set by :func:`load_scorer`).
    """

    runtime = "torch"

    def __init__(
        self, net: ViewRankingNet, card: dict[str, Any], weights_path: Path | None = None, device: str = "cpu"
    ) -> None:
        from autocrop.model.fuse import fold_batchnorm

        self.net = net.eval().to(device)
        fold_batchnorm(self.net.features)  # inference only: BatchNorm folded into the convolutions
        self.card = card
        self.weights_path = weights_path
        self.device = device
        self.runtime_note: str | None = None

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
        array, sx, sy = to_input_array(image, self.config)
        scaled = boxes * np.asarray([sx, sy, sx, sy], np.float32)
        with torch.inference_mode():
            image_tensor = torch.from_numpy(array).to(self.device)
            scores = self.net.predict(image_tensor, torch.from_numpy(scaled).to(self.device))
        return scores.float().cpu().numpy()


def load_torch_scorer(weights: Path, device: str) -> ViewScorer:
    """The torch scorer of ``weights`` on ``device`` (checked by :func:`~autocrop.model.resolve.resolve_device`)."""
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.resolve import resolve_device
    from autocrop.model.weights import load_state_checked, load_weights

    target = resolve_device(device)
    tensors, config, card = load_weights(weights)
    net = ViewRankingNet(config)
    load_state_checked(net, tensors, weights)
    try:
        return ViewScorer(net, card, weights_path=weights, device=target)
    except RuntimeError as err:  # e.g. the GPU is out of memory or busy
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{weights}: cannot put the model on {target} ({detail})") from None
