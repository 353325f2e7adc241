"""``autocrop train``: train or fine-tune a view-ranking model on GAICD / FCDB / a GAICD-layout folder.

``--arch set`` trains the set-prediction model instead (:mod:`autocrop.commands.train_set`; options marked
"set:" apply to it, the grid model's switches do not).

Every option default is the packaged model's recipe (:data:`autocrop.train.recipe.DEFAULT_RECIPE`,
the ``"recipe"`` of ``autocrop/weights/default.json``). ``gaicd_dir`` / ``fcdb_dir`` may also come from
the config file: the CLI passes them in through click's ``default_map``; this module reads no config.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from autocrop.errors import InputError, UsageError
from autocrop.train.recipe import DEFAULT_RECIPE as R

if TYPE_CHECKING:
    from autocrop.model.config import ModelConfig
    from autocrop.model.scorer import ViewScorer
    from autocrop.train.datasets import Splits

IMAGENET_FILE = "mobilenet_v2-b0353104.pth"
SET_LR = 3e-4  # --arch set: decoder learning rate (autocrop.train.set_trainer.SetRecipe.lr)
EPILOG = (
    "Defaults are the packaged model's recipe. The data folder is $AUTOCROP_DATA_DIR (in a source checkout "
    "without it: ../shared/data beside the checkout).   "
    "Example: autocrop train --data gaicd --init runs/fcdb_pre/best.safetensors --out runs/mine"
)


def _default_init() -> Path:
    """torchvision's ImageNet MobileNetV2 file under the data root (``weights/``); one line when there is no data root."""
    from autocrop.data.locate import DATA_ENV, find_data_root

    root = find_data_root()
    if root is None:
        raise UsageError(f"no initial weights: pass --init, or set {DATA_ENV} to a folder holding weights/{IMAGENET_FILE}")
    return root / "weights" / IMAGENET_FILE


def train_command(
    data: Annotated[list[str], typer.Option("--data", metavar="NAME|DIR", help="gaicd | fcdb | a GAICD-layout folder (repeat to mix).")],
    arch: Annotated[str, typer.Option(metavar="grid|set", help="Model family: grid (view ranking of grid crops) or set (set prediction, Jia et al. 2022; trains a decoder on the frozen backbone of --backbone).")] = "grid",
    data_dir: Annotated[Path | None, typer.Option(metavar="DIR", help="Dataset folder when one --data is given (wins over --gaicd-dir / --fcdb-dir).")] = None,
    gaicd_dir: Annotated[Path | None, typer.Option(metavar="DIR", help="GAICD folder [default: config gaicd_dir, else GAICD in the data folder].")] = None,
    fcdb_dir: Annotated[Path | None, typer.Option(metavar="DIR", help="FCDB folder [default: config fcdb_dir, else FCDB in the data folder].")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs to train.")] = R.epochs,
    out: Annotated[Path, typer.Option(metavar="DIR", help="Output folder: checkpoints, best.safetensors + card.")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from OUT/last.safetensors.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of shuffling, augmentation and initialisation.")] = R.seed,
    folds: Annotated[int, typer.Option(min=2, help="Number of GAICD cross-validation folds.")] = 5,
    fold: Annotated[int | None, typer.Option(help="Validate on this GAICD fold (0-based); omit to train on all.")] = None,
    init: Annotated[Path | None, typer.Option(metavar="FILE", help=f"ImageNet MobileNetV2 .pth (torchvision layout) or a .safetensors model to fine-tune [default: weights/{IMAGENET_FILE} in the data folder].")] = None,
    splitter: Annotated[bool, typer.Option("--splitter/--no-splitter", help="VRN feature splitter + image-wise learner.")] = True,
    spatial: Annotated[bool, typer.Option("--spatial/--no-spatial", help="Spatial-aware feature (Wang et al. 2023).")] = True,
    pairwise: Annotated[bool, typer.Option("--pairwise/--no-pairwise", help="Pairwise rank classifier + rank consistency.")] = True,
    flip_tta: Annotated[bool, typer.Option("--flip-tta/--no-flip-tta", help="Score crops as the mean over the photo and its mirror image (validation and inference).")] = False,
    input_short_side: Annotated[int | None, typer.Option(min=64, max=1024, help="Network input short side in pixels (long side capped at 2x) [default: 256, or the --init model's].")] = None,
    lr: Annotated[float, typer.Option(help="Learning rate of the backbone (grid).")] = R.backbone_lr,
    head_lr: Annotated[float | None, typer.Option(help="Learning rate of the heads [default: 5 x --lr].")] = None,
    gaicd_repeat: Annotated[int, typer.Option(min=1, help="Times each GAICD image is seen per epoch.")] = R.gaicd_repeat,
    rank_gain_weight: Annotated[float, typer.Option(min=0.0, help="Weight of VRN's ranking gain loss (0: off).")] = R.lambda_rank_gain,
    listwise_weight: Annotated[float, typer.Option(min=0.0, help="Weight of LVRN's listwise top-1 loss (0: off).")] = R.lambda_listwise,
    listwise_temperature: Annotated[float, typer.Option(min=0.01, help="Temperature T of the listwise target softmax(z-scored MOS / T); lower puts more weight on the best crops.")] = R.listwise_temperature,
    crops_per_image: Annotated[int, typer.Option(min=2, help="Annotated crops scored per training step (128: all of a GAICD image).")] = R.crops_per_image,
    fcdb_per_epoch: Annotated[int | None, typer.Option(min=1, help="FCDB images per epoch when mixing datasets (a new random subset each epoch) [default: all].")] = R.fcdb_per_epoch,
    scale_jitter: Annotated[float, typer.Option(min=0.0, max=0.5, help="Resize training images by a random factor in [1-s, 1+s].")] = R.scale_jitter,
    teacher: Annotated[Path | None, typer.Option(metavar="FILE", help="Self-training: add FCDB train photos (minus FCDB validation) whose grid crops this model scores.")] = None,
    swa_start: Annotated[int | None, typer.Option(min=0, help="Average the weights of epochs >= this (0-based): stochastic weight averaging [default: off].")] = R.swa_start,
    limit: Annotated[int | None, typer.Option(min=1, help="Use at most N images per dataset (smoke tests).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads [default: every CPU this process may use].")] = None,
    backbone: Annotated[Path | None, typer.Option(metavar="FILE", help="set: grid model whose MobileNetV2 is the frozen backbone and whose views teach on FCDB train [default: the packaged model].")] = None,
    distill_from: Annotated[Path | None, typer.Option(metavar="FILE", help="set: a first-round set model; its validity becomes the soft target of unmatched queries (self-distillation).")] = None,
    decoder_lr: Annotated[float, typer.Option(help="set: learning rate of the decoder (the backbone is frozen).")] = SET_LR,
    batch_size: Annotated[int, typer.Option(min=1, help="set: photos per step.")] = 16,
    cache: Annotated[Path | None, typer.Option(metavar="DIR", help="set: folder of the cached backbone features (shared between runs with the same --backbone) [default: OUT/features].")] = None,
    teacher_crops: Annotated[int, typer.Option(min=0, max=16, help="set: the --backbone model's best views added as soft good crops per FCDB train photo (0: the ground truth only).")] = 2,
) -> None:
    """Train a ranking model (--arch grid) or a set-prediction model (--arch set). Never reads FCDB test images;
    validation is a GAICD fold and/or 10% of FCDB train."""
    import torch
    from rich.console import Console

    from autocrop.io.fs import check_writable_folder
    from autocrop.model.config import ModelConfig
    from autocrop.model.weights import load_weights
    from autocrop.system import available_cpus
    from autocrop.train.datasets import build_splits
    from autocrop.train.trainer import Recipe, Trainer

    console = Console(stderr=True)
    torch.set_num_threads(threads or available_cpus())
    if arch not in ("grid", "set"):
        raise UsageError(f"--arch {arch!r}: choose grid or set")
    if fold is not None and not 0 <= fold < folds:
        raise UsageError(f"--fold {fold}: must be in 0..{folds - 1}")
    out = out.expanduser()
    check_writable_folder(out)  # a file, or a folder that cannot be written: one line now, not after the work
    if (out / "last.safetensors").is_file() and not resume:
        raise UsageError(f"{out}: holds a checkpoint already; pass --resume to continue it or choose another --out")
    if arch == "set":
        from autocrop.commands.train_set import run_set_training

        run_set_training(data, out, data_dir=data_dir, gaicd_dir=gaicd_dir, fcdb_dir=fcdb_dir,
                         epochs=epochs, resume=resume, seed=seed, folds=folds, fold=fold, limit=limit,
                         lr=decoder_lr, backbone=backbone, distill_from=distill_from,
                         batch_size=batch_size, teacher_crops=teacher_crops, cache=cache, console=console)
        return

    init_state = init_features = None
    init_card: dict[str, Any] = {}
    config = ModelConfig(splitter=splitter, spatial=spatial, pairwise=pairwise, flip_tta=flip_tta)
    init_path = (init or _default_init()).expanduser()
    if not init_path.is_file():
        raise InputError(f"{init_path}: initial weights not found (pass --init)")
    if init_path.suffix == ".safetensors":
        init_state, init_config, init_card = load_weights(init_path)
        config = replace(init_config, splitter=splitter, spatial=spatial, pairwise=pairwise, flip_tta=flip_tta)
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

        teacher_model = load_scorer(teacher, runtime="torch")  # training runs on torch anyway

    with console.status("decoding training images"):
        splits = build_splits(data, config, data_dir=data_dir, folds=folds, fold=fold, limit=limit,
                              gaicd_dir=gaicd_dir, fcdb_dir=fcdb_dir)
        if teacher_model is not None:
            _add_teacher_labelled(splits, teacher_model, config, data_dir if data == ["fcdb"] else fcdb_dir)
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
    trainer = Trainer(config, recipe, splits.train, splits.val, out, init_features=init_features, init_state=init_state,
                      init_name=str(init_path))
    if resume and trainer.resume():
        console.print(f"resumed from {trainer.last_checkpoint} at epoch {trainer.start_epoch + 1}/{epochs}")
    card = run_card(data, init_path, folds, fold, splits, init_card, teacher, teacher_model)
    _fit_with_progress(trainer, card, console, epochs, out)
    best = out / "best.safetensors"
    console.print(f"best model: {best} (card {best.with_suffix('.json')})")


def run_card(
    data: list[str], init_path: Path, folds: int, fold: int | None, splits: Splits, init_card: dict[str, Any],
    teacher: Path | None, teacher_model: ViewScorer | None,
) -> dict[str, Any]:
    """The card of a training run (the trainer adds recipe, validation and history when it saves a model)."""
    from autocrop.model.card import merged_training_images, provenance

    return {
        "name": "autocrop view ranker",
        **provenance(),
        "datasets": list(data),
        "init": init_path.name,
        "gaicd_folds": {"folds": folds, "validation_fold": fold},
        # a fine-tuned model has also seen every image its starting model was trained on
        "training_images": merged_training_images([init_card], splits.training_images),
        "init_model": {k: init_card.get(k) for k in ("sha256", "datasets", "recipe", "validation")} if init_card else None,
        "validation_images": [{"dataset": s.dataset, "name": s.name} for s in splits.val],
        "skipped": splits.skipped,
        "teacher": {"file": teacher.name, "sha256": teacher_model.card.get("sha256"),
                    "validation": teacher_model.card.get("validation")}
        if teacher is not None and teacher_model is not None else None,
    }


def _fit_with_progress(trainer: Any, card: dict[str, Any], console: Any, epochs: int, out: Path) -> None:
    """``trainer.fit(card)`` with a progress bar (a line per tenth of an epoch when stderr is not a terminal)."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from autocrop.commands.exit_codes import EXIT_INTERRUPTED

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

            def on_epoch(stats: Any) -> None:
                progress.update(task, epoch=f"{stats.epoch + 2}/{epochs}" if stats.epoch + 1 < epochs else "done")
                metrics = "  ".join(f"{k} {v:.3f}" for k, v in stats.metrics.items())
                progress.console.print(f"epoch {stats.epoch + 1}/{epochs}: loss {stats.loss:.4f}, {stats.seconds:.0f} s  {metrics}")

            progress.update(task, epoch=f"{trainer.start_epoch + 1}/{epochs}")
            trainer.fit(card, on_step, on_epoch)
    except KeyboardInterrupt:
        console.print(f"interrupted: finished epochs are kept; continue with --resume --out {out}")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _add_teacher_labelled(splits: Splits, teacher: ViewScorer, config: ModelConfig, fcdb_dir: Path | None) -> None:
    """Append FCDB train photos labelled by the loaded ``teacher`` to ``splits.train`` (self-training).

    Photos already in the training set (``--data fcdb``) keep their annotations and are not relabelled.
    """
    from autocrop.train.datasets import decode_samples
    from autocrop.train.distill import fcdb_train_photos, teacher_labelled
    from autocrop.train.samples import fcdb_sample

    photos, missing = fcdb_train_photos(fcdb_dir)
    known = {s.name for s in splits.train if s.dataset == "fcdb"}
    decoded, broken = decode_samples([p for p in photos if p.name not in known], fcdb_sample, config)
    splits.train.extend(teacher_labelled(teacher, decoded, config))
    splits.skipped["teacher_fcdb_missing"] = missing
    splits.skipped["teacher_fcdb_unreadable"] = broken


def register(app: typer.Typer) -> None:
    """Add ``autocrop train`` to the app."""
    app.command("train", epilog=EPILOG)(train_command)


__all__ = ["register", "run_card", "train_command"]
