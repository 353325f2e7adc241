"""Training checkpoints: model + Adam state as safetensors, progress as JSON (no pickle anywhere)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from autocrop.io.fs import atomic_write_bytes


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    extra: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write ``path`` (.safetensors: ``model.*``, ``optim.<param>.<state>``, ``extra.*`` tensors) and ``path.json``."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors.update({f"extra.{k}": v.detach().contiguous().cpu() for k, v in (extra or {}).items()})
    opt_state = optimizer.state_dict()
    for index, state in opt_state["state"].items():
        for key, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = tensor.detach().contiguous().cpu()
    progress = dict(progress)
    progress["param_groups"] = [{k: v for k, v in g.items() if k != "params"} for g in opt_state["param_groups"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors), overwrite=True)
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(progress, indent=1) + "\n").encode(), overwrite=True)


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model and optimizer from :func:`save_checkpoint` files; returns (progress, extra tensors)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    progress = json.loads(path.with_suffix(".json").read_text())
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    opt_state = optimizer.state_dict()
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = []
    for group, saved in zip(opt_state["param_groups"], progress["param_groups"]):
        groups.append({**saved, "params": group["params"]})
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return progress, extra
