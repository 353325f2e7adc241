"""User hints (autocrop.faces.hints): keep boxes and the focus point, in the settings, the Cropper and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autocrop.cropper import Cropper
from autocrop.errors import InputError, UsageError
from autocrop.faces import Face
from autocrop.faces.hints import check_focus, check_keep, resolve_focus, resolve_keep
from autocrop.settings import CropSettings

RATIOS = ("1:1", "16:9", "4:5", "9:16", "3:2", "free", "original")


class OneFace:
    """A face detector that finds one face where the model likes to look (pixels of a 600x400 photo)."""

    def detect(self, image: object, scale: float = 1.0) -> tuple[Face, ...]:
        return (Face(box=(450.0, 100.0, 500.0, 160.0), score=0.9),)


def _holds(box: tuple[int, int, int, int], keep: tuple[float, float, float, float], tol: float = 0.5) -> bool:
    return (box[0] <= keep[0] + tol and box[1] <= keep[1] + tol and box[2] >= keep[2] - tol
            and box[3] >= keep[3] - tol)


# ------------------------------------------------------------------ parsing and resolving


def test_keep_and_focus_parse_from_text_and_numbers() -> None:
    assert check_keep("10,20,110,220") == ((10, 20, 110, 220),)
    assert check_keep(" 0.1 0.2 0.5 0.6 ") == ((0.1, 0.2, 0.5, 0.6),)
    assert check_keep([(1, 2, 3, 4), "5,6,7,8"]) == ((1, 2, 3, 4), (5, 6, 7, 8))
    assert check_keep((1, 2, 3, 4)) == ((1, 2, 3, 4),)
    assert check_keep(None) == () and check_keep([]) == ()
    assert check_focus("0.5,0.25") == (0.5, 0.25) and check_focus((300, 200)) == (300, 200)
    assert check_focus(None) is None and check_focus("") is None


@pytest.mark.parametrize("value", ["1,2,3", "a,b,c,d", "1,2,3,4,5", "10,10,5,20", "-1,0,5,5", "nan,0,5,5",
                                   "0,0,inf,5", (1, 2, 3), 12])
def test_bad_keep_boxes_are_one_line_usage_errors(value: object) -> None:
    with pytest.raises(UsageError, match="^keep") as info:
        CropSettings(keep=value)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["1", "1,2,3", "x,y", "-5,3", (True, 1)])
def test_bad_focus_points_are_usage_errors(value: object) -> None:
    with pytest.raises(UsageError, match="^focus"):
        CropSettings(focus=value)  # type: ignore[arg-type]


def test_fractions_scale_with_the_photo_and_pixels_stay() -> None:
    keep = resolve_keep(((0.25, 0.5, 0.75, 1.0), (10, 20, 30, 40)), 800, 600, "p.jpg")
    np.testing.assert_allclose(keep, [[200, 300, 600, 600], [10, 20, 30, 40]])
    assert resolve_focus((0.5, 0.5), 800, 600, "p.jpg") == (400, 300)
    assert resolve_focus((400, 300), 800, 600, "p.jpg") == (400, 300)
    np.testing.assert_allclose(resolve_keep(((0, 0, 801, 600),), 800, 600, "p"), [[0, 0, 800, 600]])  # 1 px


def test_hints_outside_the_photo_are_input_errors_naming_it() -> None:
    with pytest.raises(InputError, match=r"^p\.jpg: keep 700,10,900,50 lies outside the 800x600 photo"):
        resolve_keep(((700, 10, 900, 50),), 800, 600, "p.jpg")
    with pytest.raises(InputError, match=r"^p\.jpg: focus 100,700 lies outside"):
        resolve_focus((100, 700), 800, 600, "p.jpg")
    with pytest.raises(InputError, match="outside"):
        resolve_keep(((850, 10, 900, 50),), 800, 600, "p.jpg")


def test_settings_carry_the_hints_into_the_output_key() -> None:
    settings = CropSettings.build(keep=["0.1,0.1,0.4,0.4"], focus="0.2,0.3", faces="off")
    key = settings.output_key()
    assert key["keep"] == [[0.1, 0.1, 0.4, 0.4]] and key["focus"] == [0.2, 0.3] and key["faces"] is False
    assert CropSettings().output_key()["faces"] is True
    with pytest.raises(UsageError, match="faces 'maybe': use on or off"):
        CropSettings(faces="maybe")  # type: ignore[arg-type]


# ------------------------------------------------------------------ honoured by every crop


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("faces", [False, True])
def test_keep_and_focus_are_inside_every_crop_at_every_ratio(fake_scorer, ratio: str, faces: bool) -> None:  # noqa: ANN001
    photo = np.full((400, 600, 3), 30, dtype=np.uint8)
    photo[:, 400:] = 240  # the model looks right; the hints say left
    keep = (40.0, 120.0, 140.0, 230.0)
    focus = (90.0, 300.0)
    cropper = Cropper(scorer=fake_scorer, detector=OneFace(), faces=faces)
    result = cropper.analyze(photo, ratio=ratio, top=3, keep=[keep], focus=focus)
    assert result.crops
    for crop in result.crops:
        assert _holds(crop.box, keep), (ratio, crop.box)
        x1, y1, x2, y2 = crop.box
        assert x1 <= focus[0] <= x2 and y1 <= focus[1] <= y2


@pytest.mark.parametrize("ratio", RATIOS)
def test_fraction_hints_are_inside_every_crop(fake_scorer, ratio: str) -> None:  # noqa: ANN001
    photo = np.random.default_rng(3).integers(0, 255, (300, 500, 3), dtype=np.uint8)
    result = Cropper(scorer=fake_scorer, faces=False).analyze(photo, ratio=ratio, top=2, keep="0.8,0.1,0.95,0.3")
    for crop in result.crops:
        assert _holds(crop.box, (400, 30, 475, 90))


def test_focus_pulls_the_crop_towards_it(fake_scorer) -> None:  # noqa: ANN001
    photo = np.random.default_rng(5).integers(90, 160, (400, 600, 3), dtype=np.uint8)
    cropper = Cropper(scorer=fake_scorer, faces=False)
    focus = (120.0, 200.0)
    for ratio in ("1:1", "9:16", "free"):
        plain = cropper.analyze(photo, ratio=ratio).crops[0].box
        pulled = cropper.analyze(photo, ratio=ratio, focus=focus).crops[0].box

        def distance(b: tuple[int, int, int, int]) -> float:
            return float(np.hypot((b[0] + b[2]) / 2 - focus[0], (b[1] + b[3]) / 2 - focus[1]))

        assert distance(pulled) <= distance(plain)


def test_a_keep_box_larger_than_any_crop_of_the_ratio_is_an_input_error(fake_scorer) -> None:  # noqa: ANN001
    photo = np.full((400, 600, 3), 100, dtype=np.uint8)
    cropper = Cropper(scorer=fake_scorer, faces=False)
    with pytest.raises(InputError, match=r"^<image>: no 9:16 crop of this 600x400 photo holds every keep box"):
        cropper.analyze(photo, ratio="9:16", keep=(0, 0, 500, 300))
    assert cropper.analyze(photo, ratio="16:9", keep=(0, 0, 500, 300)).crops  # that one fits 16:9
    with pytest.raises(InputError, match="outside the 600x400 photo"):
        cropper.analyze(photo, keep=(0, 0, 700, 300))


# ------------------------------------------------------------------ command line


def test_crop_cli_keep_and_focus(cli, photos: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    code, out, err = cli([photos[0], "-r", "9:16", "-k", "2", "--keep", "0.05,0.1,0.2,0.5", "--focus", "0.1,0.3",
                          "--dry-run", "--json", "--faces", "off"])
    assert code == 0, err
    doc = json.loads(out)["results"][0]
    w, h = doc["width"], doc["height"]
    for crop in doc["crops"]:
        assert _holds(tuple(crop["box"]), (0.05 * w, 0.1 * h, 0.2 * w, 0.5 * h))
    assert doc["faces"] is None


def test_crop_cli_bad_hints(cli, photos: list[Path]) -> None:  # noqa: ANN001
    from conftest import error_lines

    code, _, err = cli([photos[0], "--keep", "1,2,3", "--dry-run"])
    assert code == 2 and error_lines(err) == ["autocrop: error: keep '1,2,3': use X1,Y1,X2,Y2 in pixels or 0..1 "
                                              "fractions (4 numbers, got 3)"]
    code, _, err = cli([photos[0], "--keep", "0,0,5000,10", "--dry-run"])
    assert code == 3 and len(error_lines(err)) == 1 and "outside the 600x400 photo" in err
    code, _, err = cli([photos[0], "--faces", "maybe", "--dry-run"])
    assert code == 2 and "faces 'maybe': use on or off" in err


def test_batch_cli_takes_hints(cli, photos: list[Path], tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "out"
    code, _, err = cli(["batch", photos[0].parent, "-o", out, "-r", "1:1", "--keep", "0.4,0.4,0.6,0.6",
                        "--faces", "off", "--quiet"])
    assert code == 0, err
    records = [json.loads(line) for line in (out / "autocrop-manifest.jsonl").read_text().splitlines()]
    done = [r for r in records if r.get("status") == "ok"]
    assert len(done) == 3
    for record in done:
        from PIL import Image

        with Image.open(photos[0].parent / record["path"]) as im:
            w, h = im.size
        for box in record["boxes"]:
            assert _holds(tuple(box), (0.4 * w, 0.4 * h, 0.6 * w, 0.6 * h))
