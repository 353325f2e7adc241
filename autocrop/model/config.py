"""Model configuration, saved with the weights (in the safetensors metadata and the model card)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields


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
    def from_dict(cls, data: dict) -> ModelConfig:
        """A config from a dict (missing keys take the defaults); ``ValueError`` for unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**data)
