"""ONNX export of a view-ranking model: ``export_onnx(weights, out)``, the graph of :mod:`~autocrop.model.onnx_scorer`.

The graph: inputs ``image`` float32 [1, 3, H, W] (ImageNet-normalised network input, H and W dynamic) and
``boxes`` float32 [N, 4] (``x1 y1 x2 y2`` pixels of that input, N dynamic) -> ``scores`` float32 [N]. It is
``ViewRankingNet.predict`` traced by ``torch.export`` (BatchNorm folded into the convolutions first) and
translated by ``torch.onnx.export`` (opset 18), with the RoI operators mapped by hand:

- RoIAlign -> ONNX ``RoiAlign`` (``half_pixel``, ``avg``, the model's sampling ratio; boxes already in
  feature cells, ``spatial_scale`` 1);
- RoDAlign -> one ``RoiAlign`` over the whole map per image (bins x sampling ratio outputs, one sample
  each: exactly the samples of our kernel), the per-box mask of samples inside the crop (coordinates
  computed with the kernel's formula and operation order, so the mask is bit-identical) and an
  ``AveragePool`` of sampling-ratio x sampling-ratio.

Weights: by default the file holds the graph only. Every weight is an initializer with *external data*
(location: the safetensors file name) that :class:`~autocrop.model.onnx_scorer.OnnxScorer` supplies at
session creation from the safetensors file (``SessionOptions.add_external_initializers``), BatchNorm
folded in numpy (:func:`autocrop.model.onnx_scorer.graph_initializers`). The graph depends on the model
config only, so one graph serves every weights file of that config; its metadata (``autocrop.*`` keys)
records the config, the initializer names and the folds. ``embed_weights=True`` writes a standalone file.

Needs torch, ``onnx`` and ``onnxscript`` (the ``export`` extra); nothing here runs at inference time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig

if TYPE_CHECKING:
    import onnx
    from torch import Tensor, nn

    from autocrop.model.network import ViewRankingNet

OPSET = 18
EXPORT_DEPENDENCIES = "pip install onnx onnxscript (the autocrop-views[export] extra)"


def _opset() -> Any:
    """onnxscript's opset 18 (typed ``Any``: its precise per-op stubs reject list constants it accepts)."""
    from onnxscript import opset18

    return opset18


def _roi_align_onnx(features: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int,
                    sampling_ratio: int, aligned: bool) -> Any:
    """ONNX for ``autocrop::roi_align_forward``: features [B, C, H, W], rois [K, 5] -> [K, C, oh, ow]."""
    op = _opset()

    batch = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=7)  # INT64 [K]
    boxes = op.Slice(rois, [1], [5], [1])
    return op.RoiAlign(
        features, boxes, batch, coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        mode="avg", output_height=pooled_height, output_width=pooled_width, sampling_ratio=sampling_ratio,
        spatial_scale=float(spatial_scale),
    )


def _axis_constants(bins: int, sampling_ratio: int) -> tuple[np.ndarray, np.ndarray]:
    """(bin index, within-bin index + 0.5) of the bins * sampling_ratio samples along one axis, float32.

    The same values as ``autocrop.ops._sample_grid`` computes (small integers and halves: exact).
    """
    steps = np.arange(bins * sampling_ratio, dtype=np.float32)
    bin_index = np.floor(steps / np.float32(sampling_ratio)).astype(np.float32)
    return bin_index, (steps - bin_index * np.float32(sampling_ratio)) + np.float32(0.5)


def _rod_align_onnx(features: Any, rois: Any, spatial_scale: float, pooled_height: int, pooled_width: int,
                    sampling_ratio: int, aligned: bool) -> Any:
    """ONNX for ``autocrop::rod_align_forward``: one whole-map RoiAlign, per-box masks, average pooling."""
    op = _opset()

    s = sampling_ratio
    offset = np.float32(0.5 if aligned else 0.0)
    shape = op.Shape(features)
    height = op.Cast(op.Slice(shape, [2], [3], [0]), to=1)  # FLOAT [1]
    width = op.Cast(op.Slice(shape, [3], [4], [0]), to=1)
    batch_size = op.Slice(shape, [0], [1], [0])  # INT64 [1]
    zero = op.Constant(value_floats=[0.0])
    whole = op.Expand(op.Unsqueeze(op.Concat(zero, zero, width, height, axis=0), [0]),
                      op.Concat(batch_size, op.Constant(value_ints=[4]), axis=0))  # [B, 4] feature cells
    images = op.Range(op.Constant(value_int=0), op.Squeeze(batch_size, [0]), op.Constant(value_int=1))
    mode = "half_pixel" if aligned else "output_half_pixel"
    samples = op.RoiAlign(features, whole, images, coordinate_transformation_mode=mode, mode="avg",
                          output_height=pooled_height * s, output_width=pooled_width * s, sampling_ratio=1,
                          spatial_scale=1.0)  # [B, C, oh*s, ow*s]: every sample of the RoD grid

    def axis(length: Any, bins: int) -> Any:  # sample coordinates [bins * s], as ops._sample_grid orders them
        bin_index, within = (op.Constant(value_floats=c.tolist()) for c in _axis_constants(bins, s))
        bin_size = op.Div(length, op.Constant(value_float=float(bins)))
        first = op.Add(op.Constant(value_float=float(-offset)), op.Mul(bin_index, bin_size))
        return op.Add(first, op.Div(op.Mul(within, bin_size), op.Constant(value_float=float(s))))

    ys = op.Unsqueeze(axis(height, pooled_height), [0, 2])  # [1, oh*s, 1]
    xs = op.Unsqueeze(axis(width, pooled_width), [0, 1])  # [1, 1, ow*s]
    scale, shift = op.Constant(value_float=float(spatial_scale)), op.Constant(value_float=float(offset))

    def corner(column: int) -> Any:  # [K, 1, 1] box corner in feature cells
        return op.Unsqueeze(op.Sub(op.Mul(op.Slice(rois, [column], [column + 1], [1]), scale), shift), [2])

    x1, y1, x2, y2 = (corner(c) for c in (1, 2, 3, 4))
    inside = op.And(op.And(op.GreaterOrEqual(xs, x1), op.LessOrEqual(xs, x2)),
                    op.And(op.GreaterOrEqual(ys, y1), op.LessOrEqual(ys, y2)))  # [K, oh*s, ow*s]
    keep = op.Unsqueeze(op.Cast(op.Not(inside), to=1), [1])  # [K, 1, oh*s, ow*s]
    batch = op.Cast(op.Squeeze(op.Slice(rois, [0], [1], [1]), [1]), to=7)
    masked = op.Mul(op.Gather(samples, batch, axis=0), keep)  # [K, C, oh*s, ow*s]
    return op.AveragePool(masked, kernel_shape=[s, s], strides=[s, s])


def _predictor(net: ViewRankingNet) -> nn.Module:
    """``net.predict`` as the ``forward`` of a module (what torch.export traces), in eval mode."""
    from torch import nn

    class Predictor(nn.Module):
        def __init__(self, inner: ViewRankingNet) -> None:
            super().__init__()
            self.net = inner

        def forward(self, image: Tensor, boxes: Tensor) -> Tensor:
            return self.net.predict(image, boxes)

    return Predictor(net).eval()


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (torchvision absent, deprecations) while it runs; errors still raise."""
    import logging
    import warnings

    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def export_model(net: ViewRankingNet) -> onnx.ModelProto:
    """Trace ``net.predict`` with dynamic H, W and box count and translate it to ONNX (weights embedded)."""
    import torch

    from autocrop import ops

    ops.ensure_ops()
    config = net.config
    short = config.input_short_side
    image = torch.zeros(1, 3, short, round(short * 1.5))
    boxes = torch.tensor([[0.0, 0.0, image.shape[-1], short], [8.0, 8.0, image.shape[-1] / 2, short / 2]])
    height, width, count = torch.export.Dim("height", min=32), torch.export.Dim("width", min=32), torch.export.Dim("n")
    table: dict[Callable[..., Any], Callable[..., Any]] = {
        torch.ops.autocrop.roi_align_forward.default: _roi_align_onnx,
        torch.ops.autocrop.rod_align_forward.default: _rod_align_onnx,
    }
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(
            _predictor(net), (image, boxes), dynamo=True, opset_version=OPSET,
            input_names=["image", "boxes"], output_names=["scores"],
            dynamic_shapes={"image": {2: height, 3: width}, "boxes": {0: count}},
            custom_translation_table=table, optimize=True, verbose=False,
        )
    assert program is not None
    return program.model_proto


def _externalize(model: onnx.ModelProto, weight_names: set[str], location: str) -> list[str]:
    """Turn the initializers named in ``weight_names`` into external-data declarations (no bytes); their names."""
    import onnx

    names = []
    for tensor in model.graph.initializer:
        if tensor.name not in weight_names:
            continue  # the exporter's own small constants stay in the graph
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        del tensor.external_data[:]
        tensor.external_data.add(key="location", value=location)
        names.append(tensor.name)
    return names


def _strip_prefix(model: onnx.ModelProto, prefix: str) -> None:
    """Rename initializers ``prefix + name`` -> ``name`` (the export wrapper's attribute) and their uses."""
    renamed = {t.name: t.name[len(prefix):] for t in model.graph.initializer if t.name.startswith(prefix)}
    for tensor in model.graph.initializer:
        tensor.name = renamed.get(tensor.name, tensor.name)
    for node in model.graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]


def tidy_exported(model: onnx.ModelProto, weight_names: set[str], location: str, embed_weights: bool) -> list[str]:
    """Make an exported ``model`` an autocrop graph, in place -> the names of its external initializers.

    Drops the exporter's per-node provenance (FX nodes, stack traces: 85 % of the bytes) and the intermediate
    shapes (ONNX Runtime infers them), names the initializers as the weights file does (no ``net.`` prefix)
    and, unless ``embed_weights``, declares those of ``weight_names`` external (``location``).
    """
    for node in model.graph.node:
        del node.metadata_props[:]
    del model.graph.value_info[:]
    _strip_prefix(model, "net.")
    return [] if embed_weights else _externalize(model, weight_names, location)


def graph_from_net(net: ViewRankingNet, weights_sha256: str = "", location: str = "weights.safetensors",
                   embed_weights: bool = False) -> bytes:
    """The serialised ONNX model of ``net`` (eval mode, BatchNorm *not yet* folded: this folds it).

    Graph-only unless ``embed_weights``: initializers named as the weights file's tensors (folded convolutions
    keep their conv's names and gain ``.bias``) are declared external (``location``) and listed in the metadata.
    """
    from autocrop.model.fuse import batchnorm_pairs, fold_batchnorm
    from autocrop.model.onnx_scorer import GRAPH_FORMAT, graph_key

    net.eval()
    folds = batchnorm_pairs(net.features, prefix="features.")
    fold_batchnorm(net.features)
    model = export_model(net)
    external = tidy_exported(model, set(net.state_dict()), location, embed_weights)
    config = net.config
    return finished_graph(model, GRAPH_FORMAT, graph_key(config), config.to_json(), external, folds, weights_sha256,
                          "image float32 [1, 3, H, W] ImageNet-normalised; boxes float32 [N, 4] x1 y1 x2 y2 "
                          "pixels of that image -> scores float32 [N]",
                          "autocrop view-ranking model (autocrop.model.export)")


def finished_graph(model: Any, graph_format: str, key: str, config_json: str, external: list[str],
                   folds: list[Any], weights_sha256: str, inputs: str, doc: str) -> bytes:
    """``model`` (an ``onnx.ModelProto``) with autocrop's metadata, serialised.

    The metadata every autocrop graph carries: ``autocrop.format``, ``graph_key`` (which configs the graph
    serves), ``model_config``, the external ``initializers`` (names the weights file supplies), the BatchNorm
    ``folds`` to apply to them, whether the weights are ``embedded``, their ``weights_sha256`` and a
    description of the ``inputs``.
    """
    metadata = {
        "autocrop.format": graph_format,
        "autocrop.graph_key": key,
        "autocrop.model_config": config_json,
        "autocrop.initializers": json.dumps(external),
        "autocrop.folds": json.dumps(folds if external else []),
        "autocrop.embedded": "false" if external else "true",
        "autocrop.weights_sha256": weights_sha256,
        "autocrop.inputs": inputs,
    }
    del model.metadata_props[:]
    for name, value in metadata.items():
        model.metadata_props.add(key=name, value=value)
    model.producer_name, model.doc_string = "autocrop", doc
    return bytes(model.SerializeToString())


def build_graph(config: ModelConfig) -> bytes:
    """A graph-only ONNX model for ``config`` (weights are supplied at session creation, so none are needed)."""
    import torch

    from autocrop.model.network import ViewRankingNet

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ViewRankingNet(config)
    return graph_from_net(net)


def export_onnx(weights_path: str | Path, out_path: str | Path, embed_weights: bool = False,
                verify: bool = True) -> Path:
    """Write the ONNX model of a safetensors model file to ``out_path`` (atomically); returns ``out_path``.

    Graph-only by default (``MODEL.onnx`` beside ``MODEL.safetensors`` is what ``load_scorer`` looks for);
    ``embed_weights`` writes a standalone model. ``verify`` scores a test image with both runtimes and refuses
    to write when they differ by more than 1e-4. Raises :class:`ModelError` (one line) on any problem.
    """
    from autocrop.io.fs import atomic_write_bytes
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import load_state_checked, load_weights, sha256_of

    weights_path, out_path = Path(weights_path), Path(out_path)
    try:
        import onnx  # noqa: F401 - needed by torch.onnx.export
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ModelError(f"export needs {err.name}: {EXPORT_DEPENDENCIES}") from None
    tensors, config, card = load_weights(weights_path)
    net = ViewRankingNet(config)
    load_state_checked(net, tensors, weights_path)
    graph = graph_from_net(net, sha256_of(weights_path), weights_path.name, embed_weights)
    if verify:
        worst = verify_graph(graph, weights_path)
        if worst > 1e-4:
            raise ModelError(f"{weights_path}: the ONNX graph's scores differ from torch's by {worst:.2g} (> 1e-4)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, graph, overwrite=True)
    return out_path


def verify_graph(graph: bytes, weights_path: Path, seed: int = 0) -> float:
    """Worst absolute score difference, ONNX Runtime vs torch, on a random 300 x 451 photo and 40 boxes."""
    from PIL import Image

    from autocrop.model.onnx_scorer import OnnxScorer, load_numpy_weights
    from autocrop.model.torch_scorer import load_torch_scorer

    rng = np.random.default_rng(seed)
    photo = Image.fromarray(rng.integers(0, 256, (300, 451, 3), dtype=np.uint8))
    corners = rng.uniform(0, [225, 150, 225, 150], (40, 4)).astype(np.float32)
    boxes = np.concatenate([corners[:, :2], corners[:, 2:] + np.asarray([225, 150], np.float32)], axis=1)
    tensors, config, card = load_numpy_weights(weights_path)
    onnx_scores = OnnxScorer(graph, tensors, config, card, weights_path).score(photo, boxes)
    torch_scores = load_torch_scorer(weights_path, "cpu").score(photo, boxes)
    return float(np.abs(onnx_scores - torch_scores).max())
