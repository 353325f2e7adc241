"""The set-prediction model (autocrop.model.set_*): config checks, network shapes and box validity,
the scorer's proposals / scores / diverse top-k, and weight files (strict load, card + sha256)."""

import json
from pathlib import Path

import numpy as np
import pytest


def _net(seed: int = 0, **sizes):
    import torch

    from autocrop.model.set_config import SetModelConfig
    from autocrop.model.set_net import SetCropNet

    torch.manual_seed(seed)
    return SetCropNet(SetModelConfig(**sizes)).eval()


def test_config_round_trips_and_every_field_is_checked():
    from autocrop.model.set_config import SetModelConfig

    config = SetModelConfig(queries=8, layers=2)
    assert SetModelConfig.from_dict(json.loads(config.to_json())) == config
    for bad, word in [({"queries": 0}, "queries"), ({"queries": True}, "queries"), ({"d_model": "big"}, "d_model"),
                      ({"dropout": 1.5}, "dropout"), ({"nope": 1}, "unknown"), ({"d_model": 130}, "multiple"),
                      ({"max_long_side": 100}, "max_long_side")]:
        with pytest.raises(ValueError, match=word):
            SetModelConfig.from_dict(bad)
    with pytest.raises(ValueError, match="not an object"):
        SetModelConfig.from_dict([1])


def test_boxes_are_normalised_ordered_and_shapes_generic():
    import torch

    net = _net(queries=6, layers=2)
    for height, width in [(256, 384), (256, 256), (512, 256), (97, 301)]:
        with torch.inference_mode():
            boxes, logits = net(torch.randn(2, 3, height, width))
        assert boxes.shape == (2, 6, 4) and logits.shape == (2, 6)
        assert (boxes >= 0).all() and (boxes <= 1).all()
        assert (boxes[..., 2] > boxes[..., 0]).all() and (boxes[..., 3] > boxes[..., 1]).all()


def test_extreme_box_logits_keep_boxes_valid():
    import torch

    from autocrop.model.set_net import boxes_to_params, params_to_boxes

    params = torch.tensor([[50.0, -50.0, -50.0, 50.0], [-80.0, 80.0, 80.0, -80.0], [0.0, 0.0, 0.0, 0.0]])
    boxes = params_to_boxes(params, 0.05)
    assert (boxes[:, 2] - boxes[:, 0] >= 0.05 - 1e-6).all() and (boxes[:, 3] - boxes[:, 1] >= 0.05 - 1e-6).all()
    assert (boxes >= 0).all() and (boxes <= 1).all()
    wanted = torch.tensor([[0.1, 0.2, 0.7, 0.9], [0.0, 0.05, 1.0, 0.5]])
    assert torch.allclose(params_to_boxes(boxes_to_params(wanted, 0.05), 0.05), wanted, atol=1e-3)


def test_decode_of_memory_is_forward():
    import torch

    net = _net(queries=5, layers=2)
    images = torch.randn(1, 3, 256, 320)
    with torch.inference_mode():
        memory = net.memory(images)
        assert memory.shape == (1, 448, 16, 20)
        direct, decoded = net(images), net.decode(memory)
    assert torch.equal(direct[0], decoded[0]) and torch.equal(direct[1], decoded[1])


def test_untrained_scorer_is_deterministic_and_leaves_the_global_rng_alone():
    import torch
    from PIL import Image

    from autocrop.model.set_scorer import SetScorer

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    one, two = SetScorer.untrained(seed=3), SetScorer.untrained(seed=3)
    assert torch.equal(before, torch.random.get_rng_state())
    image = Image.new("RGB", (300, 200), (90, 140, 30))
    boxes_a, valid_a = one.propose(image)
    boxes_b, valid_b = two.propose(image)
    np.testing.assert_array_equal(boxes_a, boxes_b)
    np.testing.assert_array_equal(valid_a, valid_b)


def test_propose_returns_pixel_boxes_sorted_by_validity_and_score_follows_the_rule():
    from PIL import Image

    from autocrop.geometry import box_iou
    from autocrop.model.set_config import SetModelConfig
    from autocrop.model.set_scorer import SetScorer

    scorer = SetScorer.untrained(seed=1, config=SetModelConfig(queries=7, layers=2))
    image = Image.new("RGB", (640, 360), (10, 200, 90))
    boxes, validity = scorer.propose(image)
    assert boxes.shape == (7, 4) and validity.shape == (7,) and boxes.dtype == validity.dtype == np.float32
    assert (np.diff(validity) <= 0).all() and ((validity > 0) & (validity < 1)).all()
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 640 + 1e-3).all() and (boxes[:, 3] <= 360 + 1e-3).all()
    asked = np.array([[0, 0, 320, 180], [100, 50, 600, 350], boxes[0]], np.float32)
    scores = scorer.score(image, asked)
    expected = (box_iou(asked, boxes) * validity[None]).max(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
    assert scores[2] == pytest.approx(max(validity[0], scores[2]))  # its own prediction: IoU 1
    assert scorer.score(image, np.zeros((0, 4))).shape == (0,)


def test_diverse_skips_overlapping_boxes():
    from autocrop.model.set_scorer import diverse

    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 9.5], [20, 20, 30, 30], [0, 0, 10, 8], [40, 0, 50, 10]], float)
    validity = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    assert diverse(boxes, validity, 3).tolist() == [0, 2, 4]
    assert diverse(boxes, validity, 3, max_iou=1.0).tolist() == [0, 1, 2]
    assert diverse(boxes, validity, 10).tolist() == [0, 2, 4]


def _saved(tmp_path: Path, half: bool = False) -> Path:
    from autocrop.model.set_weights import save_set_weights

    net = _net(queries=6, layers=2)
    path = tmp_path / "set.safetensors"
    save_set_weights(path, net.state_dict(), net.config, {"name": "test", "training_images": []}, half=half)
    return path


def test_saved_set_model_loads_strictly_and_crops_end_to_end(tmp_path):
    import torch
    from PIL import Image

    from autocrop.model.set_config import read_arch
    from autocrop.model.set_scorer import load_set_scorer

    path = _saved(tmp_path)
    assert read_arch(path) == "set"
    from autocrop.model.weights import PACKAGED_WEIGHTS

    assert read_arch(PACKAGED_WEIGHTS) == "grid"
    scorer = load_set_scorer(path)
    assert scorer.card["arch"] == "set" and scorer.config.queries == 6 and scorer.weights_path == path
    reference = _net(queries=6, layers=2)
    image = Image.new("RGB", (500, 300), (200, 30, 30))
    boxes, validity = scorer.propose(image)
    from autocrop.model.preprocess import to_input_tensor

    x, _, _ = to_input_tensor(image, reference.config.preprocess_config())
    with torch.inference_mode():
        ref_boxes, ref_logits = reference(x)
    np.testing.assert_allclose(np.sort(validity), np.sort(torch.sigmoid(ref_logits[0]).numpy()), atol=1e-5)
    assert boxes.shape == (6, 4) and np.isfinite(boxes).all()


def test_half_storage_loads_as_float32(tmp_path):
    from autocrop.model.set_scorer import load_set_scorer

    full = load_set_scorer(_saved(tmp_path))
    path = _saved(tmp_path / "half", half=True)
    assert path.stat().st_size < 0.6 * (tmp_path / "set.safetensors").stat().st_size
    half = load_set_scorer(path)
    assert all(p.dtype.is_floating_point and p.dtype.itemsize == 4 for p in half.net.parameters())
    from PIL import Image

    image = Image.new("RGB", (320, 240), (50, 60, 70))
    np.testing.assert_allclose(full.propose(image)[1], half.propose(image)[1], atol=2e-3)


def test_damaged_or_mismatched_set_files_are_one_line_model_errors(tmp_path):
    from safetensors.torch import load_file, save_file

    from autocrop.errors import ModelError
    from autocrop.model.card import card_path_for
    from autocrop.model.set_config import read_arch
    from autocrop.model.set_scorer import load_set_scorer
    from autocrop.model.weights import PACKAGED_WEIGHTS

    path = _saved(tmp_path)
    card = json.loads(card_path_for(path).read_text())
    with pytest.raises(ModelError, match="not a set model"):
        load_set_scorer(PACKAGED_WEIGHTS)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    card_path_for(tmp_path / "bad.safetensors").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="sha256") as err:
        load_set_scorer(tmp_path / "bad.safetensors")
    assert "\n" not in str(err.value)
    (tmp_path / "nocard.safetensors").write_bytes(path.read_bytes())
    with pytest.raises(ModelError, match="card"):
        load_set_scorer(tmp_path / "nocard.safetensors")
    tensors = load_file(str(path))
    tensors.pop("head.validity.bias")
    meta = {"format": "pt", "arch": "set", "config": json.dumps(card["config"])}
    save_file(tensors, str(tmp_path / "short.safetensors"), metadata=meta)
    with pytest.raises(ModelError, match="missing head.validity.bias"):
        from autocrop.model.set_weights import load_set_weights

        load_set_weights(tmp_path / "short.safetensors", verify=False)
    save_file(tensors, str(tmp_path / "forged.safetensors"), metadata={**meta, "config": '{"queries": 0}'})
    with pytest.raises(ModelError, match="queries"):
        load_set_weights(tmp_path / "forged.safetensors", verify=False)
    save_file(tensors, str(tmp_path / "odd.safetensors"), metadata={**meta, "arch": "blob"})
    with pytest.raises(ModelError, match="unknown model family"):
        read_arch(tmp_path / "odd.safetensors")


def test_box_voting_averages_overlapping_predictions_by_validity():
    import torch

    from autocrop.model.set_net import box_vote

    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.45], [0.6, 0.6, 1.0, 1.0]]])
    logits = torch.logit(torch.tensor([[0.8, 0.4, 0.3]]))
    voted = box_vote(boxes, logits, 0.7)
    w = torch.tensor([0.64, 0.16])
    expected = (boxes[0, :2] * w[:, None]).sum(0) / w.sum()
    assert torch.allclose(voted[0, 0], expected) and torch.allclose(voted[0, 1], expected)
    assert torch.equal(voted[0, 2], boxes[0, 2])  # a lone box stays
    assert torch.equal(box_vote(boxes, logits, 1.01)[0], boxes[0])  # nothing overlaps by more than 1


def test_a_saved_set_model_crops_end_to_end_through_the_cropper(tmp_path, example_photo):
    from autocrop import Cropper

    path = _saved(tmp_path)
    result = Cropper(model=path, runtime="torch").analyze(example_photo, top=3)
    assert 1 <= len(result.crops) <= 3
    for crop in result.crops:
        x1, y1, x2, y2 = crop.box
        assert 0 <= x1 < x2 and 0 <= y1 < y2


def test_packaged_set_model_loads_strictly_and_lists_inherited_training_images():
    from autocrop.model.card import read_card
    from autocrop.model.set_scorer import load_set_scorer
    from autocrop.model.set_weights import PACKAGED_SET_WEIGHTS
    from autocrop.model.weights import PACKAGED_WEIGHTS

    if not PACKAGED_SET_WEIGHTS.is_file():
        pytest.skip("no packaged set model")
    scorer = load_set_scorer(PACKAGED_SET_WEIGHTS)
    card = scorer.card
    assert card["arch"] == "set" and card["packaged_from"]["storage"] == "float16"
    assert all(p.dtype.itemsize == 4 for p in scorer.net.parameters())
    trained = {(r["dataset"], r["name"]) for r in card["training_images"]}
    grid = {(r["dataset"], r["name"]) for r in read_card(PACKAGED_WEIGHTS)["training_images"]}
    assert grid <= trained  # the frozen backbone's images are inherited
    assert sum(1 for d, _ in trained if d == "gaicd") == 100
    validation = {r["name"] for r in card["validation_images"]}
    assert not validation & {n for d, n in trained if d == "fcdb"}
