"""``ViewScorer`` (torch) and :func:`load_scorer`, which picks the runtime: ONNX Runtime or torch.

Both scorers share one preprocessing (:func:`to_input_array`: resize to the network input, ImageNet
normalisation, in numpy) and one interface: ``score(image, boxes)``, ``input_short_side``, ``card``,
``weights_path``, ``runtime`` (``"onnx"`` / ``"torch"``) and ``runtime_note`` (why torch was used when
ONNX Runtime was wanted, else None).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from autocrop.errors import ModelError
from autocrop.model.preprocess import (  # noqa: F401 - re-exported: the one preprocessing
    IMAGENET_MEAN,
    IMAGENET_STD,
    input_size,
    resize_for_model,
    to_input_array,
    to_input_tensor,
)
from autocrop.model.torch_scorer import ViewScorer, load_torch_scorer

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from autocrop.model.onnx_scorer import OnnxScorer



class Scorer(Protocol):
    """What the Cropper needs from a model: :class:`ViewScorer` and ``OnnxScorer`` both are one."""

    @property
    def input_short_side(self) -> int:
        """Short side (px) of the image the model works at."""
        ...

    def score(self, image: Image.Image, boxes: np.ndarray) -> np.ndarray:
        """image: RGB PIL image; boxes float32 [N, 4] x1 y1 x2 y2 pixels of that image -> float32 [N]."""
        ...
@overload
def load_scorer(model: str | Path | None = None, device: str = "cpu", *, runtime: Literal["torch"],
                threads: int | None = None) -> ViewScorer: ...


@overload
def load_scorer(model: str | Path | None = None, device: str = "cpu", runtime: str = "auto",
                threads: int | None = None) -> ViewScorer | OnnxScorer: ...


def load_scorer(model: str | Path | None = None, device: str = "cpu", runtime: str = "auto",
                threads: int | None = None) -> ViewScorer | OnnxScorer:
    """Load a model file (``None`` or ``""``: the packaged default) with its card; no network access.

    device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`autocrop.model.resolve.resolve_device`).
    runtime: ``auto`` (ONNX Runtime on the CPU when onnxruntime is installed and an ONNX graph fits the model:
    ``MODEL.onnx`` beside it or the packaged graph; torch otherwise, and on a GPU), ``onnx`` (ONNX Runtime or a
    one-line :class:`ModelError`; a missing graph is built on the fly, which needs torch, onnx and onnxscript)
    or ``torch``. When ``auto`` falls back to torch on the CPU, the scorer's ``runtime_note`` says why (one line).
    threads: ONNX Runtime intra-op threads of the session (default 1); torch's are left alone.
    Raises :class:`ModelError` (one line) when the file is missing, damaged, or does not match its card,
    and :class:`~autocrop.errors.UsageError` (one line) for an unknown runtime or a device this torch or
    machine cannot use. Importing nothing heavy: torch only when the torch runtime is used (or ``device=auto``).
    A set-prediction model file (metadata ``arch`` = ``set``, :func:`autocrop.model.set_config.read_arch`) loads
    by the same rules as a ``SetScorer`` (torch) or an ``OnnxSetScorer`` (graph ``MODEL.onnx`` beside it or the
    packaged ``set.onnx``), which also ``propose(image)`` their crops (see :mod:`autocrop.views`).
    """
    from autocrop.model.resolve import resolve_weights
    from autocrop.model.set_config import read_arch
    from autocrop.settings import check_device, check_runtime, check_threads

    choice = check_runtime(runtime)
    threads = check_threads(threads)
    weights = resolve_weights(model)
    if read_arch(weights) == "set":
        return _load_set(weights, device, choice, threads)
    if choice == "torch":
        return load_torch_scorer(weights, device)
    text = check_device(device)
    if text == "auto" and choice == "auto":
        from autocrop.model.resolve import resolve_device

        text = resolve_device("auto")  # imports torch to look for a GPU
    if text not in ("cpu", "auto"):
        if choice == "onnx":
            raise ModelError(f"runtime onnx runs on the CPU, not on device {device!r} (use runtime torch)")
        return load_torch_scorer(weights, text)
    scorer, reason = _load_onnx(weights, threads or 1, build=choice == "onnx")
    if scorer is not None:
        return scorer
    if choice == "onnx":
        raise ModelError(f"runtime onnx: {reason}")
    fallback = load_torch_scorer(weights, "cpu")
    fallback.runtime_note = f"using torch, not ONNX Runtime: {reason}"
    return fallback


def _load_set(weights: Path, device: str, choice: str, threads: int | None) -> Any:
    """A set model (:mod:`autocrop.model.set_scorer`, :mod:`autocrop.model.set_onnx`) by the runtime rules of
    :func:`load_scorer`: ``SetScorer`` (torch) or ``OnnxSetScorer`` (ONNX Runtime), with the same ``runtime_note``."""
    from autocrop.model.resolve import resolve_device
    from autocrop.model.set_onnx import load_onnx_set
    from autocrop.model.set_scorer import load_set_scorer
    from autocrop.settings import check_device

    text = check_device(device)
    if choice == "torch" or text not in ("cpu", "auto"):
        if choice == "onnx":
            raise ModelError(f"runtime onnx runs on the CPU, not on device {device!r} (use runtime torch)")
        return load_set_scorer(weights, text)
    if text == "auto" and choice == "auto" and resolve_device("auto") != "cpu":
        return load_set_scorer(weights, "auto")
    scorer, reason = load_onnx_set(weights, threads or 1, build=choice == "onnx")
    if scorer is not None:
        return scorer
    if choice == "onnx":
        raise ModelError(f"runtime onnx: {reason}")
    fallback = load_set_scorer(weights, "cpu")
    fallback.runtime_note = f"using torch, not ONNX Runtime: {reason}"
    return fallback


def _load_onnx(weights: Path, threads: int, build: bool) -> tuple[OnnxScorer | None, str]:
    """(an ONNX Runtime scorer, "") or (None, why not). A damaged weights file raises :class:`ModelError`."""
    from importlib.util import find_spec

    from autocrop.model.onnx_scorer import OnnxScorer, find_graph, load_numpy_weights

    if find_spec("onnxruntime") is None:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    tensors, config, card = load_numpy_weights(weights)
    graph, where = find_graph(weights, config, card)
    if graph is None:
        if not build:
            return None, where
        try:
            from autocrop.model.export import build_graph

            graph, where = build_graph(config), "built in memory"
        except ImportError as err:
            from autocrop.model.export import EXPORT_DEPENDENCIES

            return None, f"{where}; building one needs {err.name}: {EXPORT_DEPENDENCIES}"
        except Exception as err:  # noqa: BLE001 - the exporter's own errors: one line, not a traceback
            detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
            return None, f"{where}; building one failed ({type(err).__name__}: {detail})"
    try:
        scorer = OnnxScorer(graph, tensors, config, card, weights_path=weights, threads=threads, graph_source=where)
        return scorer, ""
    except ImportError as err:  # onnxruntime found but broken
        return None, f"onnxruntime cannot be imported ({err})"
    except ModelError as err:
        return None, str(err)
