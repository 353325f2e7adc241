"""The set-prediction model on ONNX Runtime: export (:func:`export_set_onnx`) and :class:`OnnxSetScorer` (no torch).

The graph: input ``image`` float32 [1, 3, H, W] (ImageNet-normalised network input, H and W dynamic) ->
``boxes`` float32 [1, N, 4] (``x1 y1 x2 y2`` normalised 0..1 to that input) and ``logits`` float32 [1, N]:
:meth:`autocrop.model.set_net.SetCropNet.forward` traced by ``torch.onnx.export(dynamo=True)`` (opset 18)
after the backbone's BatchNorm is folded into its convolutions. As for the grid model
(:mod:`autocrop.model.export`), the file holds the graph only by default: every weight is an initializer with
external data that :class:`OnnxSetScorer` supplies at session creation from the safetensors file (BatchNorm
folded in numpy, :func:`autocrop.model.onnx_scorer.graph_initializers`); the graph depends on the config
only (:func:`set_graph_key`), so ``MODEL.onnx`` beside ``MODEL.safetensors`` or the packaged
``weights/set.onnx`` serves every weights file of that config. Export needs torch, onnx and onnxscript.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import ModelError
from autocrop.model.onnx_scorer import GraphScorer, fitting_graph
from autocrop.model.set_config import ARCH_SET, SetModelConfig
from autocrop.model.set_scorer import validity_scores

if TYPE_CHECKING:
    from PIL import Image

    from autocrop.model.set_net import SetCropNet

SET_GRAPH_FORMAT = "autocrop-set-graph/1"  #: metadata ``autocrop.format`` of a set model's graph
NOT_IN_GRAPH = ("input_short_side", "max_long_side", "dropout")  #: config fields the graph does not depend on
PACKAGED_SET_GRAPH = Path(__file__).resolve().parent.parent / "weights" / "set.onnx"


def set_graph_key(config: SetModelConfig) -> str:
    """16 hex digits naming the graph of ``config``: equal keys, interchangeable graphs."""
    fields = {k: v for k, v in sorted(asdict(config).items()) if k not in NOT_IN_GRAPH}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ export (torch, onnx, onnxscript)

def graph_from_set_net(net: SetCropNet, weights_sha256: str = "", location: str = "weights.safetensors",
                       embed_weights: bool = False) -> bytes:
    """The serialised ONNX model of ``net`` (eval mode, BatchNorm *not yet* folded: this folds it)."""
    import logging

    import torch

    from autocrop.model.export import OPSET, _quiet_exporter, finished_graph, tidy_exported
    from autocrop.model.fuse import batchnorm_pairs, fold_batchnorm

    net.eval()
    folds = batchnorm_pairs(net.features, prefix="features.")
    fold_batchnorm(net.features)
    short = net.config.input_short_side
    image = torch.zeros(1, 3, short, round(short * 1.5))
    height, width = torch.export.Dim("height", min=32), torch.export.Dim("width", min=32)
    folding = logging.getLogger("onnxscript.optimizer._constant_folding")
    level = folding.level
    folding.setLevel(logging.ERROR)  # "Skipping constant folding for op Split": chatter, not a problem
    try:
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(net, (image,), dynamo=True, opset_version=OPSET, input_names=["image"],
                                        output_names=["boxes", "logits"], optimize=False, verbose=False,
                                        dynamic_shapes={"images": {2: height, 3: width}})
    finally:
        folding.setLevel(level)
    assert program is not None
    model = program.model_proto
    external = tidy_exported(model, set(net.state_dict()), location, embed_weights)
    baked = [t.name for t in model.graph.initializer if t.data_location != 1 and np.prod(t.dims) > 64]
    if external and baked:  # a weight folded into a new constant would ignore the weights file: never ship that
        raise ModelError(f"the set model's ONNX graph holds weights of its own ({baked[:3]}): export them as inputs")
    return finished_graph(model, SET_GRAPH_FORMAT, set_graph_key(net.config), net.config.to_json(), external, folds,
                          weights_sha256, "image float32 [1, 3, H, W] ImageNet-normalised -> boxes float32 [1, N, 4] "
                          "x1 y1 x2 y2 normalised to that image, logits float32 [1, N] (validity = sigmoid)",
                          "autocrop set-prediction model (autocrop.model.set_onnx)")


def build_set_graph(config: SetModelConfig) -> bytes:
    """A graph-only ONNX model for ``config`` (weights come at session creation, so none are needed here)."""
    import torch

    from autocrop.model.set_net import SetCropNet

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SetCropNet(config)
    return graph_from_set_net(net)


def export_set_onnx(weights_path: str | Path, out_path: str | Path, embed_weights: bool = False,
                    verify: bool = True) -> Path:
    """Write the ONNX model of a set model file to ``out_path`` (atomically) -> ``out_path``.

    ``verify`` runs a test photo through both runtimes and refuses to write when boxes or validities differ
    by more than 1e-4. Raises :class:`ModelError` (one line) on any problem.
    """
    from autocrop.io.fs import atomic_write_bytes
    from autocrop.model.export import EXPORT_DEPENDENCIES
    from autocrop.model.set_net import SetCropNet
    from autocrop.model.set_scorer import load_set_scorer
    from autocrop.model.set_weights import load_set_weights
    from autocrop.model.weights import sha256_of

    weights_path, out_path = Path(weights_path), Path(out_path)
    try:
        import onnx  # noqa: F401 - needed by torch.onnx.export
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ModelError(f"export needs {err.name}: {EXPORT_DEPENDENCIES}") from None
    reference = load_set_scorer(weights_path)  # every check of the file (its net has BatchNorm folded)
    tensors, config, _ = load_set_weights(weights_path)
    net = SetCropNet(config)
    net.load_state_dict(tensors, strict=False)  # as checked by load_set_scorer; export folds BatchNorm itself
    graph = graph_from_set_net(net, sha256_of(weights_path), weights_path.name, embed_weights)
    if verify:
        arrays, _, _ = load_numpy_set_weights(weights_path)
        worst = parity(OnnxSetScorer(graph, arrays, config, {}, weights_path), reference)
        if worst > 1e-4:
            raise ModelError(f"{weights_path}: the ONNX graph's boxes or validities differ from torch's by "
                             f"{worst:.2g} (> 1e-4)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, graph, overwrite=True)
    return out_path


def parity(onnx_scorer: Any, torch_scorer: Any, seed: int = 0) -> float:
    """Worst absolute difference of validity and normalised boxes, ONNX Runtime vs torch, on two random photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    worst = 0.0
    for shape in ((300, 451, 3), (480, 320, 3)):
        photo = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        (a, va), (b, vb) = onnx_scorer.propose(photo), torch_scorer.propose(photo)
        size = np.asarray([photo.width, photo.height] * 2, np.float32)
        worst = max(worst, float(np.abs(np.sort(va) - np.sort(vb)).max()),
                    float(np.abs(np.sort(a / size, axis=0) - np.sort(b / size, axis=0)).max()))
    return worst


# ------------------------------------------------------------------------------ inference (numpy + onnxruntime)

def load_numpy_set_weights(path: Path, verify: bool = True) -> tuple[dict[str, np.ndarray], SetModelConfig,
                                                                     dict[str, Any]]:
    """(float32 numpy tensors, config, card) of a set model file without torch: the checks of
    :func:`autocrop.model.set_weights.read_set_file` (shapes are checked by ONNX Runtime)."""
    from autocrop.model.onnx_scorer import tensor_views
    from autocrop.model.set_weights import read_set_file

    data, config, card = read_set_file(path, verify)
    try:
        tensors = {k: np.asarray(v, np.float32) for k, v in tensor_views(data, path).items()}
    except (ValueError, TypeError) as err:
        raise ModelError(f"{path}: not a valid safetensors model file ({err})") from None
    return tensors, config, card


class OnnxSetScorer(GraphScorer):
    """A loaded set model on ONNX Runtime (:class:`~autocrop.model.onnx_scorer.GraphScorer`), with
    :class:`autocrop.model.set_scorer.SetScorer`'s interface; graph: :func:`graph_from_set_net`'s. ``arch`` is
    ``"set"``.
    """

    graph_format = SET_GRAPH_FORMAT
    arch = ARCH_SET
    config: SetModelConfig

    def propose(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """The model's crops of ``image``, best first: boxes float32 [N, 4] x1 y1 x2 y2 pixels of ``image``,
        validity float32 [N] in 0..1, sorted by validity (descending, stable), as ``SetScorer.propose``."""
        from autocrop.model.preprocess import to_input_array

        array, _, _ = to_input_array(image, self.config.preprocess_config())
        boxes, logits = self.session.run(["boxes", "logits"], {"image": array})
        validity = (1.0 / (1.0 + np.exp(-np.asarray(logits[0], np.float32)))).astype(np.float32)
        scale = np.asarray([image.width, image.height, image.width, image.height], np.float32)
        pixels = np.asarray(boxes[0], np.float32) * scale
        order = np.argsort(-validity, kind="stable")
        return pixels[order].astype(np.float32), validity[order]

    def score(self, image: Image.Image, boxes: np.ndarray | list[Any]) -> np.ndarray:
        """float32 [M]: max over predictions j of validity_j x IoU(box, pred_j), boxes [M, 4] pixels of ``image``."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros(0, np.float32)
        return validity_scores(boxes, *self.propose(image)).astype(np.float32)


def find_set_graph(weights: Path, config: SetModelConfig) -> tuple[bytes | None, str]:
    """The graph for a set model: ``weights.with_suffix('.onnx')`` when it fits, else the packaged
    ``set.onnx`` when its key matches -> (graph bytes, its path) or (None, why none fits, one line)."""
    return fitting_graph(weights, PACKAGED_SET_GRAPH, SET_GRAPH_FORMAT, set_graph_key(config))
