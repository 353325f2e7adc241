"""Trainer and ``autocrop train``: defaults, data folders, model soups; on real GAICD / FCDB images (marked
``data``) a short run writes a model + card, and resume is exact."""

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

IMAGENET_FILE = "mobilenet_v2-b0353104.pth"


@pytest.fixture(scope="module")
def gaicd_dir(data_dir: Path) -> Path:
    folder = data_dir / "GAICD"
    if not folder.is_dir():
        pytest.skip(f"GAICD not found at {folder} (set AUTOCROP_DATA_DIR)")
    return folder


@pytest.fixture(scope="module")
def fcdb_dir(data_dir: Path) -> Path:
    folder = data_dir / "FCDB"
    if not folder.is_dir():
        pytest.skip(f"FCDB not found at {folder} (set AUTOCROP_DATA_DIR)")
    return folder


@pytest.fixture(scope="module")
def imagenet(data_dir: Path) -> Path:
    path = data_dir / "weights" / IMAGENET_FILE
    if not path.is_file():
        pytest.skip(f"ImageNet weights not found at {path} (set AUTOCROP_DATA_DIR)")
    return path


def _trainer(out: Path, epochs: int, gaicd_dir: Path):
    import torch

    from autocrop.model.config import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.train.datasets import build_splits
    from autocrop.train.trainer import Recipe, Trainer

    config = ModelConfig(splitter=True, spatial=True, pairwise=True, spatial_size=16)
    splits = build_splits(["gaicd"], config, data_dir=gaicd_dir, folds=2, fold=0, limit=4)
    recipe = Recipe(epochs=epochs, gaicd_repeat=1, crops_per_image=16, lambda_rank_gain=3.0)
    torch.manual_seed(1)
    start = ViewRankingNet(config).state_dict()
    return Trainer(config, recipe, splits.train, splits.val, out, init_state=start), splits


def test_interrupted_training_resumes_exactly(tmp_path, mini_gaicd):
    import torch
    from safetensors.torch import load_file

    # multi-threaded CPU reductions are not bit-reproducible; exactness is checked on one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _resume_and_compare(tmp_path, load_file, mini_gaicd)
    finally:
        torch.set_num_threads(threads)


def _resume_and_compare(tmp_path, load_file, gaicd_dir):
    straight, splits = _trainer(tmp_path / "straight", 2, gaicd_dir)
    assert len(splits.train) == 2 and len(splits.val) == 2
    straight.fit({"name": "t"})
    first, _ = _trainer(tmp_path / "split", 2, gaicd_dir)
    first.recipe.epochs = 1  # run stops after epoch 1 (as if killed between epochs)...
    first.fit({"name": "t"})
    second, _ = _trainer(tmp_path / "split", 2, gaicd_dir)
    assert second.resume() and second.start_epoch == 1
    second.fit({"name": "t"})
    a = load_file(str(tmp_path / "straight" / "last.safetensors"))
    b = load_file(str(tmp_path / "split" / "last.safetensors"))
    for key in a:
        if key.startswith("model."):
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.data
def test_train_command_writes_model_and_card(tmp_path, gaicd_dir, imagenet):
    from typer.testing import CliRunner

    from autocrop.cli import app

    out = tmp_path / "run"
    args = ["train", "--data", "gaicd", "--gaicd-dir", str(gaicd_dir), "--epochs", "1", "--fold", "0",
            "--limit", "5", "--out", str(out), "--crops-per-image", "32", "--init", str(imagenet),
            "--input-short-side", "192", "--listwise-temperature", "0.25", "--threads", "2"]
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


def test_train_command_on_a_gaicd_folder_without_shared_data(tmp_path, mini_gaicd, cli):
    """Fine-tuning from a .safetensors model on a GAICD-layout folder: model + card, data folder from --gaicd-dir."""
    init = _untrained_model_file(tmp_path)
    out = tmp_path / "run"
    code, _, err = cli(["train", "--data", "gaicd", "--gaicd-dir", mini_gaicd, "--epochs", "1", "--fold", "0",
                        "--folds", "2", "--out", out, "--init", init, "--crops-per-image", "8", "--no-splitter",
                        "--no-spatial", "--no-pairwise", "--threads", "1"])
    assert code == 0, err
    card = json.loads((out / "final.json").read_text())
    assert card["datasets"] == ["gaicd"] and card["init"] == "init.safetensors"
    assert card["recipe"]["crops_per_image"] == 8 and card["recipe"]["epochs"] == 1
    assert [k for k in card][:3] == ["name", "autocrop_version", "created"]
    assert len(card["training_images"]) == 2 and {"srcc", "acc1_5"} <= set(card["validation"])
    assert card["init_model"]["sha256"] == json.loads(init.with_suffix(".json").read_text())["sha256"]


def _untrained_model_file(folder: Path) -> Path:
    import torch

    from autocrop.model.config import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    path = folder / "init.safetensors"
    save_weights(path, ViewRankingNet(ModelConfig()).state_dict(), ModelConfig(), {"name": "t"})
    return path


def test_train_command_rejects_missing_data_path(tmp_path, cli):
    init = _untrained_model_file(tmp_path)
    code, _, err = cli(["train", "--data", tmp_path / "nope", "--out", tmp_path / "o", "--init", init, "--no-splitter",
                        "--no-spatial", "--no-pairwise"])
    assert code == 2
    assert "nope: data path does not exist" in err and "Traceback" not in err


def test_train_command_without_data_root_names_the_setting(tmp_path, cli, monkeypatch):
    """An installed package (no checkout) without AUTOCROP_DATA_DIR has no default data folder: one line says so."""
    from autocrop.data import locate

    monkeypatch.delenv("AUTOCROP_DATA_DIR", raising=False)
    monkeypatch.setattr(locate, "checkout_root", lambda: None)
    init = _untrained_model_file(tmp_path)
    code, _, err = cli(["train", "--data", "gaicd", "--out", tmp_path / "o", "--init", init, "--no-splitter",
                        "--no-spatial", "--no-pairwise"])
    assert code == 2 and "AUTOCROP_DATA_DIR" in err and "--data-dir" in err and "Traceback" not in err


def test_train_defaults_are_the_packaged_recipe():
    """Every ``autocrop train`` default equals the packaged model card's recipe (and config switches)."""
    from dataclasses import asdict

    from autocrop.commands.train import train_command
    from autocrop.model.config import ModelConfig
    from autocrop.model.weights import PACKAGED_WEIGHTS, card_path_for
    from autocrop.train.recipe import Recipe

    card = json.loads(card_path_for(PACKAGED_WEIGHTS).read_text())
    recipe, config = card["recipe"], card["config"]
    assert asdict(Recipe()) == recipe
    defaults = {name: p.default for name, p in inspect.signature(train_command).parameters.items()}
    option_of = {"epochs": "epochs", "lr": "backbone_lr", "gaicd_repeat": "gaicd_repeat",
                 "rank_gain_weight": "lambda_rank_gain", "listwise_weight": "lambda_listwise",
                 "listwise_temperature": "listwise_temperature", "seed": "seed", "crops_per_image": "crops_per_image",
                 "fcdb_per_epoch": "fcdb_per_epoch", "swa_start": "swa_start", "scale_jitter": "scale_jitter"}
    for option, key in option_of.items():
        assert defaults[option] == recipe[key], option
    assert defaults["head_lr"] is None and recipe["head_lr"] == pytest.approx(5 * recipe["backbone_lr"])  # 5 x --lr
    changed = ("epochs", "gaicd_repeat", "crops_per_image", "lambda_rank_gain")  # the defaults this release changed
    assert [recipe[k] for k in changed] == [12, 1, 128, 0]
    for switch in ("splitter", "spatial", "pairwise", "flip_tta"):
        assert defaults[switch] == config[switch], switch
    assert defaults["input_short_side"] is None and ModelConfig().input_short_side == config["input_short_side"]
    assert defaults["gaicd_dir"] is None and defaults["fcdb_dir"] is None  # the CLI fills them from the config file


def test_threads_help_states_the_default():
    import typing

    from autocrop.commands.train import train_command

    help_text = typing.get_type_hints(train_command, include_extras=True)["threads"].__metadata__[0].help
    assert "default: every CPU this process may use" in help_text


def test_default_data_root_outside_a_checkout_needs_the_environment(monkeypatch, tmp_path):
    from autocrop.data import locate
    from autocrop.errors import DatasetError

    monkeypatch.delenv("AUTOCROP_DATA_DIR", raising=False)
    monkeypatch.setattr(locate, "checkout_root", lambda: None)
    with pytest.raises(DatasetError, match="AUTOCROP_DATA_DIR") as err:
        locate.default_data_root()
    assert "\n" not in str(err.value) and "--data-dir" in str(err.value)
    assert locate.find_data_root() is None
    with pytest.raises(DatasetError, match="AUTOCROP_DATA_DIR"):
        locate.resolve_data_dir("gaicd")
    assert locate.resolve_data_dir("gaicd", tmp_path) == tmp_path  # an explicit folder needs no data root
    monkeypatch.setenv("AUTOCROP_DATA_DIR", str(tmp_path))
    assert locate.default_data_root() == tmp_path


def test_default_data_root_of_a_checkout_does_not_depend_on_the_working_directory(monkeypatch, tmp_path):
    from autocrop.data import locate

    monkeypatch.delenv("AUTOCROP_DATA_DIR", raising=False)
    checkout = Path(__file__).resolve().parent.parent  # this test runs from a source checkout
    assert locate.checkout_root() == checkout
    before = locate.default_data_root()
    monkeypatch.chdir(tmp_path)
    assert locate.default_data_root() == before == checkout.parent / "shared" / "data"


def test_dataset_folders_follow_the_precedence(tmp_path, monkeypatch):
    """--data-dir (one --data) > --gaicd-dir / --fcdb-dir > the data root."""
    from autocrop.train.datasets import dataset_dir

    root, own, gaicd, fcdb = (tmp_path / n for n in ("root", "own", "gaicd", "fcdb"))
    for folder in (root / "GAICD", root / "FCDB", own, gaicd, fcdb):
        folder.mkdir(parents=True)
    monkeypatch.setenv("AUTOCROP_DATA_DIR", str(root))
    assert dataset_dir("gaicd", ["gaicd"], own, gaicd, fcdb) == own
    assert dataset_dir("gaicd", ["gaicd", "fcdb"], own, gaicd, fcdb) == gaicd  # --data-dir is for a single --data
    assert dataset_dir("fcdb", ["gaicd", "fcdb"], None, gaicd, fcdb) == fcdb
    assert dataset_dir("fcdb", ["fcdb"], None, gaicd, None) == root / "FCDB"
    assert dataset_dir("gaicd", ["gaicd"]) == root / "GAICD"


@pytest.mark.data
def test_training_samples_see_the_pixels_the_engine_scores(gaicd_dir):
    """Validation figures are those of the deployed path: same decode, resize and box scaling."""
    import torch

    from autocrop.cropper import Cropper
    from autocrop.data import load_gaicd
    from autocrop.model.config import ModelConfig
    from autocrop.model.scorer import ViewScorer
    from autocrop.train.samples import gaicd_sample
    from autocrop.train.validate import predict

    image = load_gaicd(gaicd_dir, "test")[0][0]
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


@pytest.mark.data
def test_teacher_labels_fcdb_grid_crops_in_mos_units(tmp_path, fcdb_dir):
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
    photos, _ = fcdb_train_photos(fcdb_dir)
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
    plain = predict(net, TrainSample("fcdb", "x", first.pixels, first.boxes))
    expected = 3.0 + 0.5 * 0.5 * (plain + predict(net, flipped))
    np.testing.assert_allclose(first.mos, expected, rtol=1e-4, atol=1e-4)


def test_fine_tuning_may_drop_training_only_heads_but_not_inference_ones(tmp_path):
    import torch

    from autocrop.errors import ModelError
    from autocrop.model.config import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.train.trainer import Recipe, Trainer

    torch.manual_seed(0)
    source = ViewRankingNet(ModelConfig(splitter=True, spatial=True, pairwise=True)).state_dict()
    config = ModelConfig(splitter=True, spatial=True, pairwise=False)
    trainer = Trainer(config, Recipe(), [], [], tmp_path, init_state=source)
    assert trainer.net.pair_classifier is None
    for key, value in trainer.net.state_dict().items():  # every kept weight comes from the source model
        assert torch.equal(value, source[key]), key
    # the spatial-aware feature is used at inference: it may not go
    with pytest.raises(ModelError, match="initial model: weights do not match"):
        Trainer(ModelConfig(splitter=True, spatial=False, pairwise=True), Recipe(), [], [], tmp_path, init_state=source)
