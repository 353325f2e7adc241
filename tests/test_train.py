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
            "--limit", "5", "--out", str(out), "--gaicd-repeat", "1", "--init", str(IMAGENET), "--input-short-side", "192",
            "--listwise-temperature", "0.25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((out / "best.json").read_text())
    assert {"srcc", "acc1_5"} <= set(card["validation"])
    assert len(card["training_images"]) == 4 and card["training_images"][0]["dataset"] == "gaicd"
    assert (out / "final.safetensors").is_file()  # the last epoch's model, which cross-validation reports
    assert card["config"]["input_short_side"] == 192 and card["config"]["max_long_side"] == 384
    assert card["recipe"]["listwise_temperature"] == 0.25
    # running again into the same folder without --resume refuses instead of overwriting
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0


def test_train_command_rejects_missing_data_path(tmp_path):
    from autocrop.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--init", str(IMAGENET)])
    assert exit_info.value.code != 0


@needs_data
def test_training_samples_see_the_pixels_the_engine_scores():
    """Validation figures are those of the deployed path: same decode, resize and box scaling."""
    import torch

    from autocrop.api import Cropper
    from autocrop.data import load_gaicd
    from autocrop.model.config import ModelConfig
    from autocrop.model.scorer import ViewScorer
    from autocrop.train.samples import gaicd_sample
    from autocrop.train.validate import predict

    image = load_gaicd(DATA / "GAICD", "test")[0][0]
    scorer = ViewScorer.untrained(config=ModelConfig(splitter=True, spatial=True))
    sample = gaicd_sample(image, scorer.config)
    expected = Cropper(scorer=scorer).score(image.path, image.boxes)
    with torch.no_grad():
        np.testing.assert_allclose(predict(scorer.net, sample), expected, rtol=1e-4, atol=1e-5)


def test_random_rescale_scales_image_and_boxes_alike():
    import torch

    from autocrop.train.augment import random_rescale

    image = torch.rand(1, 3, 100, 150)
    image, scale = random_rescale(image, torch.Generator().manual_seed(1), 0.2)
    h, w = image.shape[-2:]
    assert 80 <= h <= 120 and abs(w / 150 - h / 100) < 0.02  # one factor for both sides
    np.testing.assert_allclose(scale, [w / 150, h / 100, w / 150, h / 100], rtol=1e-6)
    assert abs(scale[0] - 1.0) > 1e-3  # seed 1 does not draw exactly 1


def test_model_soup_averages_weights_and_merges_cards(tmp_path):
    import torch

    from autocrop.errors import ModelError
    from autocrop.model.config import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import load_weights, save_weights
    from autocrop.train.soup import average_model_files

    config = ModelConfig()
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        card = {"name": "t", "recipe": {"seed": seed}, "validation": {"srcc": 0.5},
                "training_images": [{"dataset": "gaicd", "name": "a"}, {"dataset": "gaicd", "name": f"s{seed}"}]}
        paths.append(tmp_path / f"m{seed}.safetensors")
        save_weights(paths[-1], ViewRankingNet(config).state_dict(), config, card)
    card = average_model_files(paths, tmp_path / "soup.safetensors")
    tensors, loaded_config, _ = load_weights(tmp_path / "soup.safetensors")
    a, b = load_weights(paths[0])[0], load_weights(paths[1])[0]
    key = "score_head.weight"
    torch.testing.assert_close(tensors[key], 0.5 * (a[key] + b[key]))
    assert loaded_config == config and "validation" not in card
    assert [i["name"] for i in card["training_images"]] == ["a", "s0", "s1"]
    assert [m["seed"] for m in card["averaged_from"]] == [0, 1]
    other = ModelConfig(spatial=True)
    save_weights(tmp_path / "other.safetensors", ViewRankingNet(other).state_dict(), other, {"name": "o"})
    with pytest.raises(ModelError, match="differ"):
        average_model_files([paths[0], tmp_path / "other.safetensors"], tmp_path / "bad.safetensors")


@pytest.mark.skipif(not (DATA / "FCDB").is_dir(), reason=f"FCDB not found at {DATA} (set AUTOCROP_DATA_DIR)")
def test_teacher_labels_fcdb_grid_crops_in_mos_units(tmp_path):
    import torch

    from autocrop.model.config import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.scorer import load_scorer
    from autocrop.model.weights import save_weights
    from autocrop.train.datasets import decode_samples, is_fcdb_validation
    from autocrop.train.distill import fcdb_train_photos, teacher_labelled
    from autocrop.train.samples import fcdb_sample
    from autocrop.train.validate import predict

    config = ModelConfig()
    torch.manual_seed(0)
    net = ViewRankingNet(config)
    save_weights(tmp_path / "t.safetensors", net.state_dict(), config,
                 {"name": "t", "mos_standardization": {"mean": 3.0, "std": 0.5}})
    photos, _ = fcdb_train_photos(DATA / "FCDB")
    assert photos and not any(is_fcdb_validation(p.name) for p in photos)
    decoded, _ = decode_samples(photos[:2], fcdb_sample, config)
    teacher = load_scorer(tmp_path / "t.safetensors")
    labelled = teacher_labelled(teacher, decoded, config)
    assert len(labelled) == 2 and all(s.teacher_labelled for s in labelled)
    assert teacher.config.flip_tta is False and teacher.net.config.flip_tta is False  # the teacher is not altered
    first = labelled[0]
    assert len(first.boxes) == len(decoded[0].boxes) - 1  # grid only: the annotated crop is not a candidate
    net.eval()
    mirrored = first.boxes.copy()
    width = first.pixels.shape[1]
    mirrored[:, 0], mirrored[:, 2] = width - first.boxes[:, 2], width - first.boxes[:, 0]
    from autocrop.train.samples import TrainSample

    flipped = TrainSample("fcdb", "x", np.ascontiguousarray(first.pixels[:, ::-1]), mirrored)
    expected = 3.0 + 0.5 * 0.5 * (predict(net, TrainSample("fcdb", "x", first.pixels, first.boxes)) + predict(net, flipped))
    np.testing.assert_allclose(first.mos, expected, rtol=1e-4, atol=1e-4)


def test_fine_tuning_may_drop_training_only_heads_but_not_inference_ones(tmp_path):
    import torch

    from autocrop.errors import ModelError
    from autocrop.model.config import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.train.trainer import Recipe, Trainer

    torch.manual_seed(0)
    source = ViewRankingNet(ModelConfig(splitter=True, spatial=True, pairwise=True)).state_dict()
    trainer = Trainer(ModelConfig(splitter=True, spatial=True, pairwise=False), Recipe(), [], [], tmp_path, init_state=source)
    assert trainer.net.pair_classifier is None
    for key, value in trainer.net.state_dict().items():  # every kept weight comes from the source model
        assert torch.equal(value, source[key]), key
    with pytest.raises(ModelError, match="does not match"):  # the spatial-aware feature is used at inference
        Trainer(ModelConfig(splitter=True, spatial=False, pairwise=True), Recipe(), [], [], tmp_path, init_state=source)
