"""The faces on the command line: ``autocrop faces``, ``crop --faces``, the JSON fields, warnings, previews."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import error_lines
from PIL import Image

HOPPER = Path(__file__).resolve().parent / "data" / "faces" / "grace_hopper.jpg"


@pytest.fixture()
def portrait(tmp_path: Path) -> Path:
    """The public-domain portrait (one face) in a temp folder."""
    return Path(shutil.copy(HOPPER, tmp_path / "hopper.jpg"))


def test_faces_verb_table_and_json(cli, portrait: Path, example_photo: Path) -> None:  # noqa: ANN001
    code, out, err = cli(["faces", portrait, example_photo])
    assert code == 0, err
    assert "512x600, 1 face" in out and "600x400, 0 faces" in out and "score" in out
    code, out, err = cli(["faces", portrait, "--json"])
    assert code == 0, err
    doc = json.loads(out)
    assert doc["failed"] == 0
    (result,) = doc["results"]
    assert result["width"] == 512 and result["height"] == 600 and result["error"] is None
    (face,) = result["faces"]
    x1, y1, x2, y2 = face["box"]
    assert 150 < x1 < 200 and 100 < y1 < 150 and 330 < x2 < 380 and 300 < y2 < 350 and face["score"] > 0.8


def test_faces_verb_draws_faces(cli, portrait: Path, tmp_path: Path, photos: list[Path]) -> None:  # noqa: ANN001
    drawing = tmp_path / "drawn.png"
    code, out, err = cli(["faces", portrait, "--preview", drawing])
    assert code == 0, err
    with Image.open(drawing) as im:
        assert im.format == "PNG" and im.size == (512, 600)
    code, _, err = cli(["faces", portrait, "--preview", drawing])
    assert code == 3 and "already exists" in err
    assert cli(["faces", portrait, "--preview", drawing, "--overwrite"])[0] == 0
    out_dir = tmp_path / "drawings"
    code, _, err = cli(["faces", portrait, *photos, "--out", out_dir, "-q"])
    assert code == 0, err
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"{p.stem}.faces.png" for p in [portrait, *photos])
    code, _, err = cli(["faces", portrait, photos[0], "--preview", drawing])
    assert code == 2 and error_lines(err) == ["autocrop: error: preview: draws one photo; use out DIR for several "
                                              "photos"]
    code, _, err = cli(["faces", portrait, "--preview", portrait, "--overwrite"])
    assert code == 3 and "is an input photo" in err


def test_faces_verb_bad_photo_is_one_line(cli, tmp_path: Path, portrait: Path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    code, out, err = cli(["faces", bad, portrait])
    assert code == 3 and len(error_lines(err)) == 1 and "1 face" in out


def test_crop_json_lists_faces_and_the_faces_inside_each_crop(cli, portrait: Path, model_file: Path) -> None:  # noqa: ANN001
    code, out, err = cli([portrait, "-r", "16:9,1:1", "-k", "2", "--dry-run", "--json", "--model", model_file])
    assert code == 0, err
    doc = json.loads(out)["results"][0]
    assert len(doc["faces"]) == 1 and doc["warnings"] == []
    for crop in doc["crops"]:
        assert crop["faces"] == [0]
    code, out, _ = cli([portrait, "--faces", "off", "--dry-run", "--json", "--model", model_file])
    doc = json.loads(out)["results"][0]
    assert doc["faces"] is None and doc["crops"][0]["faces"] is None


def test_crop_warns_on_stderr_when_the_rule_cannot_hold(cli, photos: list[Path], model_file: Path,  # noqa: ANN001
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from autocrop.faces import Face, YuNetDetector

    # two faces one above the other in the 400x560 portrait: a 16:9 crop (400x225) holding the upper one cuts
    # the lower one
    faces = (Face((140.0, 100.0, 260.0, 220.0), 0.95), Face((150.0, 235.0, 250.0, 330.0), 0.9))
    monkeypatch.setattr(YuNetDetector, "detect", lambda self, image, scale=1.0: faces)
    code, out, err = cli([photos[2], "-r", "16:9", "--dry-run", "--json", "--model", model_file])
    assert code == 0, err
    doc = json.loads(out)["results"][0]
    warnings = [line for line in err.splitlines() if line.startswith("autocrop: warning:")]
    assert warnings == [f"autocrop: warning: {w}" for w in doc["warnings"]]
    assert warnings == [f"autocrop: warning: {photos[2]}: 16:9 crop 1 cuts 1 face (no 16:9 crop of this photo "
                        "holds the main face without cutting a face)"]
    assert doc["crops"][0]["faces"] == [0]
    code, _, err = cli([photos[2], "-r", "16:9", "--dry-run", "--model", model_file, "-q"])
    assert code == 0 and err == ""


def test_crop_preview_draws_faces(cli, portrait: Path, tmp_path: Path, model_file: Path) -> None:  # noqa: ANN001
    out_dir = tmp_path / "out"
    code, _, err = cli([portrait, "-o", out_dir, "--preview", "--model", model_file, "-q"])
    assert code == 0, err
    with Image.open(out_dir / "hopper.preview.png") as im:
        rgb = im.convert("RGB")
    # the face box (about x 173..355, y 127..329) is outlined in white, one pixel wide
    whites = sum(1 for y in range(100, 360) if rgb.getpixel((int(round(173)), y)) == (255, 255, 255))
    assert whites > 50


def test_config_key_faces_reaches_crop_and_batch() -> None:
    from autocrop.cli import build_command, build_default_map

    default_map = build_default_map(build_command(), {"faces": "off"})
    assert default_map["crop"] == {"faces": "off"} and default_map["batch"] == {"faces": "off"}
