"""The packaged face detector (autocrop.faces.detect / model / onnx_shape): file checks, decoding, NMS, real faces.

The real-face fixture is tests/data/faces/grace_hopper.jpg (public domain; source in SOURCE.md beside it).
Decoding and NMS are also tested on hand-made YuNet outputs, so their arithmetic is pinned independently.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autocrop.errors import ModelError
from autocrop.faces import Face, YuNetDetector
from autocrop.faces.detect import STRIDES, decode_outputs, detector_input, nms
from autocrop.faces.model import DETECTOR_FILE, card_path, read_detector_bytes, read_detector_card
from autocrop.faces.onnx_shape import _encode_varint, _fields, _varint, free_input_shapes

FIXTURES = Path(__file__).resolve().parent / "data" / "faces"
HOPPER = FIXTURES / "grace_hopper.jpg"
HOPPER_FACE = (173, 127, 355, 329)  # x1 y1 x2 y2 px, as detected when the fixture was added


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


def _empty_outputs(height: int, width: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for s in STRIDES:
        cells = (height // s) * (width // s)
        out[f"cls_{s}"] = np.zeros((1, cells, 1), np.float32)
        out[f"obj_{s}"] = np.zeros((1, cells, 1), np.float32)
        out[f"bbox_{s}"] = np.zeros((1, cells, 4), np.float32)
        out[f"kps_{s}"] = np.zeros((1, cells, 10), np.float32)
    return out


# ------------------------------------------------------------------ the file, its card, the session


def test_packaged_detector_matches_its_card() -> None:
    card = read_detector_card()
    data = DETECTOR_FILE.read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert card["size_bytes"] == len(data)
    assert card["license"] == "MIT"
    assert (DETECTOR_FILE.parent / card["license_file"]).is_file()
    assert "opencv_zoo" in card["source"]["upstream"]


def test_a_damaged_detector_file_is_one_line_model_error(tmp_path: Path) -> None:
    model = tmp_path / DETECTOR_FILE.name
    data = bytearray(DETECTOR_FILE.read_bytes())
    data[1000] ^= 0xFF
    model.write_bytes(bytes(data))
    shutil.copy(card_path(DETECTOR_FILE), card_path(model))
    with pytest.raises(ModelError, match="sha256 does not match its card") as info:
        YuNetDetector(model).detect(Image.new("RGB", (64, 64)))
    assert "\n" not in str(info.value)


def test_a_detector_without_card_or_file_is_model_error(tmp_path: Path) -> None:
    model = tmp_path / DETECTOR_FILE.name
    shutil.copy(DETECTOR_FILE, model)
    with pytest.raises(ModelError, match="card not found"):
        read_detector_bytes(model)
    shutil.copy(card_path(DETECTOR_FILE), card_path(model))
    model.unlink()
    with pytest.raises(ModelError, match="file not found"):
        read_detector_bytes(model)


def test_freed_model_keeps_batch_and_channels_and_gives_the_same_outputs() -> None:
    import onnxruntime as ort

    data = DETECTOR_FILE.read_bytes()
    fixed = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    freed = ort.InferenceSession(free_input_shapes(data), providers=["CPUExecutionProvider"])
    shape = freed.get_inputs()[0].shape
    assert shape[:2] == [1, 3] and all(isinstance(d, str) for d in shape[2:])
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 640, 640)).astype(np.float32)
    for a, b in zip(fixed.run(None, {"input": x}), freed.run(None, {"input": x})):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    small = freed.run(["cls_8"], {"input": x[:, :, :96, :160]})[0]
    assert small.shape == (1, (96 // 8) * (160 // 8), 1)


def test_protobuf_varints_round_trip_and_truncation_is_an_error() -> None:
    for value in (0, 1, 127, 128, 300, 2**32, 2**63 - 1):
        encoded = _encode_varint(value)
        assert _varint(encoded, 0) == (value, len(encoded))
    with pytest.raises(ValueError):
        list(_fields(b"\x0a\x05ab"))  # field 1, length 5, only 2 bytes
    with pytest.raises(ValueError):
        free_input_shapes(b"\x3a\xff")  # graph field with a truncated length


# ------------------------------------------------------------------ decoding and suppression


def test_decode_outputs_places_a_hand_made_face() -> None:
    out = _empty_outputs(64, 96)
    cols = 96 // 8
    cell = 2 * cols + 3  # stride 8, row 2, column 3
    out["cls_8"][0, cell, 0], out["obj_8"][0, cell, 0] = 0.81, 1.0
    out["bbox_8"][0, cell] = [0.5, 0.5, np.log(4.0), np.log(5.0)]
    boxes, scores = decode_outputs(out, 64, 96, score_threshold=0.5)
    assert scores.tolist() == pytest.approx([0.9])  # sqrt(0.81 * 1.0)
    np.testing.assert_allclose(boxes[0], [28 - 16, 20 - 20, 28 + 16, 20 + 20], atol=1e-4)  # centre (3.5, 2.5) * 8


def test_decode_outputs_clips_scores_and_applies_the_threshold() -> None:
    out = _empty_outputs(64, 64)
    out["cls_32"][0, 0, 0], out["obj_32"][0, 0, 0] = 1.7, 0.25  # cls clipped to 1 -> score 0.5
    out["cls_16"][0, 5, 0], out["obj_16"][0, 5, 0] = 0.3, 0.3  # 0.3: below 0.6
    boxes, scores = decode_outputs(out, 64, 64, score_threshold=0.5)
    assert scores.tolist() == pytest.approx([0.5])
    with pytest.raises(ValueError):
        decode_outputs(out, 64, 96)  # the grid does not match the outputs


def test_nms_keeps_the_best_of_overlapping_boxes_best_first() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], float)
    scores = np.array([0.7, 0.9, 0.8, 0.6])
    assert nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms(boxes, scores, 0.3, limit=1).tolist() == [1]
    assert nms(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_detector_input_is_bgr_padded_to_multiples_of_32_and_never_enlarged() -> None:
    image = Image.new("RGB", (100, 70), (10, 20, 30))
    blob, width, height = detector_input(image)
    assert blob.shape == (1, 3, 96, 128) and (width, height) == (100, 70)
    assert blob[0, :, 0, 0].tolist() == [30, 20, 10]  # BGR
    assert blob[0, :, 80:, :].max() == 0 and blob[0, :, :, 100:].max() == 0
    big = Image.new("RGB", (1300, 650))
    blob, width, height = detector_input(big)
    assert max(width, height) == 512 and blob.shape[2] % 32 == 0 and blob.shape[3] % 32 == 0


# ------------------------------------------------------------------ real photos


def test_the_public_domain_portrait_has_one_face_where_it_is(detector: YuNetDetector) -> None:
    with Image.open(HOPPER) as im:
        faces = detector.detect(im.convert("RGB"))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    assert np.allclose(face.box, HOPPER_FACE, atol=12)
    assert face.to_dict()["box"] == [int(round(v)) for v in face.box]


def test_boxes_are_scaled_to_the_photo(detector: YuNetDetector) -> None:
    with Image.open(HOPPER) as im:
        half = im.convert("RGB").reduce(2)
    faces = detector.detect(half, scale=2.0)
    assert len(faces) == 1
    assert np.allclose(faces[0].box, HOPPER_FACE, atol=16)


def test_exif_rotated_photo_is_detected_in_viewer_pixels(tmp_path: Path) -> None:
    from autocrop.cropper import Cropper

    with Image.open(HOPPER) as im:
        rgb = im.convert("RGB")
    stored = rgb.transpose(Image.Transpose.ROTATE_90)  # stored sideways; orientation 6 turns it upright
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, quality=95, exif=exif)
    faces = Cropper().faces(path)
    assert len(faces) == 1
    assert np.allclose(faces[0].box, HOPPER_FACE, atol=14)


@pytest.mark.parametrize("make", [
    lambda: Image.new("RGB", (640, 480), (128, 128, 128)),
    lambda: Image.fromarray(np.random.default_rng(1).integers(0, 255, (300, 400, 3), dtype=np.uint8)),
    lambda: Image.linear_gradient("L").convert("RGB").resize((500, 300)),
])
def test_photos_without_faces_have_none(detector: YuNetDetector, make) -> None:  # noqa: ANN001
    assert detector.detect(make()) == ()


def test_the_packaged_example_photo_has_no_face(example_photo: Path) -> None:
    from autocrop.cropper import Cropper

    assert Cropper().faces(example_photo) == ()


def test_tiny_and_grey_images_do_not_fail(detector: YuNetDetector) -> None:
    assert detector.detect(Image.new("L", (1, 1))) == ()
    assert detector.detect(Image.new("RGBA", (33, 17))) == ()


def test_face_json_form() -> None:
    face = Face(box=(10.4, 20.6, 30.5, 40.0), score=0.912345)
    assert face.to_dict() == {"box": [10, 21, 30, 40], "score": 0.9123}
    assert face.width == pytest.approx(20.1) and face.height == pytest.approx(19.4)


@pytest.mark.data
def test_faces_on_real_dataset_photos(data_dir: Path, detector: YuNetDetector) -> None:
    from autocrop.cropper import Cropper

    photo = data_dir / "GAICD" / "images" / "test" / "220207.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is not there")
    faces = Cropper().faces(photo)
    assert len(faces) >= 1
    assert np.allclose(faces[0].box, (427, 178, 486, 266), atol=10)  # the one face, found when this test was written
    crowd = data_dir / "FCDB" / "data" / "19360027811_008bba552b_c.jpg"
    if crowd.is_file():
        assert len(Cropper().faces(crowd)) >= 15  # an audience: 23 faces when this test was written
