"""Self-training on unlabelled photos: a teacher model's scores become the MOS of GAIC grid crops.

GAICD's dense MOS labels are scarce (100 images here). FCDB train photos are plentiful but carry no
dense labels, so a teacher trained on GAICD scores the GAIC grid crops of each FCDB train photo (with
flip test-time augmentation), and the student learns from those scores exactly as from GAICD MOS
(Xie et al. 2020, "noisy student"; the student also sees flip, photometric and scale augmentation).
The FCDB validation split is left out, so FCDB validation figures stay on unseen photos; FCDB test
photos are never read.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from autocrop.data import FCDBImage, load_fcdb, resolve_data_dir
from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig
from autocrop.model.torch_scorer import ViewScorer
from autocrop.train.samples import TrainSample
from autocrop.train.validate import predict


def teacher_labelled(teacher: ViewScorer, fcdb_samples: list[TrainSample], config: ModelConfig) -> list[TrainSample]:
    """GAICD-style samples from decoded FCDB samples: grid crops with the teacher's scores as MOS.

    teacher: a loaded model (:func:`autocrop.model.scorer.load_scorer`); it scores with flip averaging.
    fcdb_samples: FCDB train samples (boxes = grid crops + the annotated crop last; only the grid is kept).
    The teacher's scores (standardised-MOS units) are mapped back to MOS with the teacher's own
    standardisation, so they mix with real MOS on one scale.
    """
    teacher_cfg = teacher.config
    if (teacher_cfg.input_short_side, teacher_cfg.max_long_side) != (config.input_short_side, config.max_long_side):
        raise ModelError(
            f"{teacher.weights_path}: teacher input size differs from the student's; cannot share decoded images"
        )
    standard = teacher.card.get("mos_standardization") or {"mean": 0.0, "std": 1.0}
    labelled = []
    for sample in fcdb_samples:
        grid = TrainSample(sample.dataset, sample.name, sample.pixels, sample.boxes[:-1])
        mos = (standard["mean"] + standard["std"] * predict(teacher.net, grid, flip_tta=True)).astype(np.float32)
        labelled.append(dataclasses.replace(grid, mos=mos, teacher_labelled=True, original_size=sample.original_size))
    return labelled


def fcdb_train_photos(data_dir: str | Path | None = None) -> tuple[list[FCDBImage], int]:
    """FCDB train images outside the FCDB validation split, and the count of missing files."""
    from autocrop.train.datasets import is_fcdb_validation

    images, missing = load_fcdb(resolve_data_dir("fcdb", data_dir), "train")
    return [im for im in images if not is_fcdb_validation(im.name)], missing
