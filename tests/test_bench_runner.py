"""The bench runner: dataset readers it adds (FLMS, anchors), the training-image guard, the Cropper path
(box scaling, the crop command's own top-1), and whole runs on tiny synthetic GAICD / FCDB folders made in
``tmp_path`` (``mini_gaicd``, ``mini_fcdb``), so nothing here needs ``../shared/data`` except the tests
marked ``data``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import MINI_SIZE, make_mini_gaicd
from PIL import Image

from autocrop.bench.datasets import load_anchors, load_flms, split_training_items
from autocrop.bench.metrics import box_metrics, crop_iou, gaicd_metrics
from autocrop.bench.runner import UNREFINED, BenchOptions, resolve_bench_dir, run_bench
from autocrop.cropper import Cropper
from autocrop.errors import DatasetError, UsageError

# ---------------------------------------------------------------------------------------------
# FLMS reader (public release layout), anchors, training guard
# ---------------------------------------------------------------------------------------------


def _write_flms(root: Path, entries: list[tuple[str, list[list[float]]]], images: list[str]) -> None:
    from scipy.io import savemat

    (root / "image").mkdir(parents=True)
    for name in images:
        Image.new("RGB", (60, 40), (120, 80, 40)).save(root / "image" / name)
    table = np.empty((len(entries), 1), dtype=[("name", "O"), ("crops", "O")])
    for i, (name, crops) in enumerate(entries):
        table[i, 0] = (np.array([name]), np.array(crops, dtype=np.float64))
    savemat(str(root / "500_image_dataset.mat"), {"img_gt": table})


def test_flms_reader_converts_yxyx_drops_invalid_rows_and_counts_missing(tmp_path):
    pytest.importorskip("scipy")
    _write_flms(
        tmp_path,
        [
            ("a.jpg", [[5, 10, 35, 50], [-1, -1, -1, -1], [0, 0, 40, 60]]),
            ("b.jpg", [[1, 2, 3, 4]]),  # image file absent
        ],
        images=["a.jpg"],
    )
    items, missing = load_flms(tmp_path)
    assert missing == 1 and len(items) == 1
    assert items[0].name == "a.jpg"
    # y1 x1 y2 x2 -> x1 y1 x2 y2; the all-negative row is dropped
    assert items[0].gts.tolist() == [[10, 5, 50, 35], [0, 0, 60, 40]]


def test_flms_wrong_layout_says_what_is_expected(tmp_path):
    with pytest.raises(DatasetError, match="500_image_dataset.mat and image/"):
        load_flms(tmp_path)


def test_anchors_are_found_and_validated(tmp_path):
    (tmp_path / "pdefined_anchors_1745.json").write_text(json.dumps([[0, 0, 1, 1], [0.1, 0.2, 0.9, 0.8]]))
    anchors, path = load_anchors(tmp_path)
    assert anchors.shape == (2, 4) and path.parent == tmp_path
    (tmp_path / "pdefined_anchors_1745.json").write_text(json.dumps([[0, 0, 2, 1]]))
    with pytest.raises(DatasetError, match="normalised"):
        load_anchors(tmp_path)


def test_anchors_without_a_data_root_name_the_places_looked_in(tmp_path, monkeypatch):
    import autocrop.data.locate as locate

    monkeypatch.delenv("AUTOCROP_DATA_DIR", raising=False)
    monkeypatch.setattr(locate, "checkout_root", lambda: None)  # an installed package: no data root at all
    with pytest.raises(DatasetError, match="pdefined_anchors_1745.json not found"):
        load_anchors(tmp_path / "FCDB")
    (tmp_path / "anchors").mkdir()
    (tmp_path / "anchors" / "pdefined_anchors_1745.json").write_text(json.dumps([[0, 0, 1, 1]]))
    assert load_anchors(tmp_path / "FCDB")[1] == tmp_path / "anchors" / "pdefined_anchors_1745.json"


@pytest.mark.data
def test_shared_anchor_file_has_1745_normalised_views(data_dir):
    if not (data_dir / "anchors" / "pdefined_anchors_1745.json").is_file():
        pytest.skip(f"no anchors under {data_dir}")
    anchors, _ = load_anchors(data_dir / "FCDB")
    assert anchors.shape == (1745, 4)


class _Item:
    def __init__(self, name: str) -> None:
        self.name, self.path = name, Path("/x") / f"{name}.jpg"


def test_training_guard_matches_file_names_and_stems_of_the_same_dataset():
    items = [_Item("212000"), _Item("213811"), _Item("216186")]
    card = {"training_images": [{"dataset": "gaicd", "name": "212000.jpg"}, {"dataset": "fcdb", "name": "213811.jpg"},
                                {"dataset": "gaicd", "name": "216186"}]}
    kept, trained = split_training_items(items, card, "gaicd")
    assert [i.name for i in kept] == ["213811"]
    assert [i.name for i in trained] == ["212000", "216186"]
    assert split_training_items(items, {}, "gaicd") == (items, [])


# ---------------------------------------------------------------------------------------------
# the Cropper path: boxes scaled to the decoded image, decoded no larger than needed
# ---------------------------------------------------------------------------------------------


class _RecordingScorer:
    """A stand-in model: records what it is given, scores by box area (in the pixels it receives)."""

    input_short_side = 256

    def __init__(self, card: dict | None = None) -> None:
        self.card = card or {"name": "recording", "training_images": []}
        self.calls: list[tuple[tuple[int, int], np.ndarray]] = []

    def score(self, image, boxes):
        boxes = np.asarray(boxes, dtype=np.float32)
        self.calls.append((image.size, boxes.copy()))
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def test_scores_go_through_the_cropper_with_boxes_in_decoded_pixels(tmp_path):
    root = make_mini_gaicd(tmp_path / "GAICD", count=1, size=(1024, 768))
    fake = _RecordingScorer()
    report = run_bench(BenchOptions("gaicd", data_dir=root), cropper=Cropper(scorer=fake))
    (size, received), = fake.calls
    assert size == (512, 384)  # 1024 px JPEG -> draft 1/2 (short side 384 >= 256)
    from autocrop.data import load_gaicd

    item = load_gaicd(root, "test")[0][0]
    np.testing.assert_allclose(received * 2.0, item.boxes, rtol=1e-6)
    assert report["images"]["measured"] == 1 and report["per_image"][0]["candidates"] == len(item.boxes)
    assert report["model"]["device"] == "cpu" and report["speed"]["torch_import_s"] == 0.0


# ---------------------------------------------------------------------------------------------
# whole runs
# ---------------------------------------------------------------------------------------------


class _OracleCropper(Cropper):
    """A Cropper that decodes for real but "scores" with the annotation itself (GAICD: MOS; boxes: IoU)."""

    def __init__(self, truth: dict[str, np.ndarray], card: dict | None = None) -> None:
        super().__init__(scorer=_RecordingScorer(card))
        self.truth = truth
        self.decoded: list[str] = []

    def decode(self, source):
        self.decoded.append(Path(source).name)
        return super().decode(source)

    def score(self, photo, boxes):
        truth = self.truth[Path(photo.info.source).name]
        if truth.ndim == 1:  # GAICD MOS
            return truth.astype(np.float32)
        return np.asarray([crop_iou(b, truth).max() for b in np.asarray(boxes)], np.float32)


def _gaicd_truth(root: Path) -> tuple[list, dict[str, np.ndarray]]:
    from autocrop.data import load_gaicd

    items = load_gaicd(root, "test")[0]
    return items, {i.path.name: i.scores for i in items}


def test_gaicd_run_with_oracle_scores_excludes_training_images_and_beats_baselines(mini_gaicd):
    items, truth = _gaicd_truth(mini_gaicd)
    card = {"training_images": [{"dataset": "gaicd", "name": items[0].path.name}]}
    oracle = _OracleCropper(truth, card)
    report = run_bench(BenchOptions("gaicd", data_dir=mini_gaicd), cropper=oracle)
    assert report["images"]["excluded_training"] == 1 and report["images"]["excluded_names"] == [items[0].name]
    assert report["images"]["measured"] == 3 and items[0].path.name not in oracle.decoded
    assert len(oracle.decoded) == 3  # each image decoded exactly once
    model = report["results"]["model"]
    assert model["acc1_5"] == 100.0 and model["acc5_mean"] == 100.0 and model["srcc"] == pytest.approx(1.0)
    expected = gaicd_metrics([i.scores for i in items[1:]], [i.scores for i in items[1:]])
    assert model["pcc"] == pytest.approx(expected.pcc, abs=1e-4)
    assert model["fewer_than_n"] == {"5": 0, "10": 3}  # 9 annotated crops per photo
    for name in ("random", "largest", "centre"):
        assert report["results"][name]["srcc"] < 1.0
        assert report["margins"][name]["srcc"]["better"] is True
    assert report["speed"]["ms_per_image"]["median"] > 0 and report["machine"]["torch_threads"] >= 1
    assert report["machine"]["cpus_available"] >= 1
    json.dumps(report)  # serialisable

    flagged = run_bench(BenchOptions("gaicd", data_dir=mini_gaicd, limit=2, include_train=True),
                        cropper=_OracleCropper(truth, card))
    assert flagged["images"]["excluded_training"] == 0 and flagged["images"]["included_training"] == 1
    assert flagged["per_image"][0].get("training_image") is True and "training_image" not in flagged["per_image"][1]


def test_gaicd_run_refuses_when_every_image_is_a_training_image(mini_gaicd):
    items, truth = _gaicd_truth(mini_gaicd)
    card = {"training_images": [{"dataset": "gaicd", "name": i.path.name} for i in items]}
    with pytest.raises(DatasetError, match=f"all {len(items)} GAICD images are listed as training images") as info:
        run_bench(BenchOptions("gaicd", data_dir=mini_gaicd), cropper=_OracleCropper(truth, card))
    assert "include_train" in str(info.value) and "--" not in str(info.value)


def test_missing_and_corrupt_photos_are_counted(mini_gaicd):
    (mini_gaicd / "images" / "test" / "900000.jpg").unlink()
    (mini_gaicd / "images" / "test" / "900001.jpg").write_bytes(b"\xff\xd8\xff garbage")
    report = run_bench(BenchOptions("gaicd", data_dir=mini_gaicd), cropper=Cropper(scorer=_RecordingScorer()))
    images = report["images"]
    assert images["annotated"] == 4 and images["missing"] == 1
    assert images["unreadable"] == 1 and images["unreadable_names"] == ["900001"] and images["measured"] == 2


def test_annotations_outside_the_photo_are_a_dataset_error(mini_gaicd):
    note = mini_gaicd / "annotations" / "test" / "900002.txt"
    note.write_text("0 0 100 900 3.0\n")  # x2 = 900 on a 512 px wide photo
    with pytest.raises(DatasetError, match="900002: candidate crops do not fit the photo"):
        run_bench(BenchOptions("gaicd", data_dir=mini_gaicd), cropper=Cropper(scorer=_RecordingScorer()))


@pytest.mark.parametrize("candidates", ["grid", "anchors"])
def test_fcdb_run_top1_is_the_best_candidate_for_an_oracle(mini_fcdb, candidates):
    from autocrop.bench.datasets import load_fcdb_boxes

    items = sorted(load_fcdb_boxes(mini_fcdb, "test")[0], key=lambda i: i.name)
    truth = {i.path.name: i.gts for i in items}
    report = run_bench(BenchOptions("fcdb", data_dir=mini_fcdb, candidates=candidates), cropper=_OracleCropper(truth))
    assert report["candidates"] == candidates and report["images"]["missing"] == 1
    assert report["images"]["measured"] == 3
    if candidates == "anchors":
        assert report["speed"]["candidates_per_image"] == 4.0
        assert report["anchors_file"] == str(mini_fcdb / "pdefined_anchors_1745.json")
    model = report["results"]["model"]
    for name in ("random", "largest"):  # the oracle picks the candidate closest to the truth
        assert report["results"][UNREFINED]["iou"] >= report["results"][name]["iou"]
    assert 0.5 < model["iou"] <= 1.0 and 0 <= model["disp"] < 0.2
    assert "model_unrefined" not in report["margins"]
    per = report["per_image"]
    assert box_metrics([np.array(p["top1"]) for p in per], [i.gts for i in items],
                       [MINI_SIZE] * len(items)).iou == pytest.approx(model["iou"], abs=1e-3)



def test_fcdb_top1_is_the_crop_command_s_own_crop(mini_fcdb, fake_scorer):
    """The written top-1 of the bench equals what ``Cropper.analyze`` (``autocrop crop``) returns, free ratio."""
    cropper = Cropper(scorer=fake_scorer)
    report = run_bench(BenchOptions("fcdb", data_dir=mini_fcdb), cropper=cropper)
    for record in report["per_image"]:
        crop = cropper.analyze(mini_fcdb / "data" / record["name"], ratio="free", top=1).crops[0]
        assert record["top1"] == [float(v) for v in crop.box]
        assert record["candidates"] == cropper.analyze(mini_fcdb / "data" / record["name"]).candidates
    unrefined = run_bench(BenchOptions("fcdb", data_dir=mini_fcdb), cropper=Cropper(scorer=fake_scorer, refine=False))
    assert unrefined["results"]["model"] == unrefined["results"][UNREFINED]


def test_real_network_runs_end_to_end_on_both_layouts(mini_gaicd, mini_fcdb):
    """The real network (random head: its scores mean nothing) through the real Cropper path."""
    from autocrop.model import ViewScorer

    cropper = Cropper(scorer=ViewScorer.untrained(seed=0))
    gaicd = run_bench(BenchOptions("gaicd", data_dir=mini_gaicd, limit=2), cropper=cropper)
    fcdb = run_bench(BenchOptions("fcdb", data_dir=mini_fcdb, limit=2, candidates="anchors"), cropper=cropper)
    for report in (gaicd, fcdb):
        json.dumps(report)  # serialisable
        assert report["images"]["measured"] == 2 and report["model"]["name"] == "untrained"
        for values in report["results"].values():
            assert all(np.isfinite(v) for k, v in values.items() if isinstance(v, float))
    assert set(gaicd["margins"]) == {"random", "largest", "centre"}


@pytest.mark.data
def test_real_model_runs_end_to_end_on_real_data(data_dir):
    from autocrop.model import ViewScorer

    if not (data_dir / "GAICD" / "annotations" / "test").is_dir() or not (data_dir / "FCDB" / "data").is_dir():
        pytest.skip(f"GAICD or FCDB missing under {data_dir}")
    cropper = Cropper(scorer=ViewScorer.untrained(seed=0))
    gaicd = run_bench(BenchOptions("gaicd", data_dir=data_dir / "GAICD", limit=2), cropper=cropper)
    fcdb = run_bench(BenchOptions("fcdb", data_dir=data_dir / "FCDB", limit=2), cropper=cropper)
    assert gaicd["images"]["measured"] == 2 and fcdb["images"]["measured"] == 2
    assert fcdb["images"]["missing"] > 0


# ---------------------------------------------------------------------------------------------
# options and data folders
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, message", [
    (BenchOptions("imagenet"), "dataset 'imagenet': unknown (choose gaicd, fcdb, flms)"),
    (BenchOptions("gaicd", candidates="grid"), "candidates applies to fcdb and flms"),
    (BenchOptions("fcdb", candidates="all"), "candidates 'all': unknown candidate set"),
    (BenchOptions("fcdb", limit=0), "limit must be >= 1"),
    (BenchOptions("fcdb", threads=0), "threads must be >= 1"),
    (BenchOptions("fcdb", split="val"), "split 'val': use test or train"),
    (BenchOptions("fcdb", device="banana"), "device 'banana'"),
])
def test_option_errors_are_one_line_and_name_the_parameter(options, message):
    with pytest.raises(UsageError) as info:
        run_bench(options)
    assert message in str(info.value) and "--" not in str(info.value) and "\n" not in str(info.value)


def test_flms_has_only_a_test_split(tmp_path):
    with pytest.raises(UsageError, match="split 'train': FLMS has a single test set"):
        run_bench(BenchOptions("flms", data_dir=tmp_path, split="train"))


def test_dataset_dir_precedence_data_dir_then_own_dir_then_data_root(tmp_path, monkeypatch):
    for name in ("given", "own_gaicd", "own_fcdb", "root/GAICD", "root/FCDB", "from_file"):
        (tmp_path / name).mkdir(parents=True)
    # a config file is never read below autocrop/commands: its gaicd_dir changes nothing here
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(f'gaicd_dir = "{tmp_path / "from_file"}"\n')
    monkeypatch.setenv("AUTOCROP_CONFIG_DIR", str(config))
    monkeypatch.setenv("AUTOCROP_GAICD_DIR", str(tmp_path / "from_file"))  # nor the CLI's environment
    monkeypatch.setenv("AUTOCROP_DATA_DIR", str(tmp_path / "root"))
    assert resolve_bench_dir(BenchOptions("gaicd")) == tmp_path / "root" / "GAICD"
    assert resolve_bench_dir(BenchOptions("fcdb", gaicd_dir=tmp_path / "own_gaicd")) == tmp_path / "root" / "FCDB"
    assert resolve_bench_dir(BenchOptions("gaicd", gaicd_dir=tmp_path / "own_gaicd")) == tmp_path / "own_gaicd"
    assert resolve_bench_dir(BenchOptions("fcdb", fcdb_dir=tmp_path / "own_fcdb")) == tmp_path / "own_fcdb"
    assert resolve_bench_dir(BenchOptions("gaicd", data_dir=tmp_path / "given",
                                          gaicd_dir=tmp_path / "own_gaicd")) == tmp_path / "given"
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_bench_dir(BenchOptions("flms"))


def test_bench_package_reads_no_config_file():
    import autocrop.bench as package

    for source in Path(package.__file__).parent.glob("*.py"):
        text = source.read_text()
        assert "autocrop.config" not in text and "config_file" not in text, source.name
