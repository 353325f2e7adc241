"""``OnnxScorer``: the view-ranking model on ONNX Runtime (CPU), with the interface of ``ViewScorer``; no torch.

One weights file, two runtimes. The ONNX file holds the *graph* only (:mod:`autocrop.model.export` writes
it; the package ships ``weights/default.onnx`` beside ``default.safetensors``): every weight is an initializer
declared with external data, and this module supplies them at session creation from the safetensors file
(``SessionOptions.add_external_initializers``; ONNX Runtime copies them in before its graph optimisations,
so constant folding and weight pre-packing still apply). BatchNorm is folded into the convolutions here, in
numpy, with the pairs the graph's metadata lists. A graph fits every weights file of the same
:func:`graph_key` (the config fields that shape the graph; not the input size, dropout or training heads).

Importing this module imports neither torch nor onnxruntime; a scorer imports onnxruntime when built.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig

if TYPE_CHECKING:
    from PIL import Image

GRAPH_FORMAT = "autocrop-graph/1"  #: metadata ``autocrop.format``; bump when the graph's inputs or recipe change
#: Config fields the graph does not depend on (input size: dynamic shapes; dropout: eval; pairwise: training only).
NOT_IN_GRAPH = ("input_short_side", "max_long_side", "dropout", "pairwise")
PACKAGED_GRAPH = Path(__file__).resolve().parent.parent / "weights" / "default.onnx"


def graph_key(config: ModelConfig) -> str:
    """16 hex digits naming the graph of ``config``: equal keys, interchangeable graphs."""
    fields = {k: v for k, v in sorted(asdict(config).items()) if k not in NOT_IN_GRAPH}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ ONNX metadata without onnx

def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, bytes | None]]:
    """Top-level protobuf fields: (number, payload of length-delimited fields else None)."""
    out: list[tuple[int, bytes | None]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(data, pos)
            out.append((number, None))
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            out.append((number, None))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos:pos + length]))
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != len(data):
        raise ValueError("truncated protobuf message")
    return out


def read_onnx_metadata(data: bytes) -> dict[str, str]:
    """``metadata_props`` (field 14 of ONNX's ModelProto) of a serialised model, read without the onnx package.

    Raises ``ValueError`` when ``data`` is not a protobuf message.
    """
    metadata = {}
    for number, payload in _fields(data):
        if number == 14 and payload is not None:
            entry = {n: p for n, p in _fields(payload) if p is not None}
            metadata[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
    return metadata


# ------------------------------------------------------------------------------ weights

def load_numpy_weights(path: Path) -> tuple[dict[str, np.ndarray], ModelConfig, dict[str, Any]]:
    """(tensors as numpy arrays, config, card) of a safetensors model, after every check of
    :func:`autocrop.model.weights.read_checked` (card, sha256, config); one-line :class:`ModelError`.

    The torch-free twin of :func:`autocrop.model.weights.load_weights`; tensor shapes are checked by ONNX
    Runtime against the graph when the session is created. The arrays are read-only views of the file's bytes
    (:func:`tensor_views`).
    """
    from autocrop.model.weights import read_checked

    data, _, config, card = read_checked(path)
    return tensor_views(data, path), config, card


#: safetensors dtype -> numpy dtype (little-endian), for the dtypes numpy has
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                      "I8": "i1", "U8": "u1", "BOOL": "?"}


def tensor_views(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file's bytes ``data`` as read-only numpy views into them (no copy).

    safetensors' own numpy loader copies every tensor (~13 ms for the packaged model, a tenth of a
    one-photo command's model load). The file's layout was validated by safetensors when its metadata was
    read (:func:`autocrop.model.weights.read_metadata`); it is checked again here against these bytes (a
    file may change between the two reads), and numpy refuses any view outside them. A tensor of a dtype
    numpy lacks (e.g. BF16) is left to safetensors' loader. One-line :class:`ModelError` naming ``path``.
    """
    from math import prod

    def invalid(why: str) -> ModelError:
        return ModelError(f"{path}: not a valid safetensors model file ({why})")

    if len(data) < 8:
        raise invalid("shorter than its header")
    size = int.from_bytes(data[:8], "little")
    if size > len(data) - 8:
        raise invalid("header longer than the file")
    try:
        header = json.loads(data[8:8 + size])
    except (ValueError, RecursionError) as err:
        raise invalid(f"header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise invalid("header is not a JSON object")
    start, end = 8 + size, len(data)
    views: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            kind, shape, (first, last) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if kind not in SAFETENSORS_DTYPES:
                return _copied_tensors(data, path)
            dtype = np.dtype(SAFETENSORS_DTYPES[kind])
            if not all(type(v) is int and v >= 0 for v in (*shape, first, last)) or \
                    last - first != prod(shape) * dtype.itemsize or start + last > end:
                raise ValueError("offsets do not fit its shape")
            view = np.frombuffer(data, dtype, count=prod(shape), offset=start + first).reshape(shape)
        except (KeyError, TypeError, ValueError) as err:
            raise invalid(f"tensor {name!r}: {err}") from None
        views[name] = view if view.flags.aligned else view.copy()
    return views


def _copied_tensors(data: bytes, path: Path) -> dict[str, np.ndarray]:
    """safetensors' own numpy loader (copies); one-line :class:`ModelError` naming ``path``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_bytes

    try:
        return load_bytes(data)
    except (SafetensorError, ValueError, TypeError, OSError) as err:
        raise ModelError(f"{path}: not a valid safetensors model file ({err})") from None


def fold_conv_bn(weight: np.ndarray, bias: np.ndarray | None, bn: dict[str, np.ndarray],
                 eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Fold BatchNorm (``weight``, ``bias``, ``running_mean``, ``running_var`` [C_out]) into a conv, float32.

    weight [C_out, C_in/groups, kh, kw] -> (weight * gamma / sqrt(var + eps), (bias - mean) * that + beta):
    ``torch.nn.utils.fuse_conv_bn_weights``' formula, in its order.
    """
    rsqrt = np.float32(1.0) / np.sqrt(bn["running_var"] + np.float32(eps))
    conv_bias = np.zeros_like(bn["running_mean"]) if bias is None else bias
    folded_weight = weight * (bn["weight"] * rsqrt).reshape(-1, *([1] * (weight.ndim - 1)))
    folded_bias = (conv_bias - bn["running_mean"]) * rsqrt * bn["weight"] + bn["bias"]
    return folded_weight.astype(np.float32, copy=False), folded_bias.astype(np.float32, copy=False)


def graph_initializers(metadata: dict[str, str], tensors: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """The values of the graph's external initializers (``autocrop.initializers``) from a weights file's tensors.

    BatchNorm pairs listed in ``autocrop.folds`` are folded first. A name the weights cannot provide is a
    one-line :class:`ModelError` (the weights were made for another config).
    """
    tensors = dict(tensors)
    for conv, bn, eps in json.loads(metadata.get("autocrop.folds", "[]")):
        keys = {part: f"{bn}.{part}" for part in ("weight", "bias", "running_mean", "running_var")}
        if f"{conv}.weight" not in tensors or any(k not in tensors for k in keys.values()):
            raise ModelError(f"{source}: weights do not match the ONNX graph (no {conv} / {bn} to fold)")
        bn_tensors = {part: tensors.pop(key) for part, key in keys.items()}
        tensors[f"{conv}.weight"], tensors[f"{conv}.bias"] = fold_conv_bn(
            tensors[f"{conv}.weight"], tensors.get(f"{conv}.bias"), bn_tensors, float(eps))
    names = json.loads(metadata.get("autocrop.initializers", "[]"))
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ModelError(f"{source}: weights do not match the ONNX graph (missing {missing[:3]})")
    return {name: np.ascontiguousarray(tensors[name], dtype=np.float32) for name in names}


# ------------------------------------------------------------------------------ the scorer

class GraphSession:
    """An ONNX Runtime CPU session of an autocrop ``graph`` of ``graph_format`` (its metadata's
    ``autocrop.format``), the weights file's ``tensors`` handed in as its external initializers.

    Built in two steps so that a caller can overlap the second with other work: the constructor does the
    Python part (checks, BatchNorm folding, session options: it holds the GIL), :meth:`open` creates the
    session (C++ graph optimisation and weight pre-packing, which release the GIL; ~70 ms for the packaged
    model), once, under a lock; :attr:`session` opens it when first used. ``threads`` intra-op threads, one
    inter-op thread, sequential execution; with more than one thread the idle threads yield the CPU instead
    of spinning. Errors only (no warnings on stderr). A graph these weights do not fit is a one-line
    :class:`ModelError` naming ``weights_path`` (from the constructor or from :meth:`open`).
    """

    def __init__(self, graph: bytes, graph_format: str, tensors: dict[str, np.ndarray] | None,
                 weights_path: Path | None, threads: int = 1) -> None:
        import onnxruntime as ort

        try:
            metadata = read_onnx_metadata(graph)
        except ValueError as err:
            raise ModelError(f"{weights_path}: the ONNX graph is not a valid ONNX file ({err})") from None
        if metadata.get("autocrop.format") != graph_format:
            raise ModelError(f"{weights_path}: the ONNX graph is not an autocrop graph of format {graph_format}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no warnings on stderr
        if threads > 1:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads yield the CPU
        initializers = graph_initializers(metadata, tensors or {}, Path(str(weights_path)))
        # the OrtValues point into these arrays: both stay alive until the session has copied them in
        self._values = [ort.OrtValue.ortvalue_from_numpy(array) for array in initializers.values()]
        if initializers:
            options.add_external_initializers(list(initializers), self._values)
        self._initializers: dict[str, np.ndarray] | None = initializers
        self._graph: bytes | None = graph
        self._options = options
        self._weights_path = weights_path
        self._session: Any = None
        self._lock = threading.Lock()

    def open(self) -> Any:
        """The session, created now if it is not yet (raises :class:`ModelError` when ONNX Runtime refuses)."""
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                try:
                    self._session = ort.InferenceSession(self._graph, self._options,
                                                         providers=["CPUExecutionProvider"])
                except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
                    detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise ModelError(f"{self._weights_path}: ONNX Runtime cannot load the graph with these "
                                     f"weights ({detail})") from None
                self._graph = self._initializers = None
                self._values = []
            return self._session

    @property
    def session(self) -> Any:
        """The ONNX Runtime ``InferenceSession`` (opened on first use, see :meth:`open`)."""
        return self._session if self._session is not None else self.open()


class GraphScorer:
    """What both ONNX Runtime scorers share: a :class:`GraphSession` of their graph and the model's facts.

    graph: the serialised ONNX graph (:mod:`autocrop.model.export`); tensors: the weights file's tensors
    (numpy; not needed for a graph with embedded weights); config / card / weights_path: as ``ViewScorer``.
    threads: ONNX Runtime intra-op threads of this session (default 1: one per worker on small machines);
    nothing process-wide is changed. graph_source: where the graph came from (a path, or "built in memory").
    open_session: False leaves creating the session to :meth:`open` or the first use (the Cropper's preload
    creates it in a background thread). ``runtime`` is ``"onnx"``, ``device`` ``"cpu"``, ``runtime_note`` None.
    A subclass names its graph's ``graph_format``.
    """

    runtime = "onnx"
    device = "cpu"
    graph_format = ""

    def __init__(self, graph: bytes, tensors: dict[str, np.ndarray] | None, config: Any,
                 card: dict[str, Any], weights_path: Path | None = None, threads: int = 1,
                 graph_source: str = "", open_session: bool = True) -> None:
        self._graph_session = GraphSession(graph, self.graph_format, tensors, weights_path, threads)
        if open_session:
            self._graph_session.open()
        self.config = config
        self.card = card
        self.weights_path = weights_path
        self.threads = threads
        self.graph_source = graph_source
        self.runtime_note: str | None = None

    @property
    def session(self) -> Any:
        """The ONNX Runtime session (see :class:`GraphSession`)."""
        return self._graph_session.session

    def open(self) -> None:
        """Create the session now unless it exists (``open_session=False`` left it for first use); see
        :meth:`GraphSession.open`. Raises :class:`ModelError` when ONNX Runtime refuses the graph."""
        self._graph_session.open()

    @property
    def input_short_side(self) -> int:
        """Short side (pixels) of the network input; photos are decoded to at least this."""
        return int(self.config.input_short_side)


class OnnxScorer(GraphScorer):
    """A loaded ranking model on ONNX Runtime (:class:`GraphScorer`). ``score(image, boxes)`` -> one float per
    box, higher is better."""

    graph_format = GRAPH_FORMAT
    config: ModelConfig

    def score(self, image: Image.Image, boxes: np.ndarray | list[Any]) -> np.ndarray:
        """Scores float32 [N] for ``boxes`` [N, 4] (``x1 y1 x2 y2`` pixels of ``image``), one forward pass."""
        from autocrop.model.preprocess import to_input_array

        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros(0, np.float32)
        array, sx, sy = to_input_array(image, self.config)
        scaled = np.ascontiguousarray(boxes * np.asarray([sx, sy, sx, sy], np.float32))
        (scores,) = self.session.run(["scores"], {"image": array, "boxes": scaled})
        return np.asarray(scores, dtype=np.float32).reshape(-1)


def find_graph(weights: Path, config: ModelConfig, card: dict[str, Any] | None = None) -> tuple[bytes | None, str]:
    """The ONNX graph for ``weights``: ``weights.with_suffix('.onnx')`` when it fits, else the packaged graph
    when its :func:`graph_key` matches. Returns (graph bytes, its path) or (None, why none fits, one line).

    A card that names the graph (``"onnx_graph": {"file", "sha256"}``) ties it: a graph file that does not
    match that sha256 is not used.
    """
    return fitting_graph(weights, PACKAGED_GRAPH, GRAPH_FORMAT, graph_key(config), (card or {}).get("onnx_graph"))


def fitting_graph(weights: Path, packaged: Path, graph_format: str, key: str,
                  tied: dict[str, str] | None = None) -> tuple[bytes | None, str]:
    """The first of ``weights.with_suffix('.onnx')`` and ``packaged`` whose metadata has ``graph_format`` and
    ``key`` (and, when ``tied`` names it, its sha256; when it embeds weights, those of ``weights``) ->
    (graph bytes, its path) or (None, why none fits, one line)."""
    tied = tied or {}
    reasons = []
    for candidate in dict.fromkeys([weights.with_suffix(".onnx"), packaged]):
        if not candidate.is_file():
            continue
        data = candidate.read_bytes()
        try:
            metadata = read_onnx_metadata(data)
        except ValueError:
            reasons.append(f"{candidate.name} is not an ONNX file")
            continue
        if metadata.get("autocrop.format") != graph_format or metadata.get("autocrop.graph_key") != key:
            reasons.append(f"{candidate.name} was exported for another model config or autocrop version")
            continue
        if candidate.parent == weights.parent and tied.get("file") == candidate.name and tied.get("sha256") and \
                hashlib.sha256(data).hexdigest() != tied["sha256"]:
            reasons.append(f"{candidate.name} does not match the sha256 in the model card")
            continue
        if metadata.get("autocrop.embedded") == "true" and metadata.get("autocrop.weights_sha256") != _sha256(weights):
            reasons.append(f"{candidate.name} embeds other weights")
            continue
        return data, str(candidate)
    why = "; ".join(reasons) or f"no {weights.with_suffix('.onnx').name} beside it"
    return None, f"no ONNX graph fits this model ({why}; `autocrop export {weights}` writes one)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
