"""Hostile model files, sizes and settings files (issue 13, items 9, 10, 12): one line naming the file and the
field, exit 2, nothing written; `train --out` checked before any work; `config set` writes through links.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import error_lines
from test_safety_outputs import changed, no_traceback, snapshot

from autocrop.errors import ModelError, UsageError
from autocrop.model.card import card_path_for
from autocrop.model.config import ModelConfig
from autocrop.model.weights import load_weights, read_checked
from autocrop.ratios import parse_size


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """An untrained model file with its card, and its tensors (to write variants of it)."""
    import torch

    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig())
    path = tmp_path_factory.mktemp("model") / "base.safetensors"
    save_weights(path, net.state_dict(), net.config, {"name": "base"})
    tensors, _, _ = load_weights(path)
    return path, tensors


def _variant(folder: Path, base: tuple[Path, dict[str, Any]], config: Any = None, card: Any = "keep",
             name: str = "m.safetensors") -> Path:
    """A copy of the base model with other config metadata and/or another card (sha256 kept consistent)."""
    from safetensors.torch import save

    path, tensors = base
    out = folder / name
    if config is None:
        shutil.copy(path, out)
    else:
        text = config if isinstance(config, str) else json.dumps(config)
        out.write_bytes(save(tensors, metadata={"format": "pt", "config": text}))
    if card == "keep":
        data = json.loads(card_path_for(path).read_text())
        data["sha256"] = hashlib.sha256(out.read_bytes()).hexdigest()
        card_path_for(out).write_text(json.dumps(data))
    elif card is not None:
        card_path_for(out).write_text(card if isinstance(card, str) else json.dumps(card))
    return out


def _one_model_error(path: Path, *fragments: str) -> None:
    with pytest.raises(ModelError) as err:
        load_weights(path)
    text = str(err.value)
    assert "\n" not in text and text.startswith((str(path), str(card_path_for(path)))), text
    for fragment in fragments:
        assert fragment in text, text


# ------------------------------------------------------------------------------------------------ item 10


@pytest.mark.parametrize("card,fragment", [
    ("[1, 2, 3]", "not a JSON object"), ('"a string"', "not a JSON object"), ("{broken", "not valid JSON"),
    ({"sha256": 5}, "sha256 5"), ({"sha256": "abc"}, "64 hex digits"), ({"config": [1]}, "config [1]"),
    ({"training_images": "all"}, "training_images"), ({"training_images": [5]}, "training_images entry"),
    ({"mos_standardization": {"mean": "x"}}, "mos_standardization.mean"),
])
def test_bad_cards_are_one_line(tmp_path: Path, base_model: Any, card: Any, fragment: str) -> None:
    path = _variant(tmp_path, base_model, card=card)
    _one_model_error(path, fragment)


@pytest.mark.parametrize("config,fragment", [
    ({"reduced_dim": 16}, "reduce.weight"), ({"input_short_side": 0}, "input_short_side 0"),
    ({"input_short_side": "big"}, "input_short_side 'big'"), ({"input_short_side": -256}, "input_short_side -256"),
    ({"align_size": True}, "align_size True"), ({"dropout": 2}, "dropout 2"), ({"splitter": "yes"}, "splitter"),
    ({"fc_dim": 65536, "reduced_dim": 1024, "align_size": 32}, "weights do not match"),  # never allocated
    ({"max_long_side": 100}, "max_long_side 100"), ({"nonsense": 1}, "nonsense"), ([1], "list"),
    ("{", "not valid JSON"),
])
def test_bad_config_metadata_is_one_line_naming_the_field(tmp_path: Path, base_model: Any, config: Any,
                                                          fragment: str) -> None:
    path = _variant(tmp_path, base_model, config=config)
    _one_model_error(path, fragment)


def test_every_config_field_is_checked_in_one_place() -> None:
    for field in ModelConfig.__dataclass_fields__:
        with pytest.raises(ValueError, match=field):
            ModelConfig.from_dict({field: "text"})


def test_a_model_without_a_card_is_refused(tmp_path: Path, base_model: Any) -> None:
    path = _variant(tmp_path, base_model, card=None)
    _one_model_error(path, "model card is missing", "m.json")
    tensors, config, card = load_weights(path, verify=False)  # Python callers who trust the file
    assert config == ModelConfig() and card["config"]
    path = _variant(tmp_path, base_model, card={"name": "no checksum"}, name="n.safetensors")
    _one_model_error(path, "has no sha256")


def test_a_flipped_byte_is_caught_by_the_card(tmp_path: Path, base_model: Any) -> None:
    path = _variant(tmp_path, base_model)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    _one_model_error(path, "sha256 does not match")


def test_read_checked_needs_no_torch_and_does_every_file_check(tmp_path: Path, base_model: Any) -> None:
    data, metadata, config, card = read_checked(_variant(tmp_path, base_model))
    assert config == ModelConfig() and card["sha256"] == hashlib.sha256(data).hexdigest() and metadata["config"]
    with pytest.raises(ModelError, match="model card is missing"):
        read_checked(_variant(tmp_path, base_model, card=None, name="x.safetensors"))


def test_bad_model_on_the_command_line_is_exit_2(cli: Any, tmp_path: Path, base_model: Any,
                                                 example_photo: Path) -> None:
    path = _variant(tmp_path, base_model, config={"input_short_side": -256})
    before = snapshot(tmp_path)
    code, out, err = cli([example_photo, "--model", path, "--out", tmp_path / "out"])
    assert code == 2 and len(error_lines(err)) == 1 and "input_short_side -256" in err
    no_traceback(err)
    assert changed(before, snapshot(tmp_path), allowed=tmp_path / "out") == []
    assert not any((tmp_path / "out").iterdir())


# ------------------------------------------------------------------------------------------------ item 9


@pytest.mark.parametrize("size", ["65535x65535", (65535, 2000), "9460x9460"])
def test_parse_size_bounds_the_pixel_count(size: Any) -> None:
    with pytest.raises(UsageError, match="MAX_IMAGE_PIXELS") as err:
        parse_size(size)
    assert "\n" not in str(err.value)
    assert parse_size("9000x9000") == (9000, 9000)


# ------------------------------------------------------------------------------------------------ item 12


def test_train_out_that_is_a_file_fails_before_any_work(cli: Any, tmp_path: Path, mini_gaicd: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a folder")
    before = snapshot(tmp_path)
    code, out, err = cli(["train", "--data", "gaicd", "--gaicd-dir", mini_gaicd, "--out", target,
                          "--init", tmp_path / "absent.safetensors", "--epochs", "1"])
    assert code == 2 and error_lines(err) == [f"autocrop: error: {target}: is a file, not a folder"]
    no_traceback(err)
    assert snapshot(tmp_path) == before


def test_train_out_that_cannot_be_created_fails_before_any_work(cli: Any, tmp_path: Path, mini_gaicd: Path) -> None:
    code, out, err = cli(["train", "--data", "gaicd", "--gaicd-dir", mini_gaicd, "--out", "/proc/autocrop-runs",
                          "--init", tmp_path / "absent.safetensors", "--epochs", "1"])
    assert code == 2 and len(error_lines(err)) == 1 and "/proc/autocrop-runs" in err
    no_traceback(err)


def test_config_set_writes_through_a_symlinked_config_file(cli: Any, isolated_config: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "autocrop.toml"
    real.write_text('top = 2\n')
    link = isolated_config / "config.toml"
    link.symlink_to(real)
    code, out, err = cli(["config", "set", "quality", "90"])
    assert code == 0, err
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert "quality = 90" in real.read_text() and "top = 2" in real.read_text()
    code, out, err = cli(["config", "unset", "top"])
    assert code == 0 and link.is_symlink() and "top" not in real.read_text()


def test_a_model_without_a_card_on_the_command_line_is_exit_2(cli: Any, tmp_path: Path, base_model: Any,
                                                              example_photo: Path) -> None:
    path = _variant(tmp_path, base_model, card=None)
    code, out, err = cli([example_photo, "--model", path, "--out", tmp_path / "out"])
    assert code == 2 and len(error_lines(err)) == 1 and "model card is missing" in err
    no_traceback(err)
