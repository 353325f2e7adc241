"""The Python API: ``Cropper`` (sources, images vs files, dry runs, scores), light imports, the example photo."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autocrop import Crop, Cropper, CropResult, CropSettings, OutputError, UsageError
from autocrop.candidates import candidate_boxes
from autocrop.geometry import box_iou
from autocrop.ratios import parse_ratios
from autocrop.select import refine_boxes


@pytest.fixture(scope="module")
def cropper(model_file: Path) -> Cropper:
    return Cropper(model=model_file)


def test_crop_returns_images_and_writes_nothing_by_default(photos: list[Path], cropper: Cropper) -> None:
    before = sorted(p.name for p in photos[0].parent.iterdir())
    result = cropper.crop(photos[1], ratio="16:9", top=3)
    assert sorted(p.name for p in photos[0].parent.iterdir()) == before, "nothing written"
    assert isinstance(result, CropResult) and len(result.crops) == 3
    assert all(isinstance(c, Crop) for c in result.crops) and [c.rank for c in result.crops] == [1, 2, 3]
    with Image.open(photos[1]) as im:
        full = im.convert("RGB")
    for crop in result.crops:
        x1, y1, x2, y2 = crop.box
        assert all(isinstance(v, int) for v in crop.box) and crop.path is None
        assert (crop.width, crop.height) == (x2 - x1, y2 - y1) and crop.width * 9 == crop.height * 16
        assert crop.box_norm == pytest.approx((x1 / result.width, y1 / result.height, x2 / result.width,
                                               y2 / result.height))
        assert crop.image is not None and crop.image.size == (crop.width, crop.height)
        diff = np.abs(np.asarray(crop.image.convert("RGB"), np.int16) - np.asarray(full.crop(crop.box), np.int16))
        assert diff.max() == 0, "the image is exactly that region of the photo"
    assert result.timings.keys() >= {"decode", "candidates", "score", "select"}


def test_crop_writes_when_asked(tmp_path: Path, photos: list[Path], cropper: Cropper) -> None:
    result = cropper.crop(photos[0], ratio="1:1", top=2, out=tmp_path / "o", preview=True)
    assert [p.name for p in result.paths] == ["coffee.crop1.jpg", "coffee.crop2.jpg"]
    assert all(p.is_file() for p in result.paths) and result.preview == tmp_path / "o" / "coffee.preview.png"
    assert result.preview.is_file() and "write" in result.timings
    beside = cropper.crop(photos[0], write=True)
    assert beside.paths == [photos[0].with_name("coffee.crop1.jpg")] and beside.paths[0].is_file()
    with pytest.raises(OutputError, match="already exists") as info:
        cropper.crop(photos[0], write=True)
    assert info.value.errno is None and info.value.path == beside.paths[0]
    with pytest.raises(OutputError, match="is an input photo"):
        cropper.crop(photos[0], name="{stem}", out=photos[0].parent, overwrite=True)


def test_dry_run_plans_and_marks_existing_files(tmp_path: Path, photos: list[Path], cropper: Cropper) -> None:
    (tmp_path / "coffee.1x1.crop1.jpg").write_bytes(b"user's file")
    result = cropper.crop(photos[0], ratio=["1:1", "original"], top=2, out=tmp_path, dry_run=True)
    assert [c.ratio for c in result.crops] == ["1:1", "1:1", "original", "original"]
    assert [c.path.name for c in result.crops if c.path] == ["coffee.1x1.crop1.jpg", "coffee.1x1.crop2.jpg",
                                                              "coffee.original.crop1.jpg", "coffee.original.crop2.jpg"]
    assert [c.exists for c in result.crops] == [True, False, False, False]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coffee.1x1.crop1.jpg", "in"]
    assert (tmp_path / "coffee.1x1.crop1.jpg").read_bytes() == b"user's file"


def test_every_kind_of_source_gives_the_same_crops(photos: list[Path], cropper: Cropper) -> None:
    path = photos[2]
    by_path = cropper.crop(path, ratio="4:5", images=False)
    data = path.read_bytes()
    by_bytes = cropper.crop(data, ratio="4:5", images=False)
    with open(path, "rb") as fh:
        by_file = cropper.crop(fh, ratio="4:5", images=False)
    assert [c.box for c in by_bytes.crops] == [c.box for c in by_path.crops] == [c.box for c in by_file.crops]
    assert by_bytes.source == "<bytes>" and by_file.source == str(path)
    with Image.open(io.BytesIO(data)) as im:
        pil = im.convert("RGB")
    by_pil = cropper.crop(pil, ratio="4:5")
    by_array = cropper.crop(np.asarray(pil), ratio="4:5")
    assert [c.box for c in by_pil.crops] == [c.box for c in by_array.crops]
    assert by_pil.crops[0].image is not None and by_pil.crops[0].image.size == (by_pil.crops[0].width,
                                                                               by_pil.crops[0].height)
    with pytest.raises(UsageError, match="need an output folder"):
        cropper.crop(data, write=True)
    with pytest.raises(Exception, match="not a photo"):
        cropper.crop(12345)


def test_size_long_edge_and_render(photos: list[Path], cropper: Cropper) -> None:
    small = cropper.crop(photos[0], size="64x36")
    assert [c.image.size for c in small.crops if c.image] == [(64, 36)] and small.crops[0].ratio == "16:9"
    never_up = cropper.crop(photos[0], size=(3200, 1800))
    assert never_up.crops[0].width < 3200 and never_up.crops[0].image.size == (never_up.crops[0].width,
                                                                               never_up.crops[0].height)
    edge = cropper.crop(photos[1], ratio="free", long_edge=200)
    assert max(edge.crops[0].image.size) == 200
    rendered = cropper.render(cropper.crop(photos[1], ratio="3:2", top=2, images=False), long_edge=120)
    assert [max(im.size) for im in rendered] == [120, 120]


def test_settings_objects_and_defaults(photos: list[Path], model_file: Path) -> None:
    settings = CropSettings.build(ratio="1:1", top=2, quality=80)
    plain = Cropper(model=model_file, settings=settings)
    result = plain.crop(photos[0])
    assert [c.ratio for c in result.crops] == ["1:1", "1:1"]
    assert plain.crop(photos[0], top=1).crops == result.crops[:1]
    with pytest.raises(UsageError, match="unknown setting"):
        plain.crop(photos[0], colour="red")
    with pytest.raises(UsageError, match="device 'banana'"):
        Cropper(device="banana")


def test_score_scores_exactly_the_given_boxes(photos: list[Path], cropper: Cropper) -> None:
    photo = photos[1]
    with Image.open(photo) as im:
        width, height = im.size
    boxes = np.array([[0, 0, width, height], [10.5, 20.25, width * 0.7, height * 0.8],
                      [width * 0.3, 0, width, height * 0.6]])
    scores = cropper.score(photo, boxes)
    assert scores.shape == (3,) and scores.dtype == np.float32
    one_by_one = np.array([cropper.score(photo, box[None])[0] for box in boxes])
    np.testing.assert_allclose(scores, one_by_one, rtol=1e-4, atol=1e-4)
    # overshoot of up to 1 px is clipped, not refused
    assert cropper.score(photo, [[-0.5, 0, width + 0.5, height]]).shape == (1,)
    for bad, fragment in (([[0, 0, width + 5, height]], "outside"), ([[10, 10, 10, 20]], "empty"),
                          ([[0, 0, np.nan, 5]], "NaN"), ([[1, 2, 3]], "shape")):
        with pytest.raises(UsageError, match=fragment):
            cropper.score(photo, bad)


def test_score_boxes_are_in_oriented_pixels(tmp_path: Path, photos: list[Path], cropper: Cropper) -> None:
    with Image.open(photos[1]) as im:
        upright = im.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = tmp_path / "rotated.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(rotated, quality=95, exif=exif)
    box = [[50, 40, 600, 500]]
    np.testing.assert_allclose(cropper.score(rotated, box), cropper.score(photos[1], box), atol=0.05)


def test_one_forward_pass_on_the_reduced_image(photos: list[Path], fake_scorer) -> None:  # noqa: ANN001
    cropper = Cropper(scorer=fake_scorer)
    decoded = cropper.decode(photos[1])
    result = cropper.analyze(decoded, ratio="4:3", top=2)
    (size, boxes), = fake_scorer.calls  # one forward pass, on the reduced image
    assert size == decoded.image.size and len(boxes) == result.candidates
    assert max(boxes[:, 2]) <= decoded.image.width + 1e-3
    assert result.crops[0].score == max(c.score for c in result.crops)


def test_refines_the_chosen_views_and_can_be_told_not_to(photos: list[Path], fake_scorer) -> None:  # noqa: ANN001
    grid = Cropper(scorer=fake_scorer, refine=False)
    refined = Cropper(scorer=fake_scorer)
    for ratios in (["free"], ["16:9", "4:5"]):
        raw = grid.analyze(photos[1], ratio=ratios, top=3)
        new = refined.analyze(photos[1], ratio=ratios, top=3)
        firsts = [c.score for c in raw.crops if c.rank == 1]
        assert firsts == [c.score for c in new.crops if c.rank == 1]  # the same best view per ratio
        # the others may differ: the written (refined) crops must stay 0.7 apart, not only their views
        for ratio in {c.ratio for c in new.crops}:
            mine = np.array([c.box for c in new.crops if c.ratio == ratio], dtype=float)
            assert box_iou(mine, mine)[np.triu_indices(len(mine), 1)].max() <= 0.7 + 1e-12
        width, height = new.width, new.height
        boxes, _ = candidate_boxes(width, height, parse_ratios(ratios))
        assert all(list(c.box) in boxes.tolist() for c in raw.crops)  # unrefined: the candidates themselves
        for crop in new.crops:
            x1, y1, x2, y2 = crop.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            if crop.ratio != "free":
                a, b = (int(v) for v in crop.ratio.split(":"))
                assert (x2 - x1) * b == (y2 - y1) * a
    # the best free crop is refine_boxes' mean around the best candidate, rounded to pixels
    boxes, _ = candidate_boxes(width, height, parse_ratios(None))
    decoded = grid.decode(photos[1])
    scores = fake_scorer.score(decoded.image, boxes.astype(np.float32) / np.float32(decoded.scale))
    expected = np.round(refine_boxes(boxes, scores, np.array([int(np.argmax(scores))]))[0])
    assert np.abs(np.array(refined.analyze(photos[1]).crops[0].box) - expected).max() <= 1


def test_import_is_light() -> None:
    code = ("import sys, autocrop, autocrop.cropper, autocrop.cli; from autocrop import Cropper, CropSettings; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "import autocrop.settings, autocrop.ratios, autocrop.results; "
            "assert 'PIL' not in sys.modules or True")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    bare = subprocess.run([sys.executable, "-c", "import sys, autocrop; assert 'PIL' not in sys.modules and "
                           "'numpy' not in sys.modules; print(autocrop.__version__)"],
                          capture_output=True, text=True, timeout=60)
    assert bare.returncode == 0 and bare.stdout.strip(), bare.stderr


def test_example_photo(tmp_path: Path, example_photo: Path, cropper: Cropper) -> None:
    assert example_photo.name == "coffee.jpg" and (example_photo.parent / "ATTRIBUTION.md").is_file()
    result = cropper.crop(example_photo, ratio="1:1", top=2, out=tmp_path)
    assert len(result.crops) == 2 and all(c.width == c.height for c in result.crops)
    assert all(c.path is not None and c.path.parent == tmp_path for c in result.crops)


def test_sized_outputs_decode_at_the_smallest_jpeg_scale(tmp_path: Path, fake_scorer: object,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """--size / --long-edge: a JPEG is decoded at the DCT scale that still covers every output, and the crop
    equals (within JPEG rounding) the one cut from the full decode; EXIF-rotated photos map boxes right."""
    from autocrop.io import decode as dec
    from autocrop.output import draft_factor

    rng = np.random.default_rng(3)
    base = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize((1600, 1200),
                                                                                     Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: the oriented photo is 1200 x 1600
    path = tmp_path / "photo.jpg"
    base.save(path, quality=95, exif=exif)
    reduces: list[int] = []
    original = dec.load_full

    def spy(source, reduce=1):  # type: ignore[no-untyped-def]
        reduces.append(reduce)
        return original(source, reduce)

    monkeypatch.setattr(dec, "load_full", spy)
    cropper = Cropper(scorer=fake_scorer, faces=False)
    small = cropper.crop(path, ratio="1:1", top=2, size="150x150")
    assert reduces and reduces[-1] > 1 and all(c.image.size == (150, 150) for c in small.crops)
    settings = CropSettings.build(ratio="1:1", top=2, size="150x150")
    assert draft_factor(small, settings) == reduces[-1]
    with Image.open(path) as im:
        full = exif_oriented(im)
    for crop in small.crops:
        reference = full.crop(crop.box).resize((150, 150), Image.Resampling.LANCZOS)
        diff = np.abs(np.asarray(crop.image, np.int16) - np.asarray(reference, np.int16))
        assert diff.mean() < 3.0, diff.mean()
    big = cropper.crop(path, ratio="1:1", top=1, size="900x900")  # less than 2x smaller: full decode
    assert reduces[-1] == 1 and big.crops[0].image.size == (900, 900)
    written = cropper.crop(path, ratio="1:1", size="150x150", out=tmp_path / "out")
    with Image.open(written.crops[0].path) as im:
        assert im.size == (150, 150)


def exif_oriented(image: Image.Image) -> Image.Image:
    from PIL import ImageOps

    return ImageOps.exif_transpose(image).convert("RGB")


def test_a_crop_does_not_import_numpy_ma(example_photo: Path) -> None:
    """np.unique / np.union1d import numpy.ma (40-60 ms of start-up); choosing crops must not pull it in."""
    code = ("import sys; from autocrop import Cropper; "
            f"Cropper().crop({str(example_photo)!r}, ratio=['16:9', 'free'], top=3); "
            "print('numpy.ma' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_start_up_imports_stay_lean(example_photo: Path) -> None:
    """What a one-photo command imports before its first photo: none of these (each cost 2-40 ms of start-up;
    rich is for the other verbs' tables, fractions for decimal ratios, the rest for writing or config files)."""
    lazy = ["rich", "fractions", "concurrent.futures", "tomllib", "secrets", "PIL.PngImagePlugin",
            "torch", "numpy.ma", "importlib.metadata"]
    code = ("import sys; import autocrop.cli, autocrop.cropper, autocrop.commands.crop, autocrop.model; "
            "from autocrop.io import decode; from autocrop import Cropper; "
            f"decode.load_reduced(decode.as_source({str(example_photo)!r}), 256); "
            f"print([m for m in {lazy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
