"""Configuration of the set-prediction crop model (:class:`autocrop.model.set_net.SetCropNet`).

Saved with the weights, in the safetensors metadata (``{"arch": "set", "config": <json>}``) and the
model card. :meth:`SetModelConfig.from_dict` is the one check of a config read from a file: every
field's type and range, so a damaged or forged file is one line, never a traceback.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig

#: safetensors metadata key naming the model family: "set" for this one; missing or "grid" = ViewRankingNet.
ARCH_KEY = "arch"
ARCH_SET = "set"
ARCH_GRID = "grid"

#: channels of the memory map: MobileNetV2 stride-8 (32) + stride-16 (96) + stride-32 (320) at stride 16.
MEMORY_CHANNELS = 448

#: field -> (low, high) inclusive range of the whole-number fields.
INT_LIMITS: dict[str, tuple[int, int]] = {
    "input_short_side": (64, 4096),   # pixels
    "max_long_side": (64, 8192),      # pixels, and at least input_short_side
    "queries": (1, 1024),             # learnable anchors = predicted crops per photo
    "d_model": (8, 4096),             # decoder width (a multiple of heads)
    "layers": (1, 32),                # decoder layers
    "heads": (1, 64),                 # attention heads
    "ffn_dim": (8, 65536),            # feed-forward hidden size
}
#: field -> (low, high) inclusive range of the number fields.
FLOAT_LIMITS: dict[str, tuple[float, float]] = {
    "dropout": (0.0, 0.9),
    "min_size": (0.001, 0.9),         # smallest crop side, as a fraction of the photo side
    "vote_iou": (0.0, 1.0),           # box voting: predictions overlapping by at least this IoU are averaged
}


@dataclass(frozen=True)
class SetModelConfig:
    """Sizes of :class:`~autocrop.model.set_net.SetCropNet` (defaults: chosen for 2 CPU cores).

    input_short_side, max_long_side: the photo is resized as for the grid model (pixels).
    queries:  N learnable anchor queries, each with a reference box; one predicted crop each.
    d_model:  width of the projected memory and of the decoder (the 448-channel stride-16 map is projected).
    layers:   conditional-DETR decoder layers; each refines the boxes of the layer before.
    heads:    attention heads (d_model must be a multiple).
    ffn_dim:  hidden size of each layer's feed-forward block.
    dropout:  dropout in the decoder (training only).
    min_size: smallest predicted crop side, as a fraction of the photo side (boxes never collapse).
    vote_iou: box voting at inference: each output box is the validity^2-weighted mean of the predictions
              overlapping it by IoU >= vote_iou (itself included); 1.0 turns voting off.
    """

    input_short_side: int = 256
    max_long_side: int = 512
    queries: int = 24
    d_model: int = 128
    layers: int = 3
    heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    min_size: float = 0.05
    vote_iou: float = 0.7

    def to_json(self) -> str:
        """The config as compact JSON with sorted keys (stored in the weights metadata)."""
        return json.dumps(asdict(self), sort_keys=True)

    def preprocess_config(self) -> ModelConfig:
        """The grid model config with this model's input size: what :mod:`autocrop.model.preprocess` reads."""
        return ModelConfig(input_short_side=self.input_short_side, max_long_side=self.max_long_side)

    @classmethod
    def from_dict(cls, data: Any) -> SetModelConfig:
        """A config from a dict (missing keys take the defaults), every value checked.

        Raises ``ValueError`` naming the field for unknown keys, a value of the wrong type or out of range.
        """
        if not isinstance(data, dict):
            raise ValueError(f"config is a JSON {type(data).__name__}, not an object")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown set model config keys: {sorted(map(str, unknown))}")
        for name, value in data.items():
            if name in INT_LIMITS:
                low, high = INT_LIMITS[name]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise ValueError(f"{name} {value!r}: must be a whole number {low}..{high}")
            else:
                lo, hi = FLOAT_LIMITS[name]
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                    raise ValueError(f"{name} {value!r}: must be a number {lo}..{hi}")
        config = cls(**data)
        if config.max_long_side < config.input_short_side:
            raise ValueError(f"max_long_side {config.max_long_side}: must be at least input_short_side "
                             f"{config.input_short_side}")
        if config.d_model % config.heads:
            raise ValueError(f"d_model {config.d_model}: must be a multiple of heads {config.heads}")
        if config.d_model % 4:
            raise ValueError(f"d_model {config.d_model}: must be a multiple of 4 (box position encoding)")
        return config


def read_arch(path: str | Path) -> str:
    """``"grid"`` or ``"set"``: the model family named in a safetensors file's metadata (no tensors read).

    A file without the key is a grid model (every model made before the set model). One-line
    :class:`ModelError` for a file that is not safetensors or names an unknown family.
    """
    from autocrop.model.weights import read_metadata

    arch = read_metadata(path).get(ARCH_KEY, ARCH_GRID)
    if arch not in (ARCH_GRID, ARCH_SET):
        raise ModelError(f"{path}: unknown model family {ARCH_KEY}={arch!r} (expected 'grid' or 'set')")
    return arch
