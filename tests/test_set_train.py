"""Set-model training (autocrop.train.set_*): Hungarian matching, GIoU, both validity smoothing schemes,
a training step lowers the loss, exact resume, and ``autocrop train --arch set`` (one-line errors; a short
run on real FCDB train photos, marked ``data``)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch


def test_giou_on_hand_made_boxes():
    from autocrop.train.set_matching import paired_giou, pairwise_giou, pairwise_iou

    a = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.25, 0.0, 0.75, 0.5]])
    giou = pairwise_giou(a, b)
    assert giou[0, 0] == pytest.approx(1.0)
    assert giou[0, 1] == pytest.approx(0.0 - (1.0 - 0.5) / 1.0)  # disjoint: IoU 0, hull 1, union 0.5
    assert giou[0, 2] == pytest.approx(1 / 3 - (0.375 - 0.375) / 0.375)  # hull = union
    assert pairwise_iou(a, b)[1, 1] == pytest.approx(0.25)
    assert torch.allclose(paired_giou(a, b[:2]), torch.diagonal(giou[:, :2]))


def test_matching_finds_the_permutation_and_costs_add_up():
    from autocrop.train.set_matching import MatchWeights, hungarian, match, match_cost

    targets = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9], [0.0, 0.3, 1.0, 0.7]])
    predictions = torch.stack([targets[2], torch.tensor([0.3, 0.3, 0.4, 0.4]), targets[0] + 0.01, targets[1] - 0.02])
    logits = torch.zeros(4)
    pred, tgt = match(predictions, logits, targets)
    assert dict(zip(pred.tolist(), tgt.tolist())) == {0: 2, 2: 0, 3: 1}  # query 1 is left unmatched
    cost = match_cost(predictions, logits, targets, MatchWeights(l1=5, giou=2, validity=1))
    assert cost[0, 2] == pytest.approx(0.0 + 0.0 - 0.5)  # same box: L1 0, 1 - GIoU 0, -p = -0.5
    inter, union, hull = 0.39 * 0.39, 2 * 0.16 - 0.39 * 0.39, 0.41 * 0.41  # a 0.4 box shifted by 0.01
    giou = inter / union - (hull - union) / hull
    assert cost[2, 0].item() == pytest.approx(5 * 0.04 + 2 * (1 - giou) - 0.5, rel=1e-4)
    confident = torch.tensor([0.0, 10.0, 0.0, 0.0])  # validity lowers the cost of query 1 everywhere
    assert (match_cost(predictions, confident, targets)[1] < cost[1]).all()
    rows, cols = hungarian(np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]))
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0), (2, 2)]  # total 5, not the greedy 0+... = 7
    assert hungarian(np.zeros((3, 0)))[0].size == 0


def test_quality_guided_smoothing_on_a_tiny_example():
    from autocrop.train.set_targets import good_crops, mos_quality, ramp, smoothed_targets

    quality = mos_quality(np.array([2.0, 4.0, 3.0, 4.0]))
    assert quality.tolist() == [0.0, 1.0, 0.5, 1.0]
    assert good_crops(quality, top=4, min_quality=0.75).tolist() == [1, 3]
    assert good_crops(np.array([0.1, 0.2]), min_quality=0.9).tolist() == [1]  # always the best one
    annotated = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 1.0]])
    ann_quality = torch.tensor([0.6, 1.0])
    preds = torch.tensor([[0.0, 0.0, 1.0, 1.0],    # matched below -> its target's quality
                          [0.0, 0.0, 1.0, 0.9],    # IoU 0.9 with crop 0 -> 0.6 * ramp(0.9) = 0.6 * 0.8
                          [0.0, 0.0, 0.45, 1.0],   # IoU 0.9 with crop 1 -> 1.0 * 0.8; IoU 0.45 with crop 0 -> 0
                          [0.8, 0.8, 1.0, 1.0]])   # far from everything -> 0
    targets = smoothed_targets(preds, np.array([0]), torch.tensor([0.6]), annotated, ann_quality)
    assert targets.tolist() == pytest.approx([0.6, 0.48, 0.8, 0.0], abs=1e-5)
    assert smoothed_targets(preds, np.array([2]), torch.tensor([1.0])).tolist() == [0, 0, 1, 0]  # no smoothing
    assert ramp(torch.tensor([0.2, 0.5, 0.75, 1.0])).tolist() == [0.0, 0.0, 0.5, 1.0]


def test_self_distillation_smoothing_uses_the_first_round_validity():
    from autocrop.train.set_losses import LossWeights, PhotoTargets, photo_loss
    from autocrop.train.set_targets import smoothed_targets

    first_boxes = torch.tensor([[0.1, 0.1, 0.9, 0.9], [0.0, 0.0, 0.3, 0.3]])
    first_validity = torch.tensor([0.7, 0.2])
    student = torch.tensor([[0.1, 0.1, 0.9, 0.9], [0.1, 0.1, 0.9, 0.85], [0.0, 0.0, 0.3, 0.3], [0.6, 0.6, 1, 1]])
    targets = smoothed_targets(student, np.array([0]), torch.tensor([1.0]), first_boxes, first_validity)
    iou = (0.8 * 0.75) / 0.64
    assert targets.tolist() == pytest.approx([1.0, 0.7 * (iou - 0.5) / 0.5, 0.2, 0.0], abs=1e-5)
    # the loss sees the same targets: BCE of logits 0 against them
    target = PhotoTargets(torch.tensor([[0.1, 0.1, 0.9, 0.9]]), torch.tensor([1.0]), first_boxes, first_validity)
    parts = photo_loss(student, torch.tensor([5.0, 0.0, 0.0, 0.0]), target, LossWeights())
    assert parts["l1"].item() == pytest.approx(0.0) and parts["giou"].item() == pytest.approx(0.0, abs=1e-6)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([5.0, 0, 0, 0]), targets)
    assert parts["validity"].item() == pytest.approx(expected.item(), rel=1e-5)


def _photos(count: int, seed: int = 0, train: bool = True):
    from autocrop.train.set_features import CachedPhoto

    rng = np.random.default_rng(seed)
    photos = []
    for i in range(count):
        memory = torch.from_numpy(rng.standard_normal((448, 4, 6)).astype(np.float16))
        x1, y1 = rng.uniform(0, 0.3, 2)
        box = np.array([[x1, y1, x1 + 0.6, y1 + 0.6]], np.float32)
        teacher = np.array([[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]], np.float32)
        photos.append(CachedPhoto("fcdb", f"p{i}.jpg", memory, memory.flip(-1) if train else None, box,
                                  np.ones(1, np.float32), teacher, np.array([0.5, 0.1], np.float32), (600, 400),
                                  train))
    return photos


def _trainer(out: Path, epochs: int = 2):
    from autocrop.model.set_config import SetModelConfig
    from autocrop.model.set_net import SetCropNet
    from autocrop.train.set_trainer import SetRecipe, SetTrainer

    config = SetModelConfig(queries=6, d_model=32, layers=2, heads=2, ffn_dim=32)
    state = SetCropNet(config).state_dict()
    backbone = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    recipe = SetRecipe(epochs=epochs, batch_size=4, lr=1e-3)
    return SetTrainer(config, recipe, _photos(8), _photos(3, seed=1, train=False), out, backbone)


def test_a_training_step_lowers_the_loss(tmp_path):
    trainer = _trainer(tmp_path)
    batch = trainer.batches(0)[0]
    trainer.net.head.eval()  # no dropout: the same batch gives the same loss
    before, _ = trainer.step_loss(batch)
    for _ in range(5):
        loss, _ = trainer.step_loss(batch)
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    after, parts = trainer.step_loss(batch)
    assert after.item() < before.item() and set(parts) == {"l1", "giou", "validity"}


def test_photo_targets_add_far_teacher_views_and_mirror():
    from autocrop.train.set_trainer import SetRecipe, photo_targets

    photo = _photos(1)[0]
    photo.boxes = np.array([[0.0, 0.0, 0.5, 0.9]], np.float32)  # teacher view 0 overlaps it by IoU 0.9 > 0.7
    targets = photo_targets(photo, SetRecipe(teacher_crops=2, teacher_top_quality=0.8), flipped=False)
    np.testing.assert_allclose(targets.boxes.numpy(), [[0.0, 0.0, 0.5, 0.9], [0.5, 0.0, 1.0, 1.0]])
    assert targets.quality.tolist() == pytest.approx([1.0, 0.8 * np.exp(-0.4)])
    mirrored = photo_targets(photo, SetRecipe(teacher_crops=0), flipped=True)
    np.testing.assert_allclose(mirrored.boxes.numpy(), [[0.5, 0.0, 1.0, 0.9]])


def test_interrupted_set_training_resumes_exactly(tmp_path):
    straight = _trainer(tmp_path / "a")
    straight.fit({"name": "t"})
    first = _trainer(tmp_path / "b", epochs=2)
    first.recipe = type(first.recipe)(**{**first.recipe.__dict__, "epochs": 2})
    first.train_epoch(0)  # an interrupted run: one epoch and its checkpoint
    from autocrop.train.checkpoint import save_checkpoint

    save_checkpoint(first.last_checkpoint, first.net.head, first.optimizer,
                    {"epoch": 0, "best": -1e9, "history": []})
    resumed = _trainer(tmp_path / "b")
    assert resumed.resume() and resumed.start_epoch == 1
    resumed.fit({"name": "t"})
    for (key, a), b in zip(straight.net.head.state_dict().items(), resumed.net.head.state_dict().values()):
        assert torch.equal(a, b), key
    card = json.loads((tmp_path / "a" / "best.json").read_text())
    assert card["arch"] == "set" and set(card["validation"]) == {"iou", "disp", "top3_iou"}


def test_kmeans_anchors_are_deterministic():
    from autocrop.train.set_trainer import kmeans_anchors

    boxes = np.random.default_rng(0).uniform(0, 1, (50, 4))
    np.testing.assert_array_equal(kmeans_anchors(boxes, 5, seed=2), kmeans_anchors(boxes, 5, seed=2))
    assert kmeans_anchors(boxes, 5).shape == (5, 4)


def test_train_arch_errors_are_one_line(tmp_path, cli):
    code, _, err = cli(["train", "--arch", "cube", "--data", "fcdb", "--out", tmp_path / "o"])
    assert code != 0 and "--arch 'cube'" in err and "Traceback" not in err
    code, _, err = cli(["train", "--arch", "set", "--data", str(tmp_path), "--out", tmp_path / "o2"])
    assert code != 0 and "fcdb and/or gaicd" in err and "Traceback" not in err


@pytest.mark.data
def test_train_set_command_on_real_fcdb_photos(tmp_path, data_dir, cli):
    from autocrop.model.set_scorer import load_set_scorer

    fcdb = data_dir / "FCDB"
    if not fcdb.is_dir():
        pytest.skip(f"FCDB not found at {fcdb}")
    out = tmp_path / "run"
    code, _, err = cli(["train", "--arch", "set", "--data", "fcdb", "--data-dir", fcdb, "--out", out,
                        "--limit", "12", "--epochs", "2", "--threads", "1", "--batch-size", "4"])
    assert code == 0, err
    scorer = load_set_scorer(out / "best.safetensors")
    card = scorer.card
    names = {(r["dataset"], r["name"]) for r in card["training_images"]}
    assert sum(1 for d, _ in names if d == "gaicd") == 100  # inherited from the packaged backbone
    assert card["backbone"]["frozen"] and card["validation_images"]
    assert len(list((out / "features").glob("*.safetensors"))) == 12
    from PIL import Image

    boxes, validity = scorer.propose(Image.open(sorted((fcdb / "data").glob("*.jpg"))[0]))
    assert boxes.shape == (scorer.config.queries, 4) and (np.diff(validity) <= 0).all()
