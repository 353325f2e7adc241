"""Weight averaging of models fine-tuned from one starting model ("model soup", Wortsman et al. 2022).

Models fine-tuned briefly from the same initial weights with different seeds stay in one loss basin,
so the element-wise mean of their weights is itself a good model, usually better than each member,
at the inference cost of one model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autocrop.errors import ModelError
from autocrop.model.card import FILE_FIELDS, RUN_FIELDS, merged_training_images, stamped, without_fields
from autocrop.model.weights import load_weights, save_weights


def average_model_files(paths: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    """Average the weights of ``paths`` (same config and tensors) into ``out``; returns the new card.

    The card is the first member's, stamped with this version and time, with ``averaged_from`` (each
    member's file, sha256, seed and validation figures) and ``training_images`` the union over members.
    Per-member fields that no longer describe the average (validation, history, file identity) are dropped.
    """
    if len(paths) < 2:
        raise ModelError("averaging needs at least two model files")
    members = [load_weights(p) for p in paths]
    tensors0, config0, card0 = members[0]
    for path, (tensors, config, _) in zip(paths[1:], members[1:]):
        if config != config0 or tensors.keys() != tensors0.keys():
            raise ModelError(
                f"{path}: model config or tensors differ from {paths[0]}; only like models can be averaged"
            )
    averaged = {key: sum((t[key] for t, _, _ in members[1:]), tensors0[key]) / len(members) for key in tensors0}
    card = stamped(without_fields(card0, RUN_FIELDS + FILE_FIELDS))
    card["training_images"] = merged_training_images(c for _, _, c in members)
    card["averaged_from"] = [
        {"file": str(Path(p).name), "sha256": c.get("sha256"), "seed": (c.get("recipe") or {}).get("seed"),
         "validation": c.get("validation")}
        for p, (_, _, c) in zip(paths, members)
    ]
    return save_weights(out, averaged, config0, card)
