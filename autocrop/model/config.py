"""Model configuration, saved with the weights (in the safetensors metadata and the model card).

:meth:`ModelConfig.from_dict` is the one check of a config read from a file: every field's type and
range (:data:`LIMITS`), so a damaged or forged file is one line, never a traceback or a silently
collapsed network.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

#: field -> (low, high) inclusive range of the whole-number fields; the others are checked by type.
LIMITS: dict[str, tuple[int, int]] = {
    "input_short_side": (64, 4096),   # pixels
    "max_long_side": (64, 8192),      # pixels, and at least input_short_side
    "reduced_dim": (1, 1024),         # channels
    "align_size": (1, 32),            # bins per side
    "sampling_ratio": (1, 16),        # samples per bin and axis
    "fc_dim": (1, 65536),
    "embed_dim": (1, 65536),
    "spatial_size": (1, 256),         # pixels per side of the spatial maps
    "spatial_dim": (1, 65536),
}


@dataclass(frozen=True)
class ModelConfig:
    """Switches and sizes of :class:`autocrop.model.network.ViewRankingNet`.

    input_short_side: the image is resized so its short side has this many pixels.
    reduced_dim:      channels of the aggregated stride-16 feature after the 1x1 reduction (GAIC: 8).
    align_size:       RoIAlign / RoDAlign output is align_size x align_size.
    splitter:         VRN feature splitter + image-wise learner (the learner is used in training only).
    spatial:          spatial-aware feature of Wang et al. 2023 (channel-max maps + crop mask encoder).
    spatial_size:     side of the spatial-aware maps (the paper uses 64; smaller is faster on CPU).
    spatial_dim:      size of the spatial-aware embedding (paper: 256).
    pairwise:         pairwise rank classifier on concatenated crop embeddings (training signal only).
    flip_tta:         inference scores are the mean over the image and its mirror image (test-time
                      augmentation; one forward pass with a batch of two).
    """

    input_short_side: int = 256
    max_long_side: int = 512
    reduced_dim: int = 8
    align_size: int = 9
    sampling_ratio: int = 2
    fc_dim: int = 768
    embed_dim: int = 128
    dropout: float = 0.3
    splitter: bool = False
    spatial: bool = False
    spatial_size: int = 16
    spatial_dim: int = 256
    pairwise: bool = False
    flip_tta: bool = False

    def to_json(self) -> str:
        """The config as compact JSON with sorted keys (stored in the weights metadata)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> ModelConfig:
        """A config from a dict (missing keys take the defaults), every value checked.

        Raises ``ValueError`` naming the field for unknown keys, a value of the wrong type (``true`` or
        ``"big"`` where a whole number belongs) or out of its range (:data:`LIMITS`; ``dropout`` 0..<1).
        """
        if not isinstance(data, dict):
            raise ValueError(f"config is a JSON {type(data).__name__}, not an object")
        kinds = {f.name: type(getattr(cls(), f.name)) for f in fields(cls)}
        unknown = set(data) - set(kinds)
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(map(str, unknown))}")
        for name, value in data.items():
            kind = kinds[name]
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} {value!r}: must be true or false")
            elif kind is int:
                low, high = LIMITS[name]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise ValueError(f"{name} {value!r}: must be a whole number {low}..{high}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} {value!r}: must be a number 0 <= {name} < 1")
        config = cls(**data)
        if config.max_long_side < config.input_short_side:
            raise ValueError(f"max_long_side {config.max_long_side}: must be at least input_short_side "
                             f"{config.input_short_side}")
        return config
