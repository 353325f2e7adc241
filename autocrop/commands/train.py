"""``autocrop train``: train or fine-tune a view-ranking model on GAICD / FCDB / a GAICD-layout folder."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer

from autocrop.errors import InputError

IMAGENET_FILE = "mobilenet_v2-b0353104.pth"


def _default_init() -> Path:
    from autocrop.data.locate import default_data_root

    return default_data_root() / "weights" / IMAGENET_FILE


def train_command(
    data: Annotated[list[str], typer.Option("--data", help="gaicd | fcdb | PATH to a GAICD-layout folder (repeat to mix).")],
    data_dir: Annotated[Optional[Path], typer.Option(help="Dataset directory (when one --data is given).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to train.")] = 8,
    out: Annotated[Path, typer.Option(help="Output directory: checkpoints, best.safetensors + card.")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/last.safetensors.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of shuffling, augmentation and initialisation.")] = 0,
    folds: Annotated[int, typer.Option(min=2, help="Number of GAICD cross-validation folds.")] = 5,
    fold: Annotated[Optional[int], typer.Option(help="Validate on this GAICD fold (0-based); omit to train on all.")] = None,
    init: Annotated[Optional[Path], typer.Option(help="ImageNet MobileNetV2 .pth (torchvision layout) or a .safetensors model to fine-tune.")] = None,
    splitter: Annotated[bool, typer.Option("--splitter/--no-splitter", help="VRN feature splitter + image-wise learner.")] = True,
    spatial: Annotated[bool, typer.Option("--spatial/--no-spatial", help="Spatial-aware feature (Wang et al. 2023).")] = True,
    pairwise: Annotated[bool, typer.Option("--pairwise/--no-pairwise", help="Pairwise rank classifier + rank consistency.")] = True,
    flip_tta: Annotated[bool, typer.Option("--flip-tta/--no-flip-tta", help="Score crops as the mean over the photo and its mirror image (validation and inference).")] = False,
    input_short_side: Annotated[Optional[int], typer.Option(min=64, max=1024, help="Network input short side in pixels (long side capped at 2x); default 256 or the --init model's.")] = None,
    lr: Annotated[float, typer.Option(help="Learning rate of the backbone (heads: 5x).")] = 1e-4,
    head_lr: Annotated[Optional[float], typer.Option(help="Learning rate of the heads (default: 5 x --lr).")] = None,
    gaicd_repeat: Annotated[int, typer.Option(min=1, help="Times each GAICD image is seen per epoch.")] = 3,
    rank_gain_weight: Annotated[float, typer.Option(min=0.0, help="Weight of VRN's ranking gain loss (0: off).")] = 3.0,
    listwise_weight: Annotated[float, typer.Option(min=0.0, help="Weight of LVRN's listwise top-1 loss (0: off).")] = 1.0,
    listwise_temperature: Annotated[float, typer.Option(min=0.01, help="Temperature T of the listwise target softmax(z-scored MOS / T); lower puts more weight on the best crops.")] = 0.5,
    crops_per_image: Annotated[int, typer.Option(min=2, help="Annotated crops scored per training step.")] = 64,
    fcdb_per_epoch: Annotated[Optional[int], typer.Option(min=1, help="FCDB images per epoch when mixing datasets (a new random subset each epoch; default all).")] = None,
    scale_jitter: Annotated[float, typer.Option(min=0.0, max=0.5, help="Resize training images by a random factor in [1-s, 1+s].")] = 0.0,
    teacher: Annotated[Optional[Path], typer.Option(help="Self-training: add FCDB train photos (minus FCDB validation) whose grid crops this model scores.")] = None,
    swa_start: Annotated[Optional[int], typer.Option(min=0, help="Average the weights of epochs >= this (0-based): stochastic weight averaging.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use at most N images per dataset (smoke tests).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch threads (default: all cores).")] = None,
) -> None:
    """Train a ranking model. Never reads FCDB test images; validation is a GAICD fold and/or 10% of FCDB train."""
    import time

    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from autocrop import __version__
    from autocrop.model.config import ModelConfig
    from autocrop.model.weights import load_weights
    from autocrop.train.datasets import build_splits, unique_images
    from autocrop.train.trainer import Recipe, Trainer

    console = Console(stderr=True)
    if threads:
        torch.set_num_threads(threads)
    if fold is not None and not 0 <= fold < folds:
        raise InputError(f"--fold {fold}: must be in 0..{folds - 1}")
    out = out.expanduser()
    if (out / "last.safetensors").is_file() and not resume:
        raise InputError(f"{out}: holds a checkpoint already; pass --resume to continue it or choose another --out")

    init_state = init_features = None
    init_card: dict = {}
    config = ModelConfig(splitter=splitter, spatial=spatial, pairwise=pairwise, flip_tta=flip_tta)
    init_path = (init or _default_init()).expanduser()
    if not init_path.is_file():
        raise InputError(f"{init_path}: initial weights not found (pass --init)")
    if init_path.suffix == ".safetensors":
        init_state, config, init_card = load_weights(init_path)
        config = ModelConfig(**{**config.__dict__, "splitter": splitter, "spatial": spatial, "pairwise": pairwise,
                                "flip_tta": flip_tta})
    else:
        from autocrop.model.backbone import load_imagenet_features

        try:
            init_features = load_imagenet_features(init_path)
        except Exception as err:  # noqa: BLE001 -- any unreadable/unsafe file becomes one line
            raise InputError(f"{init_path}: not a torchvision MobileNetV2 state_dict ({type(err).__name__})") from None
    if input_short_side is not None:
        config = replace(config, input_short_side=input_short_side, max_long_side=2 * input_short_side)
    teacher_model = None
    if teacher is not None:
        from autocrop.model.scorer import load_scorer

        if not teacher.expanduser().is_file():
            raise InputError(f"{teacher}: teacher model not found")
        teacher_model = load_scorer(teacher.expanduser())

    with console.status("decoding training images"):
        splits = build_splits(data, config, data_dir=data_dir, folds=folds, fold=fold, limit=limit)
        if teacher_model is not None:
            _add_teacher_labelled(splits, teacher_model, config, data_dir if data == ["fcdb"] else None)
    skipped = ", ".join(f"{k}={v}" for k, v in splits.skipped.items() if v)
    console.print(
        f"train: {len(splits.train)} images, validation: {len(splits.val)} images" + (f" (skipped: {skipped})" if skipped else "")
    )
    recipe = Recipe(
        epochs=epochs,
        backbone_lr=lr,
        head_lr=head_lr if head_lr is not None else 5 * lr,
        gaicd_repeat=gaicd_repeat,
        lambda_rank_gain=rank_gain_weight,
        lambda_listwise=listwise_weight,
        listwise_temperature=listwise_temperature,
        seed=seed,
        crops_per_image=crops_per_image,
        fcdb_per_epoch=fcdb_per_epoch,
        swa_start=swa_start,
        scale_jitter=scale_jitter,
    )
    trainer = Trainer(config, recipe, splits.train, splits.val, out, init_features=init_features, init_state=init_state)
    if resume and trainer.resume():
        console.print(f"resumed from {trainer.last_checkpoint} at epoch {trainer.start_epoch + 1}/{epochs}")
    card = {
        "name": "autocrop view ranker",
        "autocrop_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "datasets": list(data),
        "init": init_path.name,
        "gaicd_folds": {"folds": folds, "validation_fold": fold},
        # a fine-tuned model has also seen every image its starting model was trained on
        "training_images": unique_images(init_card.get("training_images", []) + splits.training_images),
        "init_model": {k: init_card.get(k) for k in ("sha256", "datasets", "recipe", "validation")} if init_card else None,
        "validation_images": [{"dataset": s.dataset, "name": s.name} for s in splits.val],
        "skipped": splits.skipped,
        "teacher": {"file": teacher.name, "sha256": teacher_model.card.get("sha256"),
                    "validation": teacher_model.card.get("validation")} if teacher_model is not None else None,
    }
    columns = (
        TextColumn("[bold]epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task("train", total=None, epoch="-", loss=0.0, rate=0.0)
            started = [time.perf_counter()]

            def on_step(step: int, total: int, loss: float) -> None:
                if step == 1:
                    started[0] = time.perf_counter()
                rate = step / max(time.perf_counter() - started[0], 1e-9)
                progress.update(task, completed=step, total=total, loss=loss, rate=rate)
                if not console.is_terminal and (step % max(1, total // 10) == 0 or step == total):
                    console.print(f"  step {step}/{total}  loss {loss:.4f}  {rate:.1f} img/s", highlight=False)

            def on_epoch(stats) -> None:
                progress.update(task, epoch=f"{stats.epoch + 2}/{epochs}" if stats.epoch + 1 < epochs else "done")
                metrics = "  ".join(f"{k} {v:.3f}" for k, v in stats.metrics.items())
                progress.console.print(f"epoch {stats.epoch + 1}/{epochs}: loss {stats.loss:.4f}, {stats.seconds:.0f} s  {metrics}")

            progress.update(task, epoch=f"{trainer.start_epoch + 1}/{epochs}")
            trainer.fit(card, on_step, on_epoch)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished epochs are kept; continue with --resume --out {out}")
        raise typer.Exit(130) from None
    best = out / "best.safetensors"
    console.print(f"best model: {best} (card {best.with_suffix('.json')})")


def _add_teacher_labelled(splits, teacher, config, data_dir: Path | None) -> None:
    """Append FCDB train photos labelled by the loaded ``teacher`` to ``splits.train`` (self-training).

    Photos already in the training set (``--data fcdb``) keep their annotations and are not relabelled.
    """
    from autocrop.train.datasets import decode_samples
    from autocrop.train.distill import fcdb_train_photos, teacher_labelled
    from autocrop.train.samples import fcdb_sample

    photos, missing = fcdb_train_photos(data_dir)
    known = {s.name for s in splits.train if s.dataset == "fcdb"}
    decoded, broken = decode_samples([p for p in photos if p.name not in known], fcdb_sample, config)
    splits.train.extend(teacher_labelled(teacher, decoded, config))
    splits.skipped["teacher_fcdb_missing"] = missing
    splits.skipped["teacher_fcdb_unreadable"] = broken


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


__all__ = ["register", "train_command"]
