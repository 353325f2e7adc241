"""``autocrop train --arch set``: train the set-prediction model's decoder on cached backbone features.

Called by :mod:`autocrop.commands.train` with the parsed options; reads no config file or environment
(the data folders come in as arguments). Steps: list the photos (FCDB train, its validation split held
out; GAICD with k folds), cache the frozen backbone's memory + the grid teacher's views under
``OUT/features``, train the decoder, write ``OUT/best.safetensors`` + card (and ``OUT/last.safetensors``,
the checkpoint ``--resume`` continues).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from autocrop.errors import DatasetError, UsageError


def run_set_training(
    data: list[str], out: Path, *, data_dir: Path | None, gaicd_dir: Path | None, fcdb_dir: Path | None,
    epochs: int, resume: bool, seed: int, folds: int, fold: int | None, limit: int | None, lr: float,
    backbone: Path | None, distill_from: Path | None, batch_size: int, teacher_crops: int, console: Any,
    cache: Path | None = None,
) -> Path:
    """Train a set model end to end -> the path of the best model. One-line errors (autocrop.errors)."""
    from autocrop.model.card import merged_training_images, provenance
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.set_config import SetModelConfig
    from autocrop.model.weights import PACKAGED_WEIGHTS, load_state_checked, load_weights
    from autocrop.train.datasets import dataset_dir
    from autocrop.train.set_data import fcdb_sources, gaicd_sources, training_images
    from autocrop.train.set_features import build_cache
    from autocrop.train.set_trainer import SetRecipe, SetTrainer

    config = SetModelConfig()
    grid_path = (backbone or PACKAGED_WEIGHTS).expanduser()
    tensors, grid_config, grid_card = load_weights(grid_path)
    if (grid_config.input_short_side, grid_config.max_long_side) != (config.input_short_side, config.max_long_side):
        raise UsageError(f"--backbone {grid_path}: its input size differs from the set model's "
                         f"({grid_config.input_short_side} px short side, need {config.input_short_side})")
    grid = ViewRankingNet(grid_config)
    load_state_checked(grid, tensors, grid_path)
    grid.eval()
    first_round = None
    distill_card: dict[str, Any] = {}
    if distill_from is not None:
        from autocrop.model.set_scorer import load_set_scorer

        first = load_set_scorer(distill_from.expanduser())
        first_round, distill_card = first.net.head, first.card

    sources, skipped = [], {}
    for name in data:
        key = name.lower()
        if key == "fcdb":
            found, missing = fcdb_sources(dataset_dir("fcdb", data, data_dir, gaicd_dir, fcdb_dir), limit)
        elif key == "gaicd":
            found, missing = gaicd_sources(dataset_dir("gaicd", data, data_dir, gaicd_dir, fcdb_dir), folds, fold,
                                           limit)
        else:
            raise UsageError(f"--data {name!r}: the set model trains on fcdb and/or gaicd")
        sources += found
        skipped[f"{key}_missing"] = missing
    if not any(s.train for s in sources):
        raise DatasetError(f"no training images found in {', '.join(data)}")

    started = time.perf_counter()
    with console.status("caching backbone features") as status:
        def progress(done: int, total: int) -> None:
            status.update(f"caching backbone features {done}/{total}")

        folder = (cache or out / "features").expanduser()
        photos, broken = build_cache(sources, grid, str(grid_card.get("sha256", "")), folder, config,
                                     teacher_crops, progress)
    cache_seconds = time.perf_counter() - started
    skipped["unreadable"] = broken
    train = [p for p in photos if p.train]
    val = [p for p in photos if not p.train]
    console.print(f"features cached in {cache_seconds:.0f} s; train: {len(train)} photos, validation: {len(val)}")

    recipe = SetRecipe(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, teacher_crops=teacher_crops,
                       distill=first_round is not None)
    trainer = SetTrainer(config, recipe, train, val, out, dict(_features_of(tensors)), first_round)
    if resume and trainer.resume():
        console.print(f"resumed from {trainer.last_checkpoint} at epoch {trainer.start_epoch + 1}/{epochs}")
    sources_trained = training_images(sources)
    card = {
        "name": "autocrop set crops",
        **provenance(),
        "datasets": list(data),
        "backbone": {"file": grid_path.name, "sha256": grid_card.get("sha256"), "frozen": True,
                     "note": "MobileNetV2 of this grid model; its training images are inherited below"},
        "teacher": {"file": grid_path.name, "sha256": grid_card.get("sha256"), "views_per_photo": teacher_crops,
                    "photos": "FCDB train minus its validation split"} if teacher_crops else None,
        "distilled_from": {"sha256": distill_card.get("sha256"), "validation": distill_card.get("validation")}
        if distill_card else None,
        # the backbone (and a first-round model) saw these images: a set model inherits them
        "training_images": merged_training_images([grid_card, distill_card], sources_trained),
        "validation_images": [{"dataset": s.dataset, "name": s.name} for s in sources if not s.train],
        "gaicd_folds": {"folds": folds, "validation_fold": fold} if any(d.lower() == "gaicd" for d in data) else None,
        "skipped": skipped,
        "feature_cache_seconds": round(cache_seconds, 1),
    }

    def on_epoch(stats: Any) -> None:
        metrics = "  ".join(f"{k} {v:.4f}" for k, v in stats.metrics.items())
        console.print(f"epoch {stats.epoch + 1}/{epochs}: loss {stats.loss:.4f}, {stats.seconds:.1f} s  {metrics}")

    try:
        trainer.fit(card, on_epoch=on_epoch)
    except KeyboardInterrupt:
        import typer

        from autocrop.commands.exit_codes import EXIT_INTERRUPTED

        console.print(f"interrupted: finished epochs are kept; continue with --resume --out {out}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    best = out / "best.safetensors"
    console.print(f"best model: {best} (card {best.with_suffix('.json')})")
    return best


def _features_of(tensors: dict[str, Any]) -> dict[str, Any]:
    """The MobileNetV2 ``features.*`` tensors of a grid model, keys without the ``features.`` prefix."""
    return {k[len("features."):]: v for k, v in tensors.items() if k.startswith("features.")}
