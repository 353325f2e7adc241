"""``SetScorer``: the torch runtime of the set-prediction model, and :func:`load_set_scorer`.

One forward pass proposes N crops with a validity each (:meth:`SetScorer.propose`). Caller-given crops
are scored by the rule of Jia et al. for dense benchmarks: score(box) = max over predictions j of
validity_j * IoU(box, pred_j) (:meth:`SetScorer.score`). :func:`diverse` picks the top-k predictions
that overlap each other by at most ``max_iou`` (greedy, in validity order).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import ModelError
from autocrop.geometry import box_iou
from autocrop.model.preprocess import to_input_array
from autocrop.model.set_config import ARCH_SET, SetModelConfig

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.model.set_net import SetCropNet


def validity_scores(boxes: np.ndarray, predicted: np.ndarray, validity: np.ndarray) -> np.ndarray:
    """Scores float64 [M] of ``boxes`` [M, 4]: max over predictions j of validity_j x IoU(box, predicted_j).

    predicted [N, 4] in the same pixels as ``boxes``, validity [N] in 0..1; 0 when either is empty.
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0 or len(predicted) == 0:
        return np.zeros(len(boxes), dtype=np.float64)
    return (box_iou(boxes, predicted) * np.asarray(validity, np.float64).reshape(1, -1)).max(axis=1)


def diverse(boxes: np.ndarray, validity: np.ndarray, k: int, max_iou: float = 0.7) -> np.ndarray:
    """Indices int64 [<= k] of the best ``k`` boxes, in validity order, none overlapping a better one by more
    than ``max_iou`` (greedy non-maximum suppression). boxes [N, 4] x1 y1 x2 y2 (any unit), validity [N]."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(validity, dtype=np.float64).reshape(-1), kind="stable")
    chosen: list[int] = []
    for index in order:
        if len(chosen) >= k:
            break
        if not chosen or box_iou(boxes[index], boxes[chosen]).max() <= max_iou:
            chosen.append(int(index))
    return np.asarray(chosen, dtype=np.int64)


class SetScorer:
    """A loaded set model. ``propose(image)`` -> (boxes, validity); ``score(image, boxes)`` -> one float per box.

    net: the network (eval mode, on ``device``, BatchNorm folded into the backbone's convolutions).
    card: the model card (dict). weights_path: the file it was loaded from (None for built models).
    runtime_note: None, or why this torch scorer stands in for ONNX Runtime (set by the loader that chose it).
    """

    runtime = "torch"
    arch = "set"

    def __init__(self, net: SetCropNet, card: dict[str, Any], weights_path: Path | None = None,
                 device: str = "cpu") -> None:
        from autocrop.model.fuse import fold_batchnorm

        self.net = net.eval().to(device)
        fold_batchnorm(self.net.features)
        self.card = card
        self.weights_path = weights_path
        self.device = device
        self.runtime_note: str | None = None

    @property
    def config(self) -> SetModelConfig:
        """The model's configuration (from its weights file)."""
        return self.net.config

    @property
    def input_short_side(self) -> int:
        """Short side (pixels) of the network input; photos are decoded to at least this."""
        return self.config.input_short_side

    @classmethod
    def untrained(cls, seed: int = 0, config: SetModelConfig | None = None) -> SetScorer:
        """Randomly initialised model, deterministic for a seed (for tests only: its crops mean nothing)."""
        import torch

        from autocrop.model.set_net import SetCropNet

        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            net = SetCropNet(config or SetModelConfig())
        finally:
            torch.random.set_rng_state(generator_state)  # the caller's random stream is left as it was
        return cls(net, {"name": "untrained", "arch": ARCH_SET, "training_images": []})

    def propose(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """The model's crops of ``image``, best first: boxes float32 [N, 4] x1 y1 x2 y2 in pixels of ``image``,
        validity float32 [N] in 0..1 (sigmoid of the logits), sorted by validity (descending, stable)."""
        import torch

        array, _, _ = to_input_array(image, self.config.preprocess_config())
        with torch.inference_mode():
            boxes, logits = self.net(torch.from_numpy(array).to(self.device))
        validity = torch.sigmoid(logits[0]).float().cpu().numpy()
        scale = np.asarray([image.width, image.height, image.width, image.height], np.float32)
        pixels = boxes[0].float().cpu().numpy() * scale  # normalised -> pixels of `image`
        order = np.argsort(-validity, kind="stable")
        return pixels[order].astype(np.float32), validity[order].astype(np.float32)

    def score(self, image: Image.Image, boxes: np.ndarray | list[Any]) -> np.ndarray:
        """Scores float32 [M] of ``boxes`` [M, 4] (x1 y1 x2 y2 pixels of ``image``).

        score = max over predictions j of validity_j * IoU(box, pred_j), one forward pass.
        """
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros(0, np.float32)
        return validity_scores(boxes, *self.propose(image)).astype(np.float32)


def load_set_scorer(path: Path, device: str = "cpu") -> SetScorer:
    """The set model of ``path`` on ``device``: card + sha256 checked, strict load; one-line :class:`ModelError`."""
    from autocrop.model.resolve import resolve_device
    from autocrop.model.set_net import SetCropNet
    from autocrop.model.set_weights import load_set_weights

    path = Path(path)
    target = resolve_device(device)
    tensors, config, card = load_set_weights(path)
    net = SetCropNet(config)
    try:
        result = net.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1].strip()
        raise ModelError(f"{path}: weights do not match the set model config ({detail})") from None
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ModelError(f"{path}: weights do not match the set model config "
                         f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")
    try:
        return SetScorer(net, card, weights_path=path, device=target)
    except RuntimeError as err:
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(f"{path}: cannot put the model on {target} ({detail})") from None
