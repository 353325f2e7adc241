"""Weight files: safetensors (never pickle) + a JSON model card beside them, tied by sha256."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from autocrop.errors import ModelError
from autocrop.model.config import ModelConfig

TRAINING_ONLY_PREFIXES = ("image_learner.", "pair_classifier.")
PACKAGED_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "default.safetensors"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def card_path_for(weights: Path) -> Path:
    return weights.with_suffix(".json")


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; model files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(path: str | Path, state_dict: dict, config: ModelConfig, card: dict, inference_only: bool = True) -> dict:
    """Write ``path`` (.safetensors) and its card (.json) atomically; returns the card with sha256 filled in.

    ``inference_only`` drops the training-only heads (image-wise learner, pair classifier).
    """
    from safetensors.torch import save

    path = Path(path)
    tensors = {
        k: v.detach().float().contiguous().cpu()
        for k, v in state_dict.items()
        if not (inference_only and k.startswith(TRAINING_ONLY_PREFIXES)) and v.is_floating_point()
    }
    data = save(tensors, metadata={"format": "pt", "config": config.to_json()})
    _atomic_write_bytes(path, data)
    card = dict(card)
    card["config"] = json.loads(config.to_json())
    card["weights_file"] = path.name
    card["sha256"] = hashlib.sha256(data).hexdigest()
    card["size_bytes"] = len(data)
    _atomic_write_bytes(card_path_for(path), (json.dumps(card, indent=1, sort_keys=False) + "\n").encode())
    return card


def load_weights(path: str | Path, verify: bool = True) -> tuple[dict, ModelConfig, dict]:
    """Read (tensors, config, card) from ``path``; one-line :class:`ModelError` on any problem.

    When the card exists its sha256 must match the file (``verify``); a file without a card is accepted
    (e.g. a checkpoint from ``autocrop train``) and gets a minimal card.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    card_file = card_path_for(path)
    card: dict = {}
    if card_file.is_file():
        try:
            card = json.loads(card_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelError(f"{card_file}: model card is not valid JSON ({err})") from None
    data = path.read_bytes()
    if verify and card.get("sha256") and hashlib.sha256(data).hexdigest() != card["sha256"]:
        raise ModelError(f"{path}: sha256 does not match its model card {card_file.name} (damaged or replaced file)")
    try:
        tensors = load_bytes(data)
        metadata = _read_metadata(data)
    except (SafetensorError, ValueError, OSError) as err:
        raise ModelError(f"{path}: not a valid safetensors model file ({err})") from None
    try:
        config = ModelConfig.from_dict(json.loads(metadata.get("config") or json.dumps(card.get("config", {}))))
    except (ValueError, TypeError) as err:
        raise ModelError(f"{path}: model config is invalid ({err})") from None
    card.setdefault("config", json.loads(config.to_json()))
    return tensors, config, card


def _read_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors byte string (header: 8-byte little-endian length + JSON)."""
    if len(data) < 8:
        raise ValueError("file too short")
    header_len = int.from_bytes(data[:8], "little")
    if header_len <= 0 or 8 + header_len > len(data):
        raise ValueError("corrupt header")
    header = json.loads(data[8 : 8 + header_len])
    return header.get("__metadata__", {}) or {}
