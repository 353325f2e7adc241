"""``ViewScorer`` (torch) and :func:`load_scorer`, which picks the runtime: ONNX Runtime or torch.

Both scorers share one preprocessing (:func:`to_input_array`: resize to the network input, ImageNet
normalisation, in numpy) and one interface: ``score(image, boxes)``, ``input_short_side``, ``card``,
``weights_path``, ``runtime`` (``"onnx"`` / ``"torch"``) and ``runtime_note`` (why torch was used when
ONNX Runtime was wanted, else None).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
                threads: int | None = None, open_session: bool = True) -> ViewScorer: ...


@overload
def load_scorer(model: str | Path | None = None, device: str = "cpu", runtime: str = "auto",
                threads: int | None = None, open_session: bool = True) -> ViewScorer | OnnxScorer: ...


def load_scorer(model: str | Path | None = None, device: str = "cpu", runtime: str = "auto",
                threads: int | None = None, open_session: bool = True) -> ViewScorer | OnnxScorer:
    """Load a model file (``None`` or ``""``: the packaged default) with its card; no network access.

    device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (see :func:`autocrop.model.resolve.resolve_device`).
    runtime: ``auto`` (ONNX Runtime on the CPU when onnxruntime is installed and an ONNX graph fits the model:
    ``MODEL.onnx`` beside it or the packaged graph; torch otherwise, and on a GPU), ``onnx`` (ONNX Runtime or a
    one-line :class:`ModelError`; a missing graph is built on the fly, which needs torch, onnx and onnxscript)
    or ``torch``. When ``auto`` falls back to torch on the CPU, the scorer's ``runtime_note`` says why (one line).
    threads: ONNX Runtime intra-op threads of the session (default 1); torch's are left alone.
    open_session: False returns an ONNX Runtime scorer before its session is created (``scorer.open()`` or the
    first use creates it; that step releases the GIL, so another thread can do it); a graph that ONNX Runtime
    then refuses is a :class:`ModelError` at that point, not a fall-back to torch. Torch scorers ignore it.
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
    family = SET if read_arch(weights) == "set" else GRID
    if choice == "torch":
        return family.load_torch(weights, device)
    text = check_device(device)
    if text == "auto" and choice == "auto":
        from autocrop.model.resolve import resolve_device

        text = resolve_device("auto")  # imports torch to look for a GPU
    if text not in ("cpu", "auto"):
        if choice == "onnx":
            raise ModelError(f"runtime onnx runs on the CPU, not on device {device!r} (use runtime torch)")
        return family.load_torch(weights, text)
    scorer, reason = _load_onnx(family, weights, threads or 1, build=choice == "onnx", open_session=open_session)
    if scorer is not None:
        return scorer
    if choice == "onnx":
        raise ModelError(f"runtime onnx: {reason}")
    fallback = family.load_torch(weights, "cpu")
    fallback.runtime_note = f"using torch, not ONNX Runtime: {reason}"
    return fallback


@dataclass(frozen=True)
class Family:
    """How one model family (``arch``) loads on each runtime; every function imports what it needs lazily.

    load_torch(weights, device) -> torch scorer; load_numpy(weights) -> (numpy tensors, config, card);
    find_graph(weights, config, card) -> (graph bytes or None, where it came from or why there is none);
    build_graph(config) -> graph bytes (needs the export extra); onnx_scorer(graph, tensors, config, card,
    weights, threads, where, open_session) -> ONNX Runtime scorer.
    """

    load_torch: Callable[[Path, str], Any]
    load_numpy: Callable[[Path], tuple[dict[str, Any], Any, dict[str, Any]]]
    find_graph: Callable[[Path, Any, dict[str, Any]], tuple[bytes | None, str]]
    build_graph: Callable[[Any], bytes]
    onnx_scorer: Callable[..., Any]


def _grid_numpy(weights: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    from autocrop.model.onnx_scorer import load_numpy_weights

    return load_numpy_weights(weights)


def _grid_graph(weights: Path, config: Any, card: dict[str, Any]) -> tuple[bytes | None, str]:
    from autocrop.model.onnx_scorer import find_graph

    return find_graph(weights, config, card)


def _grid_build(config: Any) -> bytes:
    from autocrop.model.export import build_graph

    return build_graph(config)


def _grid_onnx(graph: bytes, tensors: Any, config: Any, card: dict[str, Any], weights: Path, threads: int,
               where: str, open_session: bool) -> Any:
    from autocrop.model.onnx_scorer import OnnxScorer

    return OnnxScorer(graph, tensors, config, card, weights_path=weights, threads=threads, graph_source=where,
                      open_session=open_session)


def _set_torch(weights: Path, device: str) -> Any:
    from autocrop.model.set_scorer import load_set_scorer

    return load_set_scorer(weights, device)


def _set_numpy(weights: Path) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    from autocrop.model.set_onnx import load_numpy_set_weights

    return load_numpy_set_weights(weights)


def _set_graph(weights: Path, config: Any, card: dict[str, Any]) -> tuple[bytes | None, str]:
    from autocrop.model.set_onnx import find_set_graph

    return find_set_graph(weights, config)


def _set_build(config: Any) -> bytes:
    from autocrop.model.set_onnx import build_set_graph

    return build_set_graph(config)


def _set_onnx(graph: bytes, tensors: Any, config: Any, card: dict[str, Any], weights: Path, threads: int,
              where: str, open_session: bool) -> Any:
    from autocrop.model.set_onnx import OnnxSetScorer

    return OnnxSetScorer(graph, tensors, config, card, weights, threads, where, open_session)


GRID = Family(load_torch_scorer, _grid_numpy, _grid_graph, _grid_build, _grid_onnx)
SET = Family(_set_torch, _set_numpy, _set_graph, _set_build, _set_onnx)


def _load_onnx(family: Family, weights: Path, threads: int, build: bool, open_session: bool = True) -> tuple[Any, str]:
    """(an ONNX Runtime scorer, "") or (None, why not); ``build``: export a missing graph in memory.

    A damaged weights file raises :class:`ModelError`.
    """
    from importlib.util import find_spec

    if find_spec("onnxruntime") is None:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    tensors, config, card = family.load_numpy(weights)
    graph, where = family.find_graph(weights, config, card)
    if graph is None:
        if not build:
            return None, where
        try:
            graph, where = family.build_graph(config), "built in memory"
        except ImportError as err:
            from autocrop.model.export import EXPORT_DEPENDENCIES

            return None, f"{where}; building one needs {err.name}: {EXPORT_DEPENDENCIES}"
        except Exception as err:  # noqa: BLE001 - the exporter's own errors: one line, not a traceback
            detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
            return None, f"{where}; building one failed ({type(err).__name__}: {detail})"
    try:
        return family.onnx_scorer(graph, tensors, config, card, weights, threads, where, open_session), ""
    except ImportError as err:  # onnxruntime found but broken
        return None, f"onnxruntime cannot be imported ({err})"
    except ModelError as err:
        return None, str(err)
