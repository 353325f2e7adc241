"""The face rule (autocrop.faces.rules / apply, candidates' extra views) on hand-made score maps.

The Cropper runs with the FakeScorer of conftest.py (score = brightness inside the crop minus a little
distance from the centre), so the best view is wherever a photo is bright, and with fixed faces injected
through ``Cropper(detector=...)``: each test knows exactly where the faces are.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autocrop.candidates import covering_crops, repaired_crops
from autocrop.cropper import Cropper
from autocrop.faces import Face, rules
from autocrop.faces.apply import choose
from autocrop.geometry import reduce_ratio
from autocrop.settings import CropSettings

RATIOS = ("1:1", "16:9", "4:5", "9:16", "free")


class FixedFaces:
    """A face detector that always finds the same faces (pixels of the photo); counts its calls."""

    def __init__(self, *boxes: tuple[float, float, float, float]) -> None:
        self.faces = tuple(Face(box=tuple(float(v) for v in b), score=0.9) for b in boxes)  # type: ignore[arg-type]
        self.calls = 0

    def detect(self, image: Image.Image, scale: float = 1.0) -> tuple[Face, ...]:
        self.calls += 1
        return self.faces


def bright_right(width: int = 600, height: int = 400, split: float = 0.5) -> np.ndarray:
    """A dark photo whose right part (from ``split`` of the width) is bright: the best views lie there."""
    pixels = np.full((height, width, 3), 20, dtype=np.uint8)
    pixels[:, int(width * split):] = 230
    return pixels


def states(box: tuple[int, int, int, int], faces: FixedFaces, width: int, height: int,
           ratio: str = "free") -> tuple[np.ndarray, np.ndarray]:
    subject = rules.make_subject(faces.faces, width, height)
    spec = CropSettings.build(ratio=ratio).ratios[0]
    return rules.face_states(np.asarray([box], float), rules.for_ratio(subject, spec.resolve(width, height)))


# ------------------------------------------------------------------ the rule in the Cropper


@pytest.mark.parametrize("ratio", RATIOS)
def test_a_face_at_the_edge_of_the_best_view_moves_the_choice(fake_scorer, ratio: str) -> None:  # noqa: ANN001
    photo = bright_right()
    plain = Cropper(scorer=fake_scorer, faces=False).analyze(photo, ratio=ratio).crops[0].box
    x1, y1, x2, y2 = plain
    cy = (y1 + y2) / 2
    edge = x1 if x1 > 40 else x2  # an edge of the best view inside the photo
    assert 40 < edge < 560
    faces = FixedFaces((edge - 30, cy - 30, edge + 30, cy + 30))
    result = Cropper(scorer=fake_scorer, detector=faces).analyze(photo, ratio=ratio)
    crop = result.crops[0]
    inside, cut = states(crop.box, faces, 600, 400, ratio)
    assert crop.box != plain
    assert not cut.any() and inside.all(), "the face is the main face: held whole"
    assert crop.faces == (0,)
    assert result.warnings == ()


@pytest.mark.parametrize("ratio", RATIOS)
def test_the_main_face_is_kept_whenever_it_fits(fake_scorer, ratio: str) -> None:  # noqa: ANN001
    photo = bright_right(split=0.6)
    faces = FixedFaces((40, 160, 90, 220))  # in the dark left part, where the model would not look
    plain = Cropper(scorer=fake_scorer, detector=faces, faces=False).analyze(photo, ratio=ratio)
    assert plain.faces is None and faces.calls == 0
    assert not states(plain.crops[0].box, faces, 600, 400, ratio)[0].all(), "without the rule it is left out"
    result = Cropper(scorer=fake_scorer, detector=faces).analyze(photo, ratio=ratio, top=3)
    for crop in result.crops:
        inside, cut = states(crop.box, faces, 600, 400, ratio)
        assert inside.all() and not cut.any(), (crop.rank, crop.box)
    assert result.warnings == ()


def test_several_people_of_similar_size_are_kept_together(fake_scorer) -> None:  # noqa: ANN001
    photo = bright_right(900, 400, split=0.7)
    people = FixedFaces((100, 150, 160, 220), (220, 140, 280, 215), (360, 150, 415, 215))
    result = Cropper(scorer=fake_scorer, detector=people).analyze(photo, ratio="16:9")
    assert result.crops[0].faces == (0, 1, 2)


def test_when_no_crop_can_keep_the_rule_the_main_face_wins_and_a_warning_says_so(fake_scorer, cli,  # noqa: ANN001
                                                                                 tmp_path) -> None:  # noqa: ANN001
    photo = np.full((600, 400, 3), 120, dtype=np.uint8)  # portrait; two faces one above the other
    faces = FixedFaces((140, 100, 260, 220), (150, 235, 250, 330))
    result = Cropper(scorer=fake_scorer, detector=faces).analyze(photo, ratio="16:9")
    crop = result.crops[0]
    inside, cut = states(crop.box, faces, 400, 600, "16:9")
    assert inside[0, 0] and cut[0, 1]
    assert result.warnings == ("<image>: 16:9 crop 1 cuts 1 face (no 16:9 crop of this photo holds the main face "
                               "without cutting a face)",)
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_a_face_larger_than_any_crop_of_the_ratio_is_centred_not_left_out(fake_scorer) -> None:  # noqa: ANN001
    photo = bright_right(600, 400, split=0.8)
    big = FixedFaces((150, 60, 450, 330))  # grown it is taller and wider than a 9:16 crop can be
    result = Cropper(scorer=fake_scorer, detector=big).analyze(photo, ratio="9:16")
    x1, _, x2, _ = result.crops[0].box
    assert x1 <= 300 <= x2, "the crop holds the middle of the face"
    assert result.crops[0].faces == (0,)


def test_faces_off_is_the_plain_choice_and_runs_no_detector(fake_scorer) -> None:  # noqa: ANN001
    photo = bright_right()
    faces = FixedFaces((300, 150, 360, 210))
    off = Cropper(scorer=fake_scorer, detector=faces, faces=False).analyze(photo, ratio="1:1,free", top=3)
    none = Cropper(scorer=fake_scorer, detector=FixedFaces()).analyze(photo, ratio="1:1,free", top=3)
    assert faces.calls == 0 and off.faces is None and none.faces == ()
    assert [c.box for c in off.crops] == [c.box for c in none.crops]
    assert off.candidates == none.candidates
    assert all(c.faces is None for c in off.crops) and all(c.faces == () for c in none.crops)


def test_views_are_added_only_where_no_view_keeps_the_rule(fake_scorer) -> None:  # noqa: ANN001
    photo = bright_right()
    easy = Cropper(scorer=fake_scorer, detector=FixedFaces((400, 150, 450, 210))).analyze(photo, ratio="16:9")
    plain = Cropper(scorer=fake_scorer, faces=False).analyze(photo, ratio="16:9")
    assert easy.candidates == plain.candidates
    hard = Cropper(scorer=fake_scorer, detector=FixedFaces((5, 5, 60, 70), (540, 320, 595, 395)))
    assert hard.analyze(photo, ratio="16:9").candidates > plain.candidates


def test_scores_of_caller_boxes_do_not_change_with_faces(fake_scorer) -> None:  # noqa: ANN001
    photo = bright_right()
    boxes = [[0, 0, 300, 200], [100, 50, 600, 400]]
    with_faces = Cropper(scorer=fake_scorer, detector=FixedFaces((300, 150, 360, 210))).score(photo, boxes)
    without = Cropper(scorer=fake_scorer, faces=False).score(photo, boxes)
    np.testing.assert_array_equal(with_faces, without)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crops_with_faces_are_prefix_stable(fake_scorer, ratio: str, seed: int) -> None:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    photo = rng.integers(0, 255, (400, 600, 3), dtype=np.uint8)
    boxes = []
    for _ in range(3):
        x, y, s = rng.uniform(20, 520), rng.uniform(30, 320), rng.uniform(25, 70)
        boxes.append((x, y, x + s, y + s * 1.2))
    cropper = Cropper(scorer=fake_scorer, detector=FixedFaces(*boxes))
    previous: list[tuple[int, int, int, int]] = []
    for k in range(1, 6):
        crops = [c.box for c in cropper.analyze(photo, ratio=ratio, top=k, focus=(0.5, 0.45)).crops]
        assert crops[: len(previous)] == previous
        previous = crops


@pytest.mark.parametrize("seed", range(6))
def test_refined_crops_never_break_the_rule_more_than_their_views(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width, height = 800, 533
    settings = CropSettings.build(top=4)
    faces = [Face(box=(x, y, x + s, y + 1.2 * s), score=0.9)
             for x, y, s in zip(rng.uniform(0, 700, 4), rng.uniform(0, 400, 4), rng.uniform(20, 90, 4))]
    subject = rules.make_subject(faces, width, height)
    from autocrop.candidates import grid_candidates

    boxes = np.round(grid_candidates(width, height))
    scores = rng.normal(size=len(boxes))
    for pick in choose(boxes, scores, settings, None, width, height, subject):
        view = boxes[pick.index]
        assert rules.no_worse(pick.box, view, subject)


# ------------------------------------------------------------------ the rule's pieces


def test_faces_grow_for_hair_and_chin_inside_the_photo() -> None:
    grown = rules.grow_faces(np.array([[100, 100, 200, 200], [0, 5, 40, 45]]), 300, 300)
    np.testing.assert_allclose(grown[0], [85, 60, 215, 215])  # +15 % sides, +40 % top, +15 % bottom
    np.testing.assert_allclose(grown[1], [0, 0, 46, 51])


def test_inside_outside_and_cut_with_the_tolerance() -> None:
    subject = rules.Subject(400, 400, faces=np.array([[100.0, 100.0, 200.0, 200.0]]))
    crops = np.array([[100, 100, 200, 200],  # exactly
                      [104, 100, 300, 300],  # 4 % outside: still inside
                      [0, 0, 104, 300],  # 4 % inside: outside
                      [0, 0, 150, 300],  # half: cut
                      [300, 300, 400, 400]], float)
    inside, cut = rules.face_states(crops, subject)
    assert inside[:, 0].tolist() == [True, True, False, False, False]
    assert cut[:, 0].tolist() == [False, False, False, True, False]


def test_main_face_and_group() -> None:
    faces = [Face((0, 0, 10, 12), 0.9), Face((100, 100, 150, 160), 0.8), Face((200, 100, 230, 135), 0.9),
             Face((300, 100, 320, 120), 0.9)]
    subject = rules.make_subject(faces, 1000, 600)
    assert subject.main == 1  # the tallest, 60 px >= 4 % of 600
    assert subject.group.tolist() == [False, True, True, False]  # at least half as tall as the main face
    tiny = rules.make_subject([Face((0, 0, 10, 12), 0.9)], 1000, 600)
    assert tiny.main == -1 and not tiny.group.any()


def test_priority_is_lexicographic() -> None:
    penalty = np.array([[0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 3], [1, 0, 0, 0, 0], [0, 0, 0, 0, 3]])
    assert rules.priority(penalty).tolist() == [1, 2, 0, 3, 0]


def test_a_face_too_large_for_the_ratio_is_judged_by_its_core() -> None:
    subject = rules.Subject(1200, 600, faces=np.array([[300.0, 0.0, 900.0, 600.0], [10.0, 10.0, 50.0, 60.0]]))
    seen = rules.for_ratio(subject, (9, 16))  # largest 9:16 crop: 333 x 592
    np.testing.assert_allclose(seen.faces[0], [600 - 0.45 * 333, 300 - 0.45 * 592, 600 + 0.45 * 333, 300 + 0.45 * 592])
    np.testing.assert_array_equal(seen.faces[1], subject.faces[1])
    assert rules.for_ratio(subject, None) is subject


@pytest.mark.parametrize("ratio", [(16, 9), (1, 1), (4, 5), (9, 16), None])
def test_covering_crops_hold_the_target_inside_the_photo(ratio: tuple[int, int] | None) -> None:
    target = np.array([500.3, 120.7, 640.2, 300.1])
    crops = covering_crops(target, 1000, 667, ratio)
    assert len(crops) >= 2
    assert (crops[:, 0] <= target[0]).all() and (crops[:, 2] >= target[2]).all()
    assert (crops[:, 1] <= target[1]).all() and (crops[:, 3] >= target[3]).all()
    assert (crops[:, :2] >= 0).all() and (crops[:, 2] <= 1000).all() and (crops[:, 3] <= 667).all()
    if ratio is not None:
        a, b = reduce_ratio(*ratio)
        w, h = crops[:, 2] - crops[:, 0], crops[:, 3] - crops[:, 1]
        assert np.all(w * b == h * a) and np.all(crops == np.round(crops))
    assert len(covering_crops(np.array([0, 0, 1000, 667]), 1000, 667, (9, 16))) == 0


@pytest.mark.parametrize("ratio", [(16, 9), None])
def test_repaired_crops_hold_or_leave_the_face(ratio: tuple[int, int] | None) -> None:
    face = np.array([[280.0, 100.0, 360.0, 200.0]]) if ratio else np.array([[400.0, 100.0, 480.0, 200.0]])
    box = np.array([[0.0, 0.0, 320.0, 180.0]]) if ratio else np.array([[0.0, 0.0, 440.0, 400.0]])  # cut at a corner
    subject = rules.Subject(800, 450 if ratio else 400, faces=face)
    _, cut = rules.face_states(box, subject)
    assert cut.all()
    repaired = repaired_crops(box, cut, face, subject.width, subject.height, ratio)
    inside, still_cut = rules.face_states(repaired, subject)
    assert (~still_cut.any(axis=1)).any() and inside.any()
    if ratio:
        assert np.all((repaired[:, 2] - repaired[:, 0]) * 9 == (repaired[:, 3] - repaired[:, 1]) * 16)
