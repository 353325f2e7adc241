"""The Python API (autocrop.Cropper), the engine's reuse hooks, light imports and the example photo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autocrop import Crop, Cropper, CropResult, imageio
from autocrop.engine import Engine, OutputOptions, parse_ratio, parse_ratios
from autocrop.errors import InputError


@pytest.fixture(scope="module")
def cropper(model_file: Path) -> Cropper:
    return Cropper(model=model_file)


def test_crop_returns_typed_results_and_writes(tmp_path: Path, gaicd_images: list[Path], cropper: Cropper) -> None:
    result = cropper.crop(gaicd_images[0], ratio="16:9", top=3, out=tmp_path / "o")
    assert isinstance(result, CropResult) and len(result.crops) == 3
    assert all(isinstance(c, Crop) for c in result.crops)
    assert [c.rank for c in result.crops] == [1, 2, 3]
    for crop in result.crops:
        x1, y1, x2, y2 = crop.box
        assert all(isinstance(v, int) for v in crop.box)
        assert (crop.width, crop.height) == (x2 - x1, y2 - y1) and crop.width * 9 == crop.height * 16
        assert crop.box_norm == pytest.approx((x1 / result.width, y1 / result.height, x2 / result.width,
                                               y2 / result.height))
        assert crop.path is not None and crop.path.is_file() and crop.path.parent == tmp_path / "o"
        assert isinstance(crop.score, float)
    assert result.timings.keys() >= {"decode", "candidates", "score", "select", "render"}


def test_crop_without_writing_and_render(tmp_path: Path, gaicd_images: list[Path], cropper: Cropper) -> None:
    photo = Path(tmp_path / "p.jpg")
    photo.write_bytes(gaicd_images[1].read_bytes())
    result = cropper.crop(photo, ratio=["1:1", "original"], top=2, write=False)
    assert [p.name for p in tmp_path.iterdir()] == ["p.jpg"]
    assert [c.ratio for c in result.crops] == ["1:1", "1:1", "original", "original"]
    assert result.crops[0].path == tmp_path / "p.1x1.crop1.jpg"  # planned, not written
    images = cropper.render(result)
    assert [im.size for im in images] == [(c.width, c.height) for c in result.crops]
    resized = cropper.render(result, size=(64, 64))
    assert all(im.size == (64, 64) for im in resized)
    free = cropper.crop(photo, top=1, write=False)
    assert free.crops[0].ratio == "free" and free.candidates > 50


def test_score_scores_exactly_the_given_boxes(gaicd_images: list[Path], cropper: Cropper) -> None:
    photo = gaicd_images[2]
    with Image.open(photo) as im:
        width, height = im.size
    boxes = np.array([[0, 0, width, height], [10.5, 20.25, width * 0.7, height * 0.8],
                      [width * 0.3, 0, width, height * 0.6]])
    scores = cropper.score(photo, boxes)
    assert scores.dtype == np.float32 and scores.shape == (3,)
    decoded = imageio.load_reduced(photo, cropper.engine.scorer.input_short_side)
    expected = cropper.engine.scorer.score(decoded.image, (boxes / decoded.scale).astype(np.float32))
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # one pass for all boxes: the order of boxes does not change a box's score
    np.testing.assert_allclose(cropper.score(photo, boxes[::-1])[::-1], scores, rtol=1e-5, atol=1e-6)
    assert cropper.score(photo, boxes[:1].tolist())[0] == pytest.approx(scores[0], rel=1e-5, abs=1e-6)


def test_score_boxes_are_in_oriented_pixels(tmp_path: Path, gaicd_images: list[Path], cropper: Cropper) -> None:
    """The same photo stored upright and stored sideways with EXIF orientation 6 scores the same."""
    import piexif

    with Image.open(gaicd_images[0]) as im:
        upright = im.convert("RGB")
    plain = tmp_path / "upright.png"
    upright.save(plain)
    sideways = tmp_path / "sideways.png"
    upright.transpose(Image.Transpose.ROTATE_90).save(
        sideways, exif=piexif.dump({"0th": {piexif.ImageIFD.Orientation: 6}}))
    w, h = upright.size
    boxes = np.array([[0, 0, w // 2, h], [w // 4, h // 4, w, h], [0, 0, w, h]], dtype=float)
    np.testing.assert_allclose(cropper.score(sideways, boxes), cropper.score(plain, boxes), rtol=1e-5, atol=1e-6)
    assert cropper.score(upright, boxes) == pytest.approx(cropper.score(plain, boxes), rel=1e-5, abs=1e-6)


def test_score_rejects_bad_boxes(gaicd_images: list[Path], cropper: Cropper) -> None:
    photo = gaicd_images[0]
    with Image.open(photo) as im:
        width, height = im.size
    with pytest.raises(InputError, match="outside"):
        cropper.score(photo, [[0, 0, width + 50, height]])
    with pytest.raises(InputError, match="empty"):
        cropper.score(photo, [[100, 100, 100, 200]])
    with pytest.raises(InputError, match="shape"):
        cropper.score(photo, [[1, 2, 3]])
    with pytest.raises(InputError, match="NaN"):
        cropper.score(photo, [[0, 0, float("nan"), 10]])
    assert cropper.score(photo, np.zeros((0, 4))).shape == (0,)
    # overshoot of up to 1 px is clipped, not refused
    assert cropper.score(photo, [[-0.5, 0, width + 0.5, height]]).shape == (1,)


def test_engine_hooks_for_batch(tmp_path: Path, gaicd_images: list[Path], fake_scorer) -> None:  # noqa: ANN001
    engine = Engine(scorer=fake_scorer)
    decoded = engine.decode(gaicd_images[0])
    result = engine.analyze_decoded(decoded, parse_ratios(["4:3"]), 2)
    (size, boxes), = fake_scorer.calls  # one forward pass, on the reduced image
    assert size == decoded.image.size and len(boxes) == result.candidates
    assert max(boxes[:, 2]) <= decoded.image.width + 1e-3
    same = engine.analyze(gaicd_images[0], ["4:3"], 2)
    assert [c.box for c in same.crops] == [c.box for c in result.crops]
    paths = engine.write(result, OutputOptions(out_dir=tmp_path))
    assert [p.name for p in paths] == [f"{gaicd_images[0].stem}.crop{r}.jpg" for r in (1, 2)]
    assert all(p.is_file() for p in paths)
    # brightest, most central crop wins with the fake scorer: check the choice really follows the scores
    best = result.crops[0]
    assert best.score == max(c.score for c in result.crops)
    planned = engine.run(gaicd_images[0], "16:9,1:1", 1, OutputOptions(out_dir=tmp_path / "new"), dry_run=True)
    assert [c.path.name for c in planned.crops] == [f"{gaicd_images[0].stem}.16x9.crop1.jpg",
                                                    f"{gaicd_images[0].stem}.1x1.crop1.jpg"]
    assert not (tmp_path / "new").exists()


def test_engine_refines_the_chosen_views_and_can_be_told_not_to(gaicd_images: list[Path], fake_scorer) -> None:  # noqa: ANN001
    from autocrop.candidates import refine_boxes

    grid = Cropper(scorer=fake_scorer, refine=False).engine
    refined = Engine(scorer=fake_scorer)
    for ratios in (["free"], ["16:9", "4:5"]):
        raw = grid.analyze(gaicd_images[1], ratios, 3)
        new = refined.analyze(gaicd_images[1], ratios, 3)
        assert [c.score for c in raw.crops] == [c.score for c in new.crops]  # same views chosen
        width, height = new.width, new.height
        boxes, groups = grid.candidates(width, height, parse_ratios(ratios))
        assert all(list(c.box) in boxes.tolist() for c in raw.crops)  # unrefined: candidates themselves
        for crop in new.crops:
            x1, y1, x2, y2 = crop.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            if crop.ratio != "free":
                a, b = (int(v) for v in crop.ratio.split(":"))
                assert (x2 - x1) * b == (y2 - y1) * a
    # the best free crop is refine_boxes' mean around the best candidate, rounded to pixels
    boxes, _ = grid.candidates(width, height, parse_ratios(["free"]))
    decoded = grid.decode(gaicd_images[1])
    scores = fake_scorer.score(decoded.image, boxes.astype(np.float32) / np.float32(decoded.scale))
    expected = np.round(refine_boxes(boxes, scores, np.array([int(np.argmax(scores))]))[0])
    assert np.abs(np.array(refined.analyze(gaicd_images[1], None, 1).crops[0].box) - expected).max() <= 1


def test_refinement_never_makes_the_crops_less_distinct(fake_scorer) -> None:  # noqa: ANN001
    # chosen A and B (IoU 0.43); C pulls A towards B, so refined A would overlap B more than the bound
    boxes = np.array([[0, 0, 100, 100], [40, 0, 140, 100], [20, 0, 120, 100], [0, 300, 100, 400]], dtype=float)
    scores = np.array([1.0, 0.9, 1.0, -5.0])
    chosen = np.array([0, 1])
    engine = Engine(scorer=fake_scorer, iou_threshold=0.3)
    final = engine.final_boxes(boxes, scores, chosen, 200, 400, None)
    np.testing.assert_array_equal(final, boxes[chosen])
    # alone, A is refined to the mean of A and C
    np.testing.assert_array_equal(engine.final_boxes(boxes, scores, chosen[:1], 200, 400, None), [[10, 0, 110, 100]])


def test_parse_ratio() -> None:
    assert parse_ratio("16:9").label == "16:9"
    assert parse_ratio("32x18").label == "16:9"
    assert parse_ratio("1.91:1").label == "191:100"
    assert parse_ratio("original").kind == "original"
    assert parse_ratios(None)[0].kind == "free"
    assert [s.label for s in parse_ratios(["16:9,1:1", "16:9"])] == ["16:9", "1:1"]
    for bad in ("16:0", "abc", "-1:2", "0:3", "1:-2", "100:1", ""):
        with pytest.raises(InputError, match="--ratio"):
            parse_ratio(bad)


def test_import_is_light() -> None:
    code = ("import sys, autocrop, autocrop.api, autocrop.engine, autocrop.config, autocrop.cli; "
            "from autocrop import Cropper; assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_example_photo(tmp_path: Path, cropper: Cropper) -> None:
    from autocrop.examples import example_photo

    photo = example_photo()
    assert photo.name == "coffee.jpg" and (photo.parent / "ATTRIBUTION.md").is_file()
    result = cropper.crop(photo, ratio="1:1", top=2, out=tmp_path)
    assert len(result.crops) == 2 and all(c.width == c.height for c in result.crops)
    assert all(c.path is not None and c.path.parent == tmp_path for c in result.crops)
