"""The packaged face detector's file: locating it, checking it against its card, opening an onnxruntime session.

``autocrop/weights/face_detection_yunet_2023mar.onnx`` (YuNet 2023mar, MIT, OpenCV Zoo) ships with a card
``face_detection_yunet_2023mar.json`` (source, licence, sha256, input layout) and its licence text
``face_detection_yunet_2023mar.LICENSE``. The file is read once, its sha256 compared with the card (a
damaged or replaced file is one-line :class:`~autocrop.errors.ModelError`), its declared 640x640 input
freed in memory (:func:`autocrop.faces.onnx_shape.free_input_shapes`) and handed to onnxruntime with
one intra-op thread. Nothing here is process-wide: the session belongs to whoever asked for it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

from autocrop.errors import ModelError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DETECTOR_FILE = WEIGHTS_DIR / "face_detection_yunet_2023mar.onnx"
DETECTOR_THREADS = 1  # intra-op threads of the detector's session (a ~5 ms network: more threads do not pay)


def card_path(model: Path) -> Path:
    """The card beside a detector file (``x.onnx`` -> ``x.json``)."""
    return model.with_suffix(".json")


def read_detector_card(model: Path = DETECTOR_FILE) -> dict[str, Any]:
    """The detector's card as a dict (one-line :class:`ModelError` when missing or not a JSON object)."""
    path = card_path(model)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path}: face detector card not found (reinstall autocrop-views)") from None
    except (OSError, ValueError) as err:
        raise ModelError(f"{path}: face detector card is unreadable ({err})") from None
    if not isinstance(card, dict):
        raise ModelError(f"{path}: face detector card is not a JSON object")
    return card


def read_detector_bytes(model: Path = DETECTOR_FILE) -> bytes:
    """The detector file's bytes, after checking its sha256 against the card (one-line :class:`ModelError`)."""
    card = read_detector_card(model)
    try:
        data = model.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{model}: face detector file not found (reinstall autocrop-views)") from None
    except OSError as err:
        raise ModelError(f"{model}: face detector file cannot be read ({err.strerror or err})") from None
    expected = str(card.get("sha256", ""))
    if hashlib.sha256(data).hexdigest() != expected:
        raise ModelError(f"{model}: sha256 does not match its card {card_path(model).name} "
                         "(damaged or replaced file; reinstall autocrop-views)")
    return data


def open_session(model: Path = DETECTOR_FILE, threads: int = DETECTOR_THREADS) -> Any:
    """A new onnxruntime ``InferenceSession`` of the detector (CPU, ``threads`` intra-op threads).

    Raises :class:`ModelError` (one line) when the file is damaged or onnxruntime is missing or refuses it.
    """
    from autocrop.faces.onnx_shape import free_input_shapes

    data = read_detector_bytes(model)
    try:
        ort = importlib.import_module("onnxruntime")  # untyped package: used as Any
    except ImportError:
        raise ModelError("face detection needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no warnings on stderr
    try:
        return ort.InferenceSession(free_input_shapes(data), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"{model}: onnxruntime cannot load the face detector ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from None
