"""The training recipe (optimisation settings, saved in the model card). No torch import here.

The defaults are the recipe of the packaged model (``autocrop/weights/default.json``, ``"recipe"``):
12 epochs, every GAICD image once per epoch, all of its (up to 128) annotated crops per step, VRN's
ranking gain loss off. ``autocrop train`` takes its option defaults from :data:`DEFAULT_RECIPE`, so
``autocrop train --data gaicd --init STAGE1.safetensors`` re-trains the packaged model.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Recipe:
    """Optimisation settings. Learning rates are AdamW step sizes (cosine decay per epoch, floor 5 %).

    crops_per_image: annotated crops (GAICD) or grid candidates (FCDB) scored per step.
    gaicd_repeat: times each GAICD image is seen per epoch.
    lambda_*: loss weights (0 switches a loss off); listwise_temperature: T of softmax(z-scored MOS / T).
    consistency_pairs: random candidate pairs per FCDB step for the rank-consistency hinge.
    jitter: photometric strength (factors in [1 - j, 1 + j]); scale_jitter: resize factor range [1 - s, 1 + s].
    select_metric: 'auto' (SRCC + Acc1/5 with GAICD validation, else IoU) or a metric name for best.safetensors.
    swa_start: average the weights of epochs >= swa_start (0-based); None: no averaging.
    fcdb_per_epoch: FCDB images (annotated or teacher-labelled) drawn per epoch; None: all.
    """

    epochs: int = 12
    backbone_lr: float = 1e-4
    head_lr: float = 5e-4
    weight_decay: float = 1e-4
    crops_per_image: int = 128
    gaicd_repeat: int = 1
    lambda_rank_gain: float = 0.0
    lambda_listwise: float = 1.0
    listwise_temperature: float = 0.5
    lambda_pair: float = 1.0
    lambda_consistency: float = 1.0
    consistency_pairs: int = 64
    flip: bool = True
    jitter: float = 0.2
    scale_jitter: float = 0.0
    seed: int = 0
    select_metric: str = "auto"
    swa_start: int | None = None
    fcdb_per_epoch: int | None = None


DEFAULT_RECIPE = Recipe()
