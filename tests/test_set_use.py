"""Using the set-prediction model everywhere the grid model is used: Cropper, crop, bench, export, runtimes.

The model is untrained (``SetScorer.untrained()`` or the same saved to a file): its crops mean nothing, but
every rule holds for them: exact ratios to the pixel, diverse top-k, faces and hints, one forward pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autocrop.bench.metrics import diversity_metrics, pairwise_ious
from autocrop.cropper import Cropper
from autocrop.errors import InputError, ModelError
from autocrop.examples import example_photo
from autocrop.faces import Face, rules
from autocrop.geometry import box_iou, reduce_ratio
from autocrop.model.set_config import SetModelConfig, read_arch
from autocrop.model.set_scorer import SetScorer, validity_scores
from autocrop.settings import CropSettings
from autocrop.views import exact_ratio_boxes, make_views

RATIOS = ("free", "16:9", "1:1", "4:5", "9:16", "original")
needs_ort = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")


class FixedFaces:
    """A face detector that always finds the same faces (pixels of the photo)."""

    def __init__(self, *boxes: tuple[float, float, float, float]) -> None:
        self.faces = tuple(Face(box=tuple(float(v) for v in b), score=0.9) for b in boxes)  # type: ignore[arg-type]

    def detect(self, image: Image.Image, scale: float = 1.0) -> tuple[Face, ...]:
        return self.faces


class CountingScorer(SetScorer):
    """The untrained set model, counting its forward passes."""

    calls = 0

    def propose(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        type(self).calls += 1
        return super().propose(image)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """torch at one thread: on a busy 2-core machine two threads spin and run 10x slower (DESIGN.md)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def set_scorer() -> SetScorer:
    return SetScorer.untrained(seed=0)


@pytest.fixture(scope="module")
def set_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained set model saved with its card (the real loading path)."""
    import torch

    from autocrop.model.set_net import SetCropNet
    from autocrop.model.set_weights import save_set_weights

    path = tmp_path_factory.mktemp("set") / "set_model.safetensors"
    torch.manual_seed(0)
    save_set_weights(path, SetCropNet(SetModelConfig()).state_dict(), SetModelConfig(),
                     {"name": "untrained set model", "training_images": []})
    return path


def _photos() -> list[Image.Image | Path]:
    rng = np.random.default_rng(1)
    return [example_photo(), Image.fromarray(rng.integers(0, 256, (400, 600, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (900, 300, 3), dtype=np.uint8)),
            Image.fromarray(rng.integers(0, 256, (97, 203, 3), dtype=np.uint8))]


# ------------------------------------------------------------------ crops from predictions


@pytest.mark.parametrize("index", range(4))
def test_every_ratio_is_exact_to_the_pixel_inside_the_photo(set_scorer: SetScorer, index: int) -> None:
    photo = _photos()[index]
    result = Cropper(scorer=set_scorer, faces=False).analyze(photo, ratio=list(RATIOS), top=3)
    assert {c.ratio for c in result.crops} == set(RATIOS)
    for crop in result.crops:
        x1, y1, x2, y2 = crop.box
        assert 0 <= x1 < x2 <= result.width and 0 <= y1 < y2 <= result.height
        assert all(isinstance(v, int) for v in crop.box)
        spec = CropSettings.build(ratio=crop.ratio).ratios[0]
        exact = spec.resolve(result.width, result.height)
        if exact is not None:
            a, b = reduce_ratio(*exact)
            assert (x2 - x1) * b == (y2 - y1) * a, (crop.ratio, crop.box)


def test_free_crops_are_the_predictions_scored_by_validity(set_scorer: SetScorer) -> None:
    image = Image.open(example_photo()).convert("RGB")
    boxes, validity = set_scorer.propose(image)
    assert boxes.shape == (SetModelConfig().queries, 4) and (np.diff(validity) <= 0).all()
    result = Cropper(scorer=set_scorer, faces=False).analyze(image, top=3)
    best = np.round(boxes[0]).astype(int)
    assert np.abs(np.asarray(result.crops[0].box) - best).max() <= 1
    assert result.crops[0].score == pytest.approx(float(validity[0]), abs=1e-6)
    assert result.candidates == len(boxes)


def test_exact_ratio_box_keeps_centre_and_area_and_beats_other_sizes() -> None:
    prediction = np.asarray([[100.0, 50.0, 500.0, 250.0]])  # 400 x 200 in a 1000 x 800 photo
    box = exact_ratio_boxes(prediction, 1000, 800, (1, 1))[0]
    side = box[2] - box[0]
    assert side == box[3] - box[1] and abs(side - np.sqrt(400 * 200)) <= 1
    assert abs((box[0] + box[2]) / 2 - 300) <= 1 and abs((box[1] + box[3]) / 2 - 150) <= 1
    best = box_iou(box, prediction)[0, 0]
    for other in range(150, 400, 10):  # every other square of that centre (moved inside) overlaps it less
        top = max(0, 150 - other / 2)
        square = np.asarray([300 - other / 2, top, 300 + other / 2, top + other])
        assert box_iou(square, prediction)[0, 0] <= best + 1e-9
    near_edge = exact_ratio_boxes(np.asarray([[0.0, 0.0, 90.0, 60.0]]), 100, 60, (16, 9))[0]
    assert near_edge.tolist() == [0, 3, 96, 57]  # k = 6 (sqrt(90 * 60 / 144) = 6.1; 7 does not fit), moved inside


def test_exact_ratio_scores_are_validity_times_iou(set_scorer: SetScorer) -> None:
    from threading import Lock

    from autocrop.io.decode import reduce_image

    image = Image.open(example_photo()).convert("RGB")
    decoded = reduce_image(image, set_scorer.input_short_side, label="example")
    settings = CropSettings.build(ratio=["free", "16:9"])
    views = make_views(set_scorer, Lock(), decoded, settings, None)
    assert views.refine is False and views.exact == [None, (16, 9)]
    free, wide = views.boxes[views.groups == 0], views.boxes[views.groups == 1]
    predicted, validity = set_scorer.propose(decoded.image)
    assert np.allclose(views.scores[views.groups == 0], validity, atol=1e-6)
    iou = np.diagonal(box_iou(wide, free))
    assert np.allclose(views.scores[views.groups == 1], validity * iou, atol=1e-6)
    own = validity_scores(free, free, validity)  # max over predictions: at least its own validity (IoU 1)
    assert (own >= validity - 1e-6).all() and own[0] == pytest.approx(float(validity[0]), abs=1e-6)


def test_one_forward_pass_per_photo_for_every_ratio() -> None:
    scorer = CountingScorer.untrained()
    CountingScorer.calls = 0
    cropper = Cropper(scorer=scorer, detector=FixedFaces((200, 100, 260, 170)))
    cropper.analyze(example_photo(), ratio=list(RATIOS), top=3)
    assert CountingScorer.calls == 1


@pytest.mark.parametrize("ratio", ["free", "16:9", "1:1", "9:16"])
def test_top_k_is_diverse(set_scorer: SetScorer, ratio: str) -> None:
    for photo in _photos()[:3]:
        result = Cropper(scorer=set_scorer, faces=False).analyze(photo, ratio=ratio, top=3)
        boxes = np.asarray([c.box for c in result.crops])
        assert len(boxes) == 3
        assert pairwise_ious(boxes).max() <= 0.7 + 1e-9, (ratio, boxes.tolist())
        first = Cropper(scorer=set_scorer, faces=False).analyze(photo, ratio=ratio, top=1).crops[0].box
        assert first == result.crops[0].box  # prefix-stable, as the grid


@pytest.mark.parametrize("ratio", ["free", "16:9", "4:5"])
def test_faces_are_never_cut_and_the_main_face_is_kept(set_scorer: SetScorer, ratio: str) -> None:
    photo = np.full((400, 600, 3), 120, dtype=np.uint8)
    plain = Cropper(scorer=set_scorer, faces=False).analyze(photo, ratio=ratio).crops[0].box
    x1, y1, x2, y2 = plain
    edge = x1 if x1 > 40 else x2 if x2 < 560 else 300  # a face across an edge of the model's own choice
    face = (edge - 30, (y1 + y2) / 2 - 30, edge + 30, (y1 + y2) / 2 + 30)
    faces = FixedFaces(face)
    result = Cropper(scorer=set_scorer, detector=faces).analyze(photo, ratio=ratio, top=2)
    subject = rules.make_subject(faces.faces, 600, 400)
    exact = CropSettings.build(ratio=ratio).ratios[0].resolve(600, 400)
    inside, cut = rules.face_states(np.asarray([c.box for c in result.crops], float), rules.for_ratio(subject, exact))
    assert inside.all() and not cut.any()
    assert result.crops[0].faces == (0,) and result.warnings == ()


def test_hints_apply_to_set_crops(set_scorer: SetScorer) -> None:
    photo = np.full((400, 600, 3), 90, dtype=np.uint8)
    result = Cropper(scorer=set_scorer, faces=False).analyze(photo, ratio=["free", "1:1"], top=2,
                                                             keep=[(20, 20, 120, 120)])
    for crop in result.crops:
        x1, y1, x2, y2 = crop.box
        assert x1 <= 20 and y1 <= 20 and x2 >= 120 and y2 >= 120
    with pytest.raises(InputError, match="holds every keep box"):
        Cropper(scorer=set_scorer, faces=False).analyze(photo, ratio="16:9", keep=[(0, 0, 600, 400)])


def test_a_photo_too_small_for_the_ratio_is_one_input_error(set_scorer: SetScorer) -> None:
    with pytest.raises(InputError, match="too small for ratio 20:1"):
        Cropper(scorer=set_scorer, faces=False).analyze(np.zeros((40, 19, 3), np.uint8), ratio="20:1")


def test_caller_boxes_are_scored_by_max_validity_times_iou(set_scorer: SetScorer) -> None:
    image = Image.open(example_photo()).convert("RGB")
    predicted, validity = set_scorer.propose(image)
    cropper = Cropper(scorer=set_scorer)
    scores = cropper.score(image, predicted[:3])
    assert np.allclose(scores, validity[:3], atol=1e-6) or (scores >= validity[:3] - 1e-6).all()
    assert np.allclose(scores, validity_scores(predicted[:3], predicted, validity), atol=1e-6)


def test_diversity_metrics() -> None:
    tops = [np.asarray([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]]), np.asarray([[0, 0, 4, 4]])]
    report = diversity_metrics(tops)
    assert report["images"] == 1 and report["max_pairwise_iou"] == 0.5
    assert report["mean_pairwise_iou"] == pytest.approx(0.5 / 3, abs=1e-5) and report["pairs_over"] == 0


# ------------------------------------------------------------------ files, dispatch, CLI


def test_a_saved_set_model_loads_by_path_on_torch_and_auto(set_file: Path) -> None:
    from autocrop.model import load_scorer

    assert read_arch(set_file) == "set"
    torch_scorer = load_scorer(set_file, runtime="torch")
    assert isinstance(torch_scorer, SetScorer) and torch_scorer.runtime_note is None
    cropper = Cropper(model=set_file)
    result = cropper.analyze(example_photo(), ratio=["free", "16:9"], top=2)
    assert len(result.crops) == 4
    assert cropper.input_short_side == SetModelConfig().input_short_side


@needs_ort
def test_auto_runtime_uses_a_fitting_graph_else_torch_with_a_note(set_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from autocrop.model import load_scorer, set_onnx
    from autocrop.model.onnx_scorer import read_onnx_metadata

    if set_onnx.PACKAGED_SET_GRAPH.is_file():  # the packaged graph: graph only, for the default config
        metadata = read_onnx_metadata(set_onnx.PACKAGED_SET_GRAPH.read_bytes())
        assert metadata["autocrop.graph_key"] == set_onnx.set_graph_key(SetModelConfig())
        assert metadata["autocrop.embedded"] == "false" and set_onnx.PACKAGED_SET_GRAPH.stat().st_size < 1_000_000
        scorer = load_scorer(set_file)
        assert scorer.runtime == "onnx" and scorer.runtime_note is None
    monkeypatch.setattr(set_onnx, "PACKAGED_SET_GRAPH", tmp_path / "absent.onnx")
    scorer = load_scorer(set_file)
    note = scorer.runtime_note or ""
    assert scorer.runtime == "torch" and "no ONNX graph fits this model" in note and "autocrop export" in note


def test_dispatch_by_arch_and_the_packaged_name(model_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    from autocrop.model import load_scorer, resolve
    from autocrop.model.resolve import resolve_weights

    assert read_arch(model_file) == "grid"
    assert not hasattr(load_scorer(model_file, runtime="torch"), "propose")
    monkeypatch.setattr(resolve, "PACKAGED_SET_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(ModelError) as err:
        resolve_weights("set")
    assert str(err.value) == "no packaged set model; train one with autocrop train --arch set and pass its path"
    assert resolve_weights("grid") == resolve_weights(None)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "set").write_bytes(b"a file named set")
    assert resolve_weights("set") == Path("set")  # a file of that name wins over the packaged name


def test_crop_cli_with_a_set_model_file(cli, set_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    code, out, err = cli(["crop", example_photo(), "--model", set_file, "--ratio", "16:9", "--top", "2",
                          "--json", "--runtime", "torch", "--out", tmp_path / "out"])
    assert code == 0, err
    crops = json.loads(out)["results"][0]["crops"] if "results" in json.loads(out) else json.loads(out)["crops"]
    assert len(crops) == 2
    for crop in crops:
        assert Path(crop["path"]).is_file() and crop["width"] * 9 == crop["height"] * 16
    code, _, err = cli(["crop", example_photo(), "--model", "set", "--dry-run"])
    if not (Path(__file__).parent.parent / "autocrop" / "weights" / "set.safetensors").is_file():
        assert code == 2 and "no packaged set model" in err and "Traceback" not in err


def test_batch_with_a_set_model_file(cli, set_file: Path, tmp_path: Path) -> None:  # noqa: ANN001
    album = tmp_path / "album"
    album.mkdir()
    Image.open(example_photo()).save(album / "a.jpg")
    code, out, err = cli(["batch", album, "--model", set_file, "--out", tmp_path / "crops", "--ratio", "1:1",
                          "--jobs", "1", "--json"])
    assert code == 0, err
    assert len(list((tmp_path / "crops").rglob("*.jpg"))) == 1


@pytest.mark.data
def test_bench_fcdb_with_a_set_model(cli, set_file: Path, data_dir: Path) -> None:  # noqa: ANN001
    if not (data_dir / "FCDB").is_dir():
        pytest.skip(f"FCDB not found in {data_dir}")
    code, out, err = cli(["bench", "--dataset", "fcdb", "--limit", "3", "--model", set_file, "--json",
                          "--data-dir", data_dir / "FCDB"])
    assert code == 0, err
    report = json.loads(out)
    assert report["model"]["arch"] == "set" and report["images"]["measured"] == 3
    assert 0.0 <= report["results"]["model"]["iou"] <= 1.0 and "model_unrefined" in report["results"]
    diversity = report["diversity"]["model"]
    assert diversity["images"] == 3 and diversity["max_pairwise_iou"] <= 0.7 + 1e-9
    assert "diversity" in err


@pytest.mark.data
def test_bench_gaicd_with_the_grid_model_as_reference(cli, set_file: Path, model_file: Path,  # noqa: ANN001
                                                      data_dir: Path) -> None:
    if not (data_dir / "GAICD").is_dir():
        pytest.skip(f"GAICD not found in {data_dir}")
    code, out, err = cli(["bench", "--dataset", "gaicd", "--limit", "2", "--model", set_file, "--reference",
                          model_file, "--include-train", "--json", "--data-dir", data_dir / "GAICD"])
    assert code == 0, err
    report = json.loads(out)
    assert report["model"]["arch"] == "set" and report["reference"]["arch"] == "grid"
    assert set(report["results"]) == {"model", "reference", "random", "largest", "centre"}
    assert "reference" not in report["margins"] and "reference: grid model" in err


# ------------------------------------------------------------------ ONNX Runtime


@needs_ort
def test_onnx_export_and_parity_with_torch(cli, set_file: Path) -> None:  # noqa: ANN001
    pytest.importorskip("onnxscript")
    from autocrop.model import load_scorer
    from autocrop.model.set_onnx import OnnxSetScorer

    code, _, err = cli(["export", set_file])
    assert code == 0, err
    graph = set_file.with_suffix(".onnx")
    assert graph.is_file() and graph.stat().st_size < 1_000_000  # graph only: the weights stay in safetensors
    onnx_scorer, torch_scorer = load_scorer(set_file), load_scorer(set_file, runtime="torch")
    assert isinstance(onnx_scorer, OnnxSetScorer) and onnx_scorer.runtime_note is None
    image = Image.open(example_photo()).convert("RGB")
    (a, va), (b, vb) = onnx_scorer.propose(image), torch_scorer.propose(image)
    size = np.asarray([image.width, image.height] * 2, np.float32)
    assert np.abs(va - vb).max() <= 1e-4 and np.abs(a / size - b / size).max() <= 1e-4
    crops = [Cropper(model=set_file, runtime=rt).analyze(image, ratio=["free", "4:5"], top=3).crops
             for rt in ("onnx", "torch")]
    assert [c.box for c in crops[0]] == [c.box for c in crops[1]]
    # the graph holds no weights: beside other weights of the same config, it runs those
    import torch

    from autocrop.model.set_net import SetCropNet
    from autocrop.model.set_weights import save_set_weights

    other = set_file.with_name("other.safetensors")
    torch.manual_seed(1)
    save_set_weights(other, SetCropNet(SetModelConfig()).state_dict(), SetModelConfig(), {"name": "other"})
    other.with_suffix(".onnx").write_bytes(graph.read_bytes())
    (a, va), (b, vb) = (load_scorer(other, runtime=rt).propose(image) for rt in ("onnx", "torch"))
    assert np.abs(va - vb).max() <= 1e-4 and np.abs(a / size - b / size).max() <= 1e-4
    graph.unlink()
