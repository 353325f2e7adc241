"""Model: backbone layout, scorer API, weight files (safetensors + card + sha256), model and device resolution."""

import json
import sys

import numpy as np
import pytest
from PIL import Image

from autocrop.errors import ModelError, UsageError
from autocrop.model import ModelConfig, ViewScorer, load_scorer, peek_input_short_side, resolve_device, resolve_weights
from autocrop.model.weights import PACKAGED_WEIGHTS, save_weights


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (300, 450, 3), dtype=np.uint8))


@pytest.mark.data
def test_imagenet_weights_load_strictly_into_backbone(data_dir):
    import torch

    from autocrop.model.backbone import load_imagenet_features
    from autocrop.model.network import ViewRankingNet, load_backbone_weights

    imagenet = data_dir / "weights" / "mobilenet_v2-b0353104.pth"
    if not imagenet.is_file():
        pytest.skip(f"ImageNet weights not found at {imagenet}")
    features = load_imagenet_features(imagenet)
    net = ViewRankingNet(ModelConfig())
    load_backbone_weights(net, features)
    assert torch.equal(net.features[0][0].weight, features[0][0].weight)


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(splitter=True, spatial=True, pairwise=True)])
def test_scorer_scores_each_box_and_is_order_independent(photo, config):
    scorer = ViewScorer.untrained(config=config)
    boxes = np.asarray([[0, 0, 450, 300], [50, 20, 350, 280], [100, 100, 400, 250]], np.float32)
    scores = scorer.score(photo, boxes)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    reversed_scores = scorer.score(photo, boxes[::-1])
    np.testing.assert_allclose(reversed_scores[::-1], scores, rtol=1e-5, atol=1e-6)
    assert scorer.score(photo, np.zeros((0, 4))).shape == (0,)


def test_weights_roundtrip_and_card(tmp_path, photo):
    config = ModelConfig(splitter=True, spatial=True, pairwise=True)
    import torch

    from autocrop.model.network import ViewRankingNet

    torch.manual_seed(3)
    net = ViewRankingNet(config)
    card = save_weights(tmp_path / "m.safetensors", net.state_dict(), config, {"name": "t", "training_images": []})
    scorer = ViewScorer(net, {})  # folds BatchNorm in place: save first
    assert card["config"]["spatial"] is True and len(card["sha256"]) == 64
    loaded = load_scorer(tmp_path / "m.safetensors", runtime="torch")
    assert loaded.config == config
    boxes = [[10, 10, 300, 250]]
    np.testing.assert_allclose(loaded.score(photo, boxes), scorer.score(photo, boxes), rtol=1e-5)
    on_disk = json.loads((tmp_path / "m.json").read_text())
    assert "image_learner" not in " ".join(on_disk)  # training-only heads are not shipped


def test_damaged_or_mismatched_weights_give_one_line_errors(tmp_path):
    from autocrop.model.network import ViewRankingNet

    path = tmp_path / "m.safetensors"
    save_weights(path, ViewRankingNet(ModelConfig()).state_dict(), ModelConfig(), {"name": "t"})
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256 does not match"):
        load_scorer(path)
    path.with_suffix(".json").unlink()
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_scorer(path)
    with pytest.raises(ModelError, match="not found"):
        load_scorer(tmp_path / "absent.safetensors")


def test_packaged_model_loads_offline_and_matches_card():
    from autocrop.model.weights import PACKAGED_WEIGHTS, sha256_of

    if not PACKAGED_WEIGHTS.is_file():
        pytest.skip("packaged default model not built yet")
    scorer = load_scorer()
    assert scorer.card["sha256"] == sha256_of(PACKAGED_WEIGHTS)
    assert PACKAGED_WEIGHTS.stat().st_size <= 15 * 1024 * 1024
    assert scorer.card["training_images"], "the model card must list every training image"


def test_batchnorm_folding_keeps_outputs():
    import copy

    import torch

    from autocrop.model.fuse import fold_batchnorm
    from autocrop.model.network import ViewRankingNet

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig()).eval()
    for module in net.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    fused = copy.deepcopy(net)
    fold_batchnorm(fused.features)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.features.modules())
    image, boxes = torch.randn(1, 3, 128, 192), torch.tensor([[0.0, 0.0, 192.0, 128.0], [20.0, 10.0, 150.0, 120.0]])
    with torch.no_grad():
        torch.testing.assert_close(fused(image, boxes).scores, net(image, boxes).scores, rtol=1e-4, atol=1e-5)


def test_flip_tta_averages_the_photo_and_its_mirror():
    import dataclasses

    import torch

    from autocrop.model.network import ViewRankingNet

    torch.manual_seed(0)
    config = ModelConfig(splitter=True, spatial=True, pairwise=True)
    net = ViewRankingNet(config).eval()
    image = torch.randn(1, 3, 128, 192)
    boxes = torch.tensor([[0.0, 0.0, 192.0, 128.0], [20.0, 10.0, 150.0, 120.0], [60.0, 5.0, 190.0, 100.0]])
    mirrored = torch.stack([192 - boxes[:, 2], boxes[:, 1], 192 - boxes[:, 0], boxes[:, 3]], dim=1)
    with torch.no_grad():
        plain = net.predict(image, boxes)
        torch.testing.assert_close(plain, net(image, boxes).scores)
        expected = 0.5 * (net(image, boxes).scores + net(image.flip(-1), mirrored).scores)
        net.config = dataclasses.replace(config, flip_tta=True)
        averaged = net.predict(image, boxes)
    torch.testing.assert_close(averaged, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(averaged, plain)  # the mirror really contributes


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


def test_resolve_weights_names_the_missing_file(tmp_path, monkeypatch):
    missing = tmp_path / "absent.safetensors"
    with pytest.raises(ModelError) as err:
        resolve_weights(missing)
    assert _one_line(err) == f"{missing}: model file not found"
    with pytest.raises(ModelError, match="is a folder"):
        resolve_weights(tmp_path)
    if PACKAGED_WEIGHTS.is_file():
        assert resolve_weights(None) == resolve_weights("") == PACKAGED_WEIGHTS
    from autocrop.model import resolve

    monkeypatch.setattr(resolve, "PACKAGED_WEIGHTS", missing)
    with pytest.raises(ModelError) as err:
        resolve_weights(None)
    text = _one_line(err)
    assert text.startswith(str(missing)) and "packaged default model is missing" in text and "--" not in text


def test_peek_input_short_side_reads_metadata_without_loading(tmp_path):
    from autocrop.model.network import ViewRankingNet

    config = ModelConfig(input_short_side=192, max_long_side=384)
    path = tmp_path / "m.safetensors"
    save_weights(path, ViewRankingNet(config).state_dict(), config, {"name": "t"})
    assert peek_input_short_side(path) == 192
    path.with_suffix(".json").unlink()  # the metadata alone is enough
    assert peek_input_short_side(str(path)) == 192
    assert peek_input_short_side(tmp_path / "absent.safetensors") is None
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    assert peek_input_short_side(tmp_path / "bad.safetensors") is None
    if PACKAGED_WEIGHTS.is_file():
        assert peek_input_short_side(None) == load_scorer().input_short_side


def test_peek_input_short_side_does_not_import_torch():
    import subprocess

    code = ("import sys; from autocrop.model import peek_input_short_side; peek_input_short_side(None); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("device", ["banana", "cuda:x", "gpu"])
def test_unknown_device_is_one_usage_line(device, model_file):
    with pytest.raises(UsageError) as err:
        load_scorer(model_file, device=device)
    assert _one_line(err).startswith(f"device {device!r}")


def test_unavailable_device_is_one_usage_line(model_file):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device in ("cuda", "cuda:1"):
        with pytest.raises(UsageError) as err:
            load_scorer(model_file, device=device)
        text = _one_line(err)
        assert text.startswith(f"device {device!r}: ") and "CUDA" in text and "(use cpu or auto)" in text
    if not torch.backends.mps.is_available():
        with pytest.raises(UsageError, match="device 'mps': .*Metal"):
            load_scorer(model_file, device="mps")


def test_auto_device_picks_what_is_there(model_file):
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("CPU") == "cpu"
    assert load_scorer(model_file, device="auto").device == expected


def test_state_dict_check_is_one_line_for_shape_and_key_mismatches(tmp_path):
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import load_state_checked

    small = ViewRankingNet(ModelConfig(reduced_dim=4)).state_dict()
    with pytest.raises(ModelError) as err:
        load_state_checked(ViewRankingNet(ModelConfig()), small, "m.safetensors")
    assert _one_line(err).startswith("m.safetensors: weights do not match the model config (")
    state = ViewRankingNet(ModelConfig()).state_dict()
    with pytest.raises(ModelError, match="unexpected \\['extra.weight'\\]"):
        load_state_checked(ViewRankingNet(ModelConfig()), {**state, "extra.weight": state["score_head.bias"]}, "m")
    with pytest.raises(ModelError, match="missing \\['score_head.bias'\\]"):
        partial = {k: v for k, v in state.items() if k != "score_head.bias"}
        load_state_checked(ViewRankingNet(ModelConfig()), partial, "m")
    pairwise = ViewRankingNet(ModelConfig(pairwise=True, splitter=True)).state_dict()
    load_state_checked(ViewRankingNet(ModelConfig(splitter=True)), pairwise, "m")  # training-only heads may go
