"""Weight files of the set model: safetensors with ``{"format": "pt", "arch": "set", "config": <json>}``.

The same rules as :mod:`autocrop.model.weights` for the grid model: a file is loaded only with its card,
and only when the card's sha256 matches the file; the config is checked field by field, the tensors
against the network the config describes (on torch's "meta" device, so a forged config allocates
nothing), and every problem is a one-line :class:`ModelError`. Tensors may be stored as float16
(``"storage": "float16"`` in the metadata) to halve the file; they are always loaded as float32.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocrop.errors import ModelError
from autocrop.model.card import card_path_for, read_card
from autocrop.model.set_config import ARCH_KEY, ARCH_SET, SetModelConfig
from autocrop.model.weights import read_metadata, write_model_file

if TYPE_CHECKING:
    import torch

PACKAGED_SET_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "set.safetensors"


def save_set_weights(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], config: SetModelConfig, card: dict[str, Any],
    half: bool = False,
) -> dict[str, Any]:
    """Write ``path`` (.safetensors) and its card (.json) atomically; returns the card with sha256 filled in.

    Floating-point tensors only (BatchNorm's ``num_batches_tracked`` is dropped), float32 or, with
    ``half``, float16. The card gets ``arch``, ``config``, ``weights_file``, ``sha256``, ``size_bytes``.
    """
    import torch
    from safetensors.torch import save

    path = Path(path)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous().cpu() for k, v in state_dict.items() if v.is_floating_point()}
    metadata = {"format": "pt", ARCH_KEY: ARCH_SET, "config": config.to_json(),
                "storage": "float16" if half else "float32"}
    data = save(tensors, metadata=metadata)
    return write_model_file(path, data, card, config.to_json(), arch=ARCH_SET)


def read_set_file(path: str | Path, verify: bool = True) -> tuple[bytes, SetModelConfig, dict[str, Any]]:
    """(file bytes, config, card) of a set model file after the card, sha256, family and config checks;
    one-line :class:`ModelError`. Imports no torch (ONNX Runtime loads set models through it too)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    card = read_card(path)
    metadata = read_metadata(path)
    if metadata.get(ARCH_KEY) != ARCH_SET:
        raise ModelError(f"{path}: not a set model (metadata {ARCH_KEY} is {metadata.get(ARCH_KEY)!r}, not 'set')")
    data = path.read_bytes()
    if verify and not card.get("sha256"):
        where = "has no sha256" if card else f"is missing ({card_path_for(path).name} beside it)"
        raise ModelError(f"{path}: its model card {where}, so the file cannot be checked; keep each model "
                         "with the card autocrop wrote for it")
    if verify and hashlib.sha256(data).hexdigest() != str(card["sha256"]).lower():
        raise ModelError(
            f"{path}: sha256 does not match its model card {card_path_for(path).name} (damaged or replaced file)"
        )
    try:
        text = metadata.get("config")
        config = SetModelConfig.from_dict(json.loads(text) if text else card.get("config") or {})
    except (ValueError, TypeError, RecursionError) as err:
        raise ModelError(f"{path}: model config is invalid ({err})") from None
    card.setdefault("config", json.loads(config.to_json()))
    return data, config, card


def load_set_weights(path: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], SetModelConfig,
                                                                      dict[str, Any]]:
    """(float32 tensors, config, card) of a set model file, after every check; one-line :class:`ModelError`."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    data, config, card = read_set_file(path, verify)
    try:
        tensors = {k: v.to(torch.float32) for k, v in load_bytes(data).items()}
    except (SafetensorError, ValueError, OSError) as err:
        raise ModelError(f"{path}: not a valid safetensors model file ({err})") from None
    check_set_shapes(config, tensors, path)
    return tensors, config, card


def check_set_shapes(config: SetModelConfig, tensors: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """:class:`ModelError` unless ``tensors`` are the float tensors of ``SetCropNet(config)`` (names, shapes)."""
    import torch

    from autocrop.model.set_net import SetCropNet

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SetCropNet(config).state_dict().items()
                    if not k.endswith("num_batches_tracked")}
    for key, shape in expected.items():
        if key not in tensors:
            raise ModelError(f"{source}: weights do not match the set model config (missing {key})")
        if tuple(tensors[key].shape) != shape:
            raise ModelError(f"{source}: weights do not match the set model config ({key} has shape "
                             f"{list(tensors[key].shape)}, the config needs {list(shape)})")
    extra = [k for k in tensors if k not in expected]
    if extra:
        raise ModelError(f"{source}: weights do not match the set model config (unexpected {extra[:3]})")
