"""Trainer on real GAICD / FCDB images: a short run writes a model + card, and resume is exact."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("AUTOCROP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
IMAGENET = DATA / "weights" / "mobilenet_v2-b0353104.pth"
needs_data = pytest.mark.skipif(
    not (DATA / "GAICD").is_dir() or not IMAGENET.is_file(), reason=f"shared data not found at {DATA} (set AUTOCROP_DATA_DIR)"
)


def _trainer(out: Path, epochs: int):
    from autocrop.model.backbone import load_imagenet_features
    from autocrop.model.config import ModelConfig
    from autocrop.train.datasets import build_splits
    from autocrop.train.trainer import Recipe, Trainer

    config = ModelConfig(splitter=True, spatial=True, pairwise=True, spatial_size=16)
    splits = build_splits(["gaicd"], config, data_dir=DATA / "GAICD", folds=2, fold=0, limit=4)
    recipe = Recipe(epochs=epochs, gaicd_repeat=1, crops_per_image=16)
    return Trainer(config, recipe, splits.train, splits.val, out, init_features=load_imagenet_features(IMAGENET)), splits


@needs_data
def test_interrupted_training_resumes_exactly(tmp_path):
    import torch
    from safetensors.torch import load_file

    # multi-threaded CPU reductions are not bit-reproducible; exactness is checked on one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _resume_and_compare(tmp_path, load_file)
    finally:
        torch.set_num_threads(threads)


def _resume_and_compare(tmp_path, load_file):

    straight, _ = _trainer(tmp_path / "straight", epochs=2)
    straight.fit({"name": "t"})
    first, _ = _trainer(tmp_path / "split", epochs=2)
    first.recipe.epochs = 1  # run stops after epoch 1 (as if killed between epochs)...
    first.fit({"name": "t"})
    second, _ = _trainer(tmp_path / "split", epochs=2)
    assert second.resume() and second.start_epoch == 1
    second.fit({"name": "t"})
    a = load_file(str(tmp_path / "straight" / "last.safetensors"))
    b = load_file(str(tmp_path / "split" / "last.safetensors"))
    for key in a:
        if key.startswith("model."):
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


@needs_data
def test_train_command_writes_model_and_card(tmp_path):
    from typer.testing import CliRunner

    from autocrop.cli import app

    out = tmp_path / "run"
    args = ["train", "--data", "gaicd", "--data-dir", str(DATA / "GAICD"), "--epochs", "1", "--fold", "0",
            "--limit", "5", "--out", str(out), "--gaicd-repeat", "1", "--init", str(IMAGENET)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "best.json").read_text())
    assert {"srcc", "acc1_5"} <= set(card["validation"])
    assert len(card["training_images"]) == 4 and card["training_images"][0]["dataset"] == "gaicd"
    # running again into the same folder without --resume refuses instead of overwriting
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0


def test_train_command_rejects_missing_data_path(tmp_path):
    from autocrop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--init", str(IMAGENET)])
    assert exit_info.value.code != 0
