"""The bench runner: dataset readers it adds (FLMS, anchors), the training-image guard, the engine path
(box scaling), and whole runs on real GAICD / FCDB images with oracle and real (untrained) scorers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from autocrop.bench.datasets import load_anchors, load_flms, split_training_items
from autocrop.bench.metrics import box_metrics, gaicd_metrics
from autocrop.bench.runner import BenchOptions, run_bench
from autocrop.bench.scoring import BenchScorer, DecodedImage
from autocrop.errors import DatasetError, InputError

DATA = Path(os.environ.get("AUTOCROP_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_gaicd = pytest.mark.skipif(not (DATA / "GAICD" / "annotations" / "test").is_dir(), reason=f"GAICD not found under {DATA}")
needs_fcdb = pytest.mark.skipif(not (DATA / "FCDB" / "cropping_testing_set.json").is_file(), reason=f"FCDB not found under {DATA}")


# ---------------------------------------------------------------------------------------------
# FLMS reader (public release layout), anchors, training guard
# ---------------------------------------------------------------------------------------------


def _write_flms(root: Path, entries: list[tuple[str, list[list[float]]]], images: list[str]) -> None:
    from PIL import Image
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


@pytest.mark.skipif(not (DATA / "anchors" / "pdefined_anchors_1745.json").is_file(), reason="anchors not found")
def test_shared_anchor_file_has_1745_normalised_views():
    anchors, _ = load_anchors(DATA / "FCDB")
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
# the engine path: boxes scaled to the decoded image, decoded no larger than needed
# ---------------------------------------------------------------------------------------------


class _RecordingScorer:
    """A stand-in model: records what it is given, scores by box area (in the pixels it receives)."""

    input_short_side = 256
    card = {"name": "recording", "training_images": []}

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, int], np.ndarray]] = []

    def score(self, image, boxes):
        boxes = np.asarray(boxes, dtype=np.float32)
        self.calls.append((image.size, boxes.copy()))
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


@needs_gaicd
def test_scores_go_through_the_engine_with_boxes_in_decoded_pixels():
    from autocrop.data import load_gaicd

    item = load_gaicd(DATA / "GAICD", "test")[0][0]
    fake = _RecordingScorer()
    bench = BenchScorer.from_scorer(fake)
    decoded = bench.decode(item.path)
    from PIL import Image

    with Image.open(item.path) as im:
        assert (decoded.width, decoded.height) == im.size
    assert min(decoded.reduced.image.size) >= 256 and decoded.scale == 2.0  # 1024 px JPEG -> draft 1/2
    scores = bench.score(decoded, item.boxes)
    (size, received), = fake.calls
    assert size == decoded.reduced.image.size
    np.testing.assert_allclose(received * decoded.scale, item.boxes, rtol=1e-6)
    assert scores.shape == (len(item.boxes),)


# ---------------------------------------------------------------------------------------------
# whole runs
# ---------------------------------------------------------------------------------------------


class _OracleBench:
    """Duck-typed BenchScorer: decodes for real, "scores" with the annotation itself."""

    load_seconds = torch_import_seconds = 0.0
    weights_path = None

    def __init__(self, truth: dict[str, object], card: dict | None = None) -> None:
        self.truth = truth
        self.card = card or {"name": "oracle", "training_images": []}
        self.inner = BenchScorer.from_scorer(_RecordingScorer())
        self.decoded: list[str] = []

    def decode(self, path):
        self.decoded.append(Path(path).name)
        d = self.inner.decode(path)
        d.path = Path(path)  # type: ignore[attr-defined]
        return d

    def score(self, decoded: DecodedImage, boxes):
        truth = self.truth[decoded.path.name]  # type: ignore[attr-defined]
        if isinstance(truth, np.ndarray) and truth.ndim == 1:  # GAICD MOS
            return truth.astype(np.float32)
        from autocrop.bench.metrics import box_iou

        return np.asarray([box_iou(b, truth).max() for b in boxes], np.float32)  # FCDB: IoU with the truth


@needs_gaicd
def test_gaicd_run_with_oracle_scores_excludes_training_images_and_beats_baselines():
    from autocrop.data import load_gaicd

    items = load_gaicd(DATA / "GAICD", "test")[0]
    truth = {i.path.name: i.scores for i in items}
    card = {"training_images": [{"dataset": "gaicd", "name": items[0].path.name}]}
    oracle = _OracleBench(truth, card)
    report = run_bench(BenchOptions("gaicd", data_dir=DATA / "GAICD", limit=6), scorer=oracle)
    assert report["images"]["excluded_training"] == 1 and report["images"]["excluded_names"] == [items[0].name]
    assert report["images"]["measured"] == 6 and items[0].path.name not in oracle.decoded
    assert len(oracle.decoded) == 6  # each image decoded exactly once
    model = report["results"]["model"]
    assert model["acc1_5"] == 100.0 and model["acc10_mean"] == 100.0 and model["srcc"] == pytest.approx(1.0)
    expected = gaicd_metrics([i.scores for i in items[1:7]], [i.scores for i in items[1:7]])
    assert model["pcc"] == pytest.approx(expected.pcc, abs=1e-4)
    for name in ("random", "largest", "centre"):
        assert report["results"][name]["srcc"] < 1.0
        assert report["margins"][name]["srcc"]["better"] is True
    assert report["speed"]["ms_per_image"]["median"] > 0 and report["machine"]["torch_threads"] >= 1

    flagged = run_bench(BenchOptions("gaicd", data_dir=DATA / "GAICD", limit=2, include_train=True), scorer=_OracleBench(truth, card))
    assert flagged["images"]["excluded_training"] == 0 and flagged["images"]["included_training"] == 1
    assert flagged["per_image"][0].get("training_image") is True


@needs_gaicd
def test_gaicd_run_refuses_when_every_image_is_a_training_image():
    from autocrop.data import load_gaicd

    items = load_gaicd(DATA / "GAICD", "test")[0]
    card = {"training_images": [{"dataset": "gaicd", "name": i.path.name} for i in items]}
    with pytest.raises(DatasetError, match=f"all {len(items)} GAICD images are listed as training images"):
        run_bench(BenchOptions("gaicd", data_dir=DATA / "GAICD"), scorer=_OracleBench({}, card))


@needs_fcdb
@pytest.mark.parametrize("candidates", ["grid", "anchors"])
def test_fcdb_run_top1_is_the_best_candidate_for_an_oracle(candidates):
    from autocrop.bench.datasets import load_fcdb_boxes

    items = load_fcdb_boxes(DATA / "FCDB", "test")[0]
    items = sorted(items, key=lambda i: i.name)[:4]
    truth = {i.path.name: i.gts for i in items}
    report = run_bench(BenchOptions("fcdb", data_dir=DATA / "FCDB", candidates=candidates, limit=4), scorer=_OracleBench(truth))
    assert report["candidates"] == candidates and report["images"]["missing"] > 0
    model = report["results"]["model"]
    # the oracle picks the candidate closest to the truth: at least as good as every baseline
    for name in ("random", "largest"):
        assert model["iou"] >= report["results"][name]["iou"]
    assert 0.5 < model["iou"] <= 1.0 and 0 <= model["disp"] < 0.2
    # the unrefined row is the oracle's own pick: the candidate closest to the truth
    assert report["results"]["model_unrefined"]["iou"] >= model["iou"] - 0.05
    assert "model_unrefined" not in report["margins"]
    per = report["per_image"]
    assert box_metrics([np.array(p["top1"]) for p in per], [i.gts for i in items],
                       _sizes(items)).iou == pytest.approx(model["iou"], abs=1e-3)


def _sizes(items):
    from PIL import Image

    out = []
    for i in items:
        with Image.open(i.path) as im:
            out.append(im.size)
    return out


@needs_gaicd
@needs_fcdb
def test_real_model_runs_end_to_end_on_both_datasets():
    """The real network (random head: its scores mean nothing) through the real engine path."""
    from autocrop.model import ViewScorer

    bench = BenchScorer.from_scorer(ViewScorer.untrained(seed=0))
    gaicd = run_bench(BenchOptions("gaicd", data_dir=DATA / "GAICD", limit=2), scorer=bench)
    fcdb = run_bench(BenchOptions("fcdb", data_dir=DATA / "FCDB", limit=2, candidates="anchors"), scorer=bench)
    for report in (gaicd, fcdb):
        json.dumps(report)  # serialisable
        assert report["images"]["measured"] == 2
        for values in report["results"].values():
            assert all(np.isfinite(v) for k, v in values.items() if isinstance(v, float))
    assert fcdb["speed"]["candidates_per_image"] == 1745.0
    assert set(gaicd["margins"]) == {"random", "largest", "centre"}


def test_option_errors_are_one_line():
    with pytest.raises(InputError, match="unknown dataset 'imagenet'"):
        run_bench(BenchOptions("imagenet"))
    with pytest.raises(InputError, match="--candidates applies to fcdb and flms"):
        run_bench(BenchOptions("gaicd", candidates="grid"))
    with pytest.raises(InputError, match="unknown candidate set 'all'"):
        run_bench(BenchOptions("fcdb", candidates="all"))
    with pytest.raises(InputError, match="--limit must be >= 1"):
        run_bench(BenchOptions("fcdb", limit=0))


def test_dataset_dir_precedence_cli_env_config_default(tmp_path, monkeypatch):
    from autocrop.bench.runner import resolve_bench_dir

    for name in ("cli", "env_gaicd", "data_root/GAICD", "from_file"):
        (tmp_path / name).mkdir(parents=True)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text(f'gaicd_dir = "{tmp_path / "from_file"}"\n')
    monkeypatch.setenv("AUTOCROP_CONFIG_DIR", str(config_dir))
    monkeypatch.delenv("AUTOCROP_GAICD_DIR", raising=False)
    monkeypatch.delenv("AUTOCROP_DATA_DIR", raising=False)
    assert resolve_bench_dir("gaicd", None) == tmp_path / "from_file"
    monkeypatch.setenv("AUTOCROP_DATA_DIR", str(tmp_path / "data_root"))
    assert resolve_bench_dir("gaicd", None) == tmp_path / "data_root" / "GAICD"
    monkeypatch.setenv("AUTOCROP_GAICD_DIR", str(tmp_path / "env_gaicd"))
    assert resolve_bench_dir("gaicd", None) == tmp_path / "env_gaicd"
    assert resolve_bench_dir("gaicd", tmp_path / "cli") == tmp_path / "cli"
    (config_dir / "config.toml").write_text("gaicd_dir = [\n")
    with pytest.raises(InputError, match="config.toml"):
        resolve_bench_dir("gaicd", None)
