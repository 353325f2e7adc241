"""Weight files: safetensors (never pickle) + a JSON model card beside them, tied by sha256.

The config of a model travels in the safetensors metadata (``{"format": "pt", "config": <json>}``),
and again in its card. Reading the metadata uses safetensors' own ``safe_open(...).metadata()``
with the numpy framework, so it needs neither torch nor a hand-written header parser.

A weights file is loaded only with its card, and only when the card's sha256 matches the file: a
file without a card (or a card without a sha256) is refused, because nothing could tell a damaged
or replaced file from the real one. Every model autocrop writes gets its card (``autocrop train``,
model soups, the packaged model); Python callers may pass ``verify=False`` to load a file they
trust without one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocrop.errors import ModelError
from autocrop.model.card import card_path_for, read_card, write_card
from autocrop.model.config import ModelConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

TRAINING_ONLY_PREFIXES = ("image_learner.", "pair_classifier.")
PACKAGED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "default.safetensors"

__all__ = [
    "PACKAGED_WEIGHTS",
    "TRAINING_ONLY_PREFIXES",
    "card_path_for",
    "load_state_checked",
    "check_shapes",
    "load_weights",
    "read_checked",
    "read_metadata",
    "save_weights",
    "sha256_of",
]


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (``{}`` when it has none); torch is not imported.

    Raises :class:`ModelError` (one line) when the file is not a safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{path}: not a valid safetensors model file ({err})") from None


def config_of(metadata: Mapping[str, str], card: Mapping[str, Any]) -> ModelConfig:
    """The model config stored in the weights metadata, else the card's, else the defaults.

    Raises ``ValueError`` naming the field for a config that is not valid JSON, has unknown keys, or
    a value of the wrong type or range (see :meth:`ModelConfig.from_dict`).
    """
    text = metadata.get("config")
    try:
        data = json.loads(text) if text else card.get("config") or {}
    except (json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"config in the file's metadata is not valid JSON ({err})") from None
    return ModelConfig.from_dict(data)


def save_weights(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], config: ModelConfig, card: dict[str, Any],
    inference_only: bool = True,
) -> dict[str, Any]:
    """Write ``path`` (.safetensors) and its card (.json) atomically; returns the card with sha256 filled in.

    Only floating-point tensors are stored (float32); ``inference_only`` drops the training-only heads
    (image-wise learner, pair classifier). The card gets ``config``, ``weights_file``, ``sha256`` and
    ``size_bytes`` (bytes of the weights file).
    """
    from safetensors.torch import save

    path = Path(path)
    tensors = {
        k: v.detach().float().contiguous().cpu()
        for k, v in state_dict.items()
        if not (inference_only and k.startswith(TRAINING_ONLY_PREFIXES)) and v.is_floating_point()
    }
    data = save(tensors, metadata={"format": "pt", "config": config.to_json()})
    return write_model_file(path, data, card, config.to_json())


def write_model_file(path: Path, data: bytes, card: dict[str, Any], config_json: str,
                     **fields: Any) -> dict[str, Any]:
    """Write a serialised safetensors model ``data`` to ``path`` and its card beside it, both atomically.

    Returns a copy of ``card`` with ``fields``, ``config``, ``weights_file``, ``sha256`` and ``size_bytes`` set.
    """
    from autocrop.io.fs import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, overwrite=True)
    card = {**card, **fields}
    card["config"] = json.loads(config_json)
    card["weights_file"] = path.name
    card["sha256"] = hashlib.sha256(data).hexdigest()
    card["size_bytes"] = len(data)
    write_card(path, card)
    return card


def read_checked(path: str | Path, verify: bool = True) -> tuple[bytes, dict[str, str], ModelConfig, dict[str, Any]]:
    """(file bytes, metadata, config, card) of a weights file after every check that needs no torch.

    One-line :class:`ModelError` naming the file for: a missing file, a card that is not a JSON object
    or has fields of the wrong type, a file that is not safetensors, and (with ``verify``) a card that is
    missing, has no sha256, or does not match the file; and for a config field of the wrong type or
    range. Every loader of weights (torch or not) goes through here.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    card = read_card(path)
    metadata = read_metadata(path)  # not a safetensors file at all: said first
    data = path.read_bytes()
    if verify and not card.get("sha256"):
        where = "has no sha256" if card else f"is missing ({card_path_for(path).name} beside it)"
        raise ModelError(f"{path}: its model card {where}, so the file cannot be checked; keep each model "
                         "with the card autocrop wrote for it")
    if verify and hashlib.sha256(data).hexdigest() != card["sha256"].lower():
        raise ModelError(
            f"{path}: sha256 does not match its model card {card_path_for(path).name} (damaged or replaced file)"
        )
    try:
        config = config_of(metadata, card)
    except (ValueError, TypeError) as err:
        raise ModelError(f"{path}: model config is invalid ({err})") from None
    card.setdefault("config", json.loads(config.to_json()))
    return data, metadata, config, card


def load_weights(path: str | Path, verify: bool = True) -> tuple[dict[str, torch.Tensor], ModelConfig, dict[str, Any]]:
    """Read (tensors, config, card) from ``path``; one-line :class:`ModelError` on any problem.

    The checks of :func:`read_checked` (with ``verify``, the default and always from the command line,
    the card must exist, record the sha256 of the file, and match it; ``verify=False`` loads a file
    without a card, which then gets a minimal one), then the tensors must fit the config
    (:func:`check_shapes`).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    path = Path(path)
    data, _, config, card = read_checked(path, verify)
    try:
        tensors = load_bytes(data)
    except (SafetensorError, ValueError, OSError) as err:
        raise ModelError(f"{path}: not a valid safetensors model file ({err})") from None
    check_shapes(config, tensors, path)
    return tensors, config, card


def check_shapes(config: ModelConfig, tensors: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """:class:`ModelError` unless ``tensors`` fit the network ``config`` describes (names and shapes).

    The network is laid out on torch's "meta" device (shapes only, no memory), so a forged config
    (``reduced_dim`` 16 for weights made with 8, or sizes of a hundred gigabytes) is refused before
    anything is allocated.
    """
    import torch

    from autocrop.model.network import ViewRankingNet

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ViewRankingNet(config).state_dict().items()}
    for key, shape in expected.items():
        if _training_only(key):
            continue
        if key not in tensors:
            raise ModelError(f"{source}: weights do not match the model config (missing {key})")
        if tuple(tensors[key].shape) != shape:
            raise ModelError(f"{source}: weights do not match the model config ({key} has shape "
                             f"{list(tensors[key].shape)}, the config needs {list(shape)})")
    extra = [k for k in tensors if k not in expected and not _training_only(k)]
    if extra:
        raise ModelError(f"{source}: weights do not match the model config (unexpected {extra[:3]})")


def _training_only(key: str) -> bool:
    return key.startswith(TRAINING_ONLY_PREFIXES) or key.endswith("num_batches_tracked")


def load_state_checked(net: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``net`` (non-strict); every other mismatch is a one-line :class:`ModelError`.

    Training-only heads (image-wise learner, pair classifier) may be absent from ``state`` (inference
    files do not ship them; a fine-tune may add them fresh) or present without a place in ``net``
    (a fine-tune may drop them). Any other missing or unexpected key, or a tensor of another shape,
    means ``state`` was made for another model config. ``source`` names the weights in the message.
    """
    try:
        result = net.load_state_dict(dict(state), strict=False)
    except RuntimeError as err:  # tensor shapes differ: torch lists one mismatch per line
        detail = str(err).strip().splitlines()[-1].strip()
        raise ModelError(f"{source}: weights do not match the model config ({detail})") from None
    missing = [k for k in result.missing_keys if not _training_only(k)]
    unexpected = [k for k in result.unexpected_keys if not _training_only(k)]
    if missing or unexpected:
        raise ModelError(
            f"{source}: weights do not match the model config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
