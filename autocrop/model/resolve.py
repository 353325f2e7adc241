"""Which model and which device: the one place that turns a ``model`` / ``device`` setting into a file / torch device.

``model``: a path to a ``.safetensors`` file (``~`` expanded), None / ``""`` for the packaged
default ``autocrop/weights/default.safetensors``, or a packaged model's name (:data:`PACKAGED_MODELS`:
``grid`` = the default, ``set`` = the set-prediction model ``autocrop/weights/set.safetensors``) when no
file of that name exists (:func:`autocrop.model.set_config.read_arch` says which family a file holds).
``device``: ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
Every problem is one line: :class:`ModelError` for a model file, :class:`UsageError` for a device.

:func:`peek_input_short_side` reads the model's input size from the weights metadata without
importing torch, so a photo can be decoded while the model is still loading.
"""

from __future__ import annotations

import json
from pathlib import Path

from autocrop.errors import ModelError, UsageError
from autocrop.model.set_weights import PACKAGED_SET_WEIGHTS
from autocrop.model.weights import PACKAGED_WEIGHTS

DEVICE_HELP = "use cpu or auto"
PACKAGED_MODELS = ("grid", "set")  #: names of the packaged models (a file of that name, when one exists, wins)


def resolve_weights(model: str | Path | None) -> Path:
    """The weights file of ``model`` (None or ``""``: the packaged default; ``grid`` / ``set``: a packaged
    model, unless a file of that name exists); it must exist.

    Raises :class:`ModelError` naming the file when it does not exist.
    """
    name = "grid" if model is None or str(model) == "" else str(model)
    if name != str(model) or (name in PACKAGED_MODELS and not Path(name).exists()):
        packaged = PACKAGED_SET_WEIGHTS if name == "set" else PACKAGED_WEIGHTS
        if packaged.is_file():
            return packaged
        if name == "set":
            raise ModelError("no packaged set model; train one with autocrop train --arch set and pass its path")
        raise ModelError(f"{packaged}: the packaged default model is missing (reinstall autocrop-views)")
    path = Path(name).expanduser()
    if not path.is_file():
        reason = "is a folder, not a model file" if path.is_dir() else "model file not found"
        raise ModelError(f"{path}: {reason}")
    return path


def peek_input_short_side(model: str | Path | None) -> int | None:
    """The network input short side (pixels) of ``model``, read from its metadata or card; None when unknown.

    Reads only the safetensors header (safetensors' ``safe_open(..., framework="numpy").metadata()``),
    never the tensors, and does not import torch. Any problem (missing or damaged file, no config)
    gives None: loading the model later reports it properly.
    """
    from autocrop.model.card import read_card
    from autocrop.model.set_config import read_arch
    from autocrop.model.weights import config_of, read_metadata

    try:
        path = resolve_weights(model)
        metadata = read_metadata(path)
        if read_arch(path) == "set":
            from autocrop.model.set_config import SetModelConfig

            return int(SetModelConfig.from_dict(json.loads(metadata.get("config") or "{}")).input_short_side)
        card = {} if metadata.get("config") else read_card(path)  # the card (~100 KB of JSON) only when needed
        return int(config_of(metadata, card).input_short_side)
    except (ModelError, ValueError, TypeError, RecursionError):
        return None


def resolve_device(device: str) -> str:
    """The torch device for a ``device`` setting, checked against this torch build and machine.

    ``auto`` -> ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``. ``cuda`` / ``cuda:N``
    without a usable CUDA device, ``mps`` without Metal, or a name torch does not accept raise one-line
    :class:`UsageError` (e.g. "device 'cuda': CUDA is not available to this torch build (use cpu or auto)").
    Returns the device text (lower case), e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
    """
    import torch

    from autocrop.settings import check_device

    text = check_device(device)  # syntax: auto | cpu | cuda | cuda:N | mps
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise UsageError(f"device {device!r}: torch does not accept it ({err}; {DEVICE_HELP})") from None
    if parsed.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise UsageError(f"device {device!r}: CUDA is not available to this torch build ({DEVICE_HELP})")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"device {device!r}: no CUDA device is available on this machine ({DEVICE_HELP})")
        if parsed.index is not None and parsed.index >= count:
            raise UsageError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_built():
            raise UsageError(f"device {device!r}: Metal (MPS) is not available to this torch build ({DEVICE_HELP})")
        if not torch.backends.mps.is_available():
            raise UsageError(f"device {device!r}: no Metal (MPS) device is available on this machine ({DEVICE_HELP})")
    return text
