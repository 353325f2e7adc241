"""ONNX Runtime path: preprocessing, exact shape-generic pooling, graph metadata, BatchNorm folding, parity with
torch (scores within 1e-4, same crops), runtime selection and fallbacks, export, and no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autocrop.errors import ModelError, UsageError
from autocrop.model import ModelConfig, load_scorer
from autocrop.model.onnx_scorer import PACKAGED_GRAPH, graph_key, read_onnx_metadata
from autocrop.model.weights import PACKAGED_WEIGHTS, save_weights

PARITY = 1e-4  # absolute, on the model's (standardised-MOS) scores

needs_ort = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
needs_packaged = pytest.mark.skipif(
    not (PACKAGED_WEIGHTS.is_file() and PACKAGED_GRAPH.is_file()), reason="packaged model or graph not built")


def _random_photo(height: int, width: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_numpy_preprocessing_is_bit_identical_to_training_tensors():
    import torch

    from autocrop.model.network import normalize_image, pixels_to_tensor
    from autocrop.model.scorer import resize_for_model, to_input_array

    photo, config = _random_photo(301, 457), ModelConfig()
    array, sx, sy = to_input_array(photo, config)
    pixels, sx2, sy2 = resize_for_model(photo, config)
    expected = normalize_image(pixels_to_tensor(pixels)).contiguous()
    assert array.dtype == np.float32 and array.flags["C_CONTIGUOUS"] and (sx, sy) == (sx2, sy2)
    assert torch.equal(torch.from_numpy(array), expected)


def test_exact_adaptive_pooling_equals_torch_bit_for_bit():
    import torch
    import torch.nn.functional as F

    from autocrop.model.network import adaptive_avg_pool2d_exact

    generator = torch.Generator().manual_seed(0)
    for height in range(1, 41):
        for width in (1, 2, 7, 32, 33, height):
            x = torch.randn(1, 5, height, width, generator=generator)
            size = ((height + 1) // 2, (width + 1) // 2)  # stride 8 -> stride 16 of MobileNetV2
            assert torch.equal(adaptive_avg_pool2d_exact(x, size), F.adaptive_avg_pool2d(x, size)), (height, width)
    x = torch.randn(2, 3, 10, 12, generator=generator)
    assert torch.equal(adaptive_avg_pool2d_exact(x, (10, 12)), x)  # 1-cell bins: the identity


def test_graph_key_ignores_what_the_graph_does_not_depend_on():
    base = ModelConfig(splitter=True, spatial=True)
    assert graph_key(base) == graph_key(ModelConfig(splitter=True, spatial=True, input_short_side=320,
                                                    max_long_side=640, dropout=0.1, pairwise=True))
    assert graph_key(base) != graph_key(ModelConfig(splitter=True, spatial=True, flip_tta=True))
    assert graph_key(base) != graph_key(ModelConfig())


def test_read_onnx_metadata_without_the_onnx_package():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph)
    for key, value in {"a": "1", "autocrop.model_config": json.dumps({"é": [1, 2]}), "empty": ""}.items():
        model.metadata_props.add(key=key, value=value)
    assert read_onnx_metadata(model.SerializeToString()) == {"a": "1", "autocrop.model_config": '{"\\u00e9": [1, 2]}',
                                                             "empty": ""}
    assert read_onnx_metadata(onnx.helper.make_model(graph).SerializeToString()) == {}
    with pytest.raises(ValueError):
        read_onnx_metadata(b"\x0a\xff\xff")  # truncated


def test_numpy_batchnorm_folding_matches_torch():
    import torch

    from autocrop.model.fuse import batchnorm_pairs, fold_batchnorm
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.onnx_scorer import fold_conv_bn

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig()).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    pairs = batchnorm_pairs(net.features, prefix="features.")
    bn_count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.features.modules())
    assert len(pairs) == bn_count == 51 and pairs[0] == ("features.0.0", "features.0.1", 1e-05)
    fold_batchnorm(net.features)
    folded = net.state_dict()
    for conv, bn, eps in pairs:
        parts = {p: state[f"{bn}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")}
        weight, bias = fold_conv_bn(state[f"{conv}.weight"], None, parts, eps)
        np.testing.assert_allclose(weight, folded[f"{conv}.weight"].numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bias, folded[f"{conv}.bias"].numpy(), rtol=1e-6, atol=1e-7)


@needs_ort
@needs_packaged
def test_packaged_graph_fits_the_packaged_weights():
    from autocrop.model.onnx_scorer import graph_initializers, load_numpy_weights

    metadata = read_onnx_metadata(PACKAGED_GRAPH.read_bytes())
    tensors, config, _ = load_numpy_weights(PACKAGED_WEIGHTS)
    assert metadata["autocrop.graph_key"] == graph_key(config)
    assert metadata["autocrop.embedded"] == "false"
    values = graph_initializers(metadata, tensors, PACKAGED_WEIGHTS)
    assert len(values) > 100 and all(v.dtype == np.float32 for v in values.values())
    assert PACKAGED_GRAPH.stat().st_size < 256 * 1024  # the graph only: the weights live in the safetensors file


@needs_ort
@needs_packaged
def test_onnx_and_torch_agree_on_the_example_photo(example_photo):
    from autocrop import Cropper
    from autocrop.candidates import grid_candidates

    onnx_scorer, torch_scorer = load_scorer(runtime="onnx"), load_scorer(runtime="torch")
    assert (onnx_scorer.runtime, torch_scorer.runtime) == ("onnx", "torch")
    assert onnx_scorer.card == torch_scorer.card and onnx_scorer.input_short_side == torch_scorer.input_short_side
    assert onnx_scorer.weights_path == torch_scorer.weights_path == PACKAGED_WEIGHTS
    cropper = Cropper(scorer=torch_scorer)
    image = cropper.decode(example_photo).image
    boxes = grid_candidates(image.width, image.height)
    scores_onnx, scores_torch = onnx_scorer.score(image, boxes), torch_scorer.score(image, boxes)
    assert scores_onnx.dtype == np.float32 and scores_onnx.shape == (len(boxes),)
    assert np.abs(scores_onnx - scores_torch).max() < PARITY
    assert list(np.argsort(-scores_onnx)[:5]) == list(np.argsort(-scores_torch)[:5])
    for ratio in (None, "16:9", "1:1"):
        crops = [Cropper(scorer=s).analyze(example_photo, ratio=ratio, top=3).crops
                 for s in (onnx_scorer, torch_scorer)]
        assert [c.box for c in crops[0]] == [c.box for c in crops[1]], ratio


@needs_ort
@needs_packaged
def test_onnx_scores_any_size_and_box_count():
    onnx_scorer, torch_scorer = load_scorer(runtime="onnx"), load_scorer(runtime="torch")
    rng = np.random.default_rng(1)
    for height, width, count in ((256, 256, 1), (300, 451, 7), (517, 260, 40), (260, 999, 3)):
        photo = _random_photo(height, width, seed=count)
        x1, y1 = rng.uniform(0, width / 2, count), rng.uniform(0, height / 2, count)
        boxes = np.stack([x1, y1, x1 + rng.uniform(8, width / 2, count), y1 + rng.uniform(8, height / 2, count)], 1)
        difference = np.abs(onnx_scorer.score(photo, boxes) - torch_scorer.score(photo, boxes)).max()
        assert difference < PARITY, (height, width, count, difference)
    assert onnx_scorer.score(_random_photo(100, 100), np.zeros((0, 4))).shape == (0,)


@needs_ort
@needs_packaged
def test_onnx_path_imports_no_torch():
    code = ("import sys; from PIL import Image; from autocrop.model import load_scorer; s = load_scorer(); "
            "s.score(Image.new('RGB', (300, 200)), [[0, 0, 300, 200], [10, 10, 200, 150]]); "
            "print(s.runtime, s.runtime_note, 'torch' in sys.modules, 'onnx' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["onnx", "None", "False", "False"]


def test_runtime_choices_are_checked(model_file):
    with pytest.raises(UsageError, match="runtime 'fast'"):
        load_scorer(model_file, runtime="fast")
    assert load_scorer(model_file, runtime="torch").runtime == "torch"
    with pytest.raises(ModelError, match="runtime onnx runs on the CPU"):
        load_scorer(model_file, device="cuda", runtime="onnx")


@needs_ort
def test_auto_falls_back_to_torch_with_one_line_when_no_graph_fits(tmp_path):
    from autocrop.model.network import ViewRankingNet

    config = ModelConfig(reduced_dim=4)  # no packaged graph has this config
    path = tmp_path / "m.safetensors"
    save_weights(path, ViewRankingNet(config).state_dict(), config, {"name": "t"})
    scorer = load_scorer(path)
    assert scorer.runtime == "torch"
    note = scorer.runtime_note
    assert note and "\n" not in note and "no ONNX graph fits this model" in note and "autocrop export" in note
    path.with_suffix(".onnx").write_bytes(b"not onnx")
    assert "m.onnx is not an ONNX file" in (load_scorer(path).runtime_note or "")


@needs_ort
def test_missing_onnxruntime_falls_back_or_fails_in_one_line(model_file, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    scorer = load_scorer(model_file)
    assert scorer.runtime == "torch" and "onnxruntime is not installed" in (scorer.runtime_note or "")
    with pytest.raises(ModelError, match="^runtime onnx: onnxruntime is not installed"):
        load_scorer(model_file, runtime="onnx")


@needs_ort
@needs_packaged
def test_packaged_graph_serves_other_weights_of_the_same_config(tmp_path):
    from autocrop.model.network import ViewRankingNet

    config = ModelConfig(splitter=True, spatial=True, input_short_side=192, max_long_side=384)
    path = tmp_path / "tuned.safetensors"
    save_weights(path, ViewRankingNet(config).state_dict(), config, {"name": "t"})
    onnx_scorer, torch_scorer = load_scorer(path), load_scorer(path, runtime="torch")
    assert onnx_scorer.runtime == "onnx" and onnx_scorer.input_short_side == 192
    photo, boxes = _random_photo(240, 320), [[0, 0, 320, 240], [30, 20, 250, 200], [100, 0, 320, 180]]
    assert np.abs(onnx_scorer.score(photo, boxes) - torch_scorer.score(photo, boxes)).max() < PARITY


@needs_ort
@needs_packaged
def test_a_card_ties_its_graph_by_sha256(tmp_path):
    import shutil

    from autocrop.model.card import read_card, write_card
    from autocrop.model.weights import sha256_of

    weights = tmp_path / "default.safetensors"
    for suffix in (".safetensors", ".json", ".onnx"):
        shutil.copy(PACKAGED_WEIGHTS.with_suffix(suffix), weights.with_suffix(suffix))
    card = read_card(weights)
    card["onnx_graph"] = {"file": "default.onnx", "sha256": sha256_of(weights.with_suffix(".onnx"))}
    write_card(weights, card)
    assert load_scorer(weights).graph_source == str(weights.with_suffix(".onnx"))
    card["onnx_graph"]["sha256"] = "0" * 64  # a replaced graph file is not used (the packaged one fits instead)
    write_card(weights, card)
    assert load_scorer(weights).graph_source == str(PACKAGED_GRAPH)


# ------------------------------------------------------------------------------ export (torch + onnx + onnxscript)

EXPORT_CONFIG = ModelConfig(reduced_dim=4, align_size=7, flip_tta=True)  # GAIC head, batch of two (flip)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random model of EXPORT_CONFIG and its graph, written by the ``export`` verb beside it (about 30 s)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    import torch
    import typer
    from typer.testing import CliRunner

    from autocrop.commands import export
    from autocrop.model.network import ViewRankingNet

    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("export") / "model.safetensors"
    save_weights(path, ViewRankingNet(EXPORT_CONFIG).state_dict(), EXPORT_CONFIG, {"name": "t"})
    app = typer.Typer()
    export.register(app)
    app.command("other")(lambda: None)  # two verbs: typer keeps "export" as a sub-command
    result = CliRunner().invoke(app, ["export", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["onnx"] == str(path.with_suffix(".onnx")) and report["weights"] == "external"
    again = CliRunner().invoke(app, ["export", str(path)])
    assert again.exit_code != 0 and "exists" in str(again.exception)  # never replaced without --overwrite
    return path


def test_exported_graph_is_used_beside_its_model_and_agrees_with_torch(exported):
    metadata = read_onnx_metadata(exported.with_suffix(".onnx").read_bytes())
    assert metadata["autocrop.graph_key"] == graph_key(EXPORT_CONFIG) and json.loads(metadata["autocrop.folds"])
    onnx_scorer, torch_scorer = load_scorer(exported), load_scorer(exported, runtime="torch")
    assert onnx_scorer.runtime == "onnx" and onnx_scorer.runtime_note is None
    rng = np.random.default_rng(2)
    for height, width in ((256, 400), (390, 260), (333, 333)):
        photo = _random_photo(height, width, seed=height)
        boxes = np.concatenate([rng.uniform(0, 60, (25, 2)), rng.uniform(120, 250, (25, 2))], 1)
        assert np.abs(onnx_scorer.score(photo, boxes) - torch_scorer.score(photo, boxes)).max() < PARITY


def test_runtime_onnx_builds_a_missing_graph(exported, tmp_path, monkeypatch):
    from autocrop.model import export

    other = tmp_path / "copy.safetensors"
    other.write_bytes(exported.read_bytes())
    (tmp_path / "copy.json").write_bytes(exported.with_suffix(".json").read_bytes())
    built = []
    monkeypatch.setattr(export, "build_graph", lambda config: built.append(config) or
                        exported.with_suffix(".onnx").read_bytes())  # the real build takes 30 s: done once above
    assert load_scorer(other).runtime == "torch" and not built  # auto never builds: it says why and uses torch
    scorer = load_scorer(other, runtime="onnx")
    assert scorer.runtime == "onnx" and built == [EXPORT_CONFIG]


@needs_ort
@needs_packaged
def test_a_session_created_later_scores_the_same(example_photo):
    """open_session=False: the checks and weights happen at load, the session on open() or first use (the
    Cropper's preload creates it in a background thread); the scores are those of an eagerly opened one."""
    from autocrop.cropper import Cropper
    from autocrop.model.onnx_scorer import OnnxScorer

    eager, later, on_use = (load_scorer(open_session=flag) for flag in (True, False, False))
    assert later._graph_session._session is None and on_use._graph_session._session is None
    later.open()
    later.open()  # once only
    photo, boxes = _random_photo(300, 451), [[0, 0, 451, 300], [40, 30, 300, 250]]
    expected = eager.score(photo, boxes)
    assert np.array_equal(later.score(photo, boxes), expected) and np.array_equal(on_use.score(photo, boxes), expected)
    cropper = Cropper()
    cropper.preload()
    assert isinstance(cropper._scorer, OnnxScorer)  # loaded in this thread; the session opens in the background
    cropper.wait()
    assert cropper._scorer._graph_session._session is not None
    assert cropper.crop(example_photo, ratio="1:1").crops == Cropper().crop(example_photo, ratio="1:1").crops


@needs_ort
@needs_packaged
def test_a_session_onnx_runtime_refuses_later_is_one_line_at_first_use(tmp_path):
    """Weights whose names fit the graph but whose shapes do not: with open_session=False the load succeeds and
    the first use raises the one-line ModelError naming the file (a preload swallows it; crop reports it)."""
    import hashlib

    from safetensors.numpy import save_file

    from autocrop.cropper import Cropper
    from autocrop.model.onnx_scorer import load_numpy_weights

    tensors, config, card = load_numpy_weights(PACKAGED_WEIGHTS)
    name = next(k for k, v in tensors.items() if k.endswith("weight") and v.ndim == 2)
    tensors[name] = np.zeros((tensors[name].shape[0], tensors[name].shape[1] + 1), np.float32)
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt", "config": json.dumps(card["config"])})
    card = {**card, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "weights_file": path.name}
    path.with_suffix(".json").write_text(json.dumps(card))  # a card that matches: only the shapes are wrong
    scorer = load_scorer(path, runtime="onnx", open_session=False)
    with pytest.raises(ModelError, match=r"bad\.safetensors: ONNX Runtime cannot load the graph"):
        scorer.score(_random_photo(100, 100), [[0, 0, 50, 50]])
    cropper = Cropper(path, runtime="onnx")
    cropper.preload(faces=False)
    cropper.wait()
    with pytest.raises(ModelError, match=r"bad\.safetensors: ONNX Runtime cannot load the graph"):
        cropper.crop(_random_photo(120, 160), ratio="1:1")
