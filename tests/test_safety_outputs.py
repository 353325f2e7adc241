"""Safety of `crop` outputs (issue 13, items 1, 2, 9): no write outside the output folder, never over an
input, never through a link, bounded output sizes; every case one line, the documented exit code, every
input byte-identical and no foreign file changed.

The helpers here (``snapshot``, ``changed``, ``fast_cropper``) are shared by the other test_safety_* files.
Hostile cases are generated in the tests; the model is the torch-free FakeScorer except where the command
line itself is the subject.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeScorer, error_lines

from autocrop.cropper import Cropper
from autocrop.errors import OutputError, UsageError

# ------------------------------------------------------------------------------------------------ helpers


def snapshot(*roots: Path) -> dict[str, str]:
    """path -> sha256 (or "link -> target", "dir") of everything under ``roots`` (links not followed)."""
    state: dict[str, str] = {}
    for root in roots:
        if not os.path.lexists(root):
            continue
        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in dirs + files:
                path = os.path.join(folder, name)
                if os.path.islink(path):
                    state[path] = f"link -> {os.readlink(path)}"
                elif os.path.isdir(path):
                    state[path] = "dir"
                elif not os.path.isfile(path):
                    state[path] = "special"  # a FIFO or a device: never opened
                else:
                    with open(path, "rb") as fh:
                        state[path] = hashlib.sha256(fh.read()).hexdigest()
    return state


def changed(before: dict[str, str], after: dict[str, str], allowed: Path | None = None) -> list[str]:
    """Paths that differ between two snapshots, except those under ``allowed`` (the output folder)."""
    keys = set(before) | set(after)
    out = []
    for key in sorted(keys):
        if before.get(key) == after.get(key):
            continue
        if allowed is not None and (key == str(allowed) or key.startswith(str(allowed) + os.sep)):
            continue
        out.append(key)
    return out


def fast_cropper(**settings: Any) -> Cropper:
    """A real Cropper scoring with the FakeScorer (no torch)."""
    return Cropper(scorer=FakeScorer(), **settings)


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and 'File "' not in text, text


@pytest.fixture
def world(tmp_path: Path, example_photo: Path) -> dict[str, Path]:
    """photo.jpg and other.jpg in in/, an empty out/, and a foreign folder with a file of the user's."""
    (tmp_path / "in").mkdir()
    photo = Path(shutil.copy(example_photo, tmp_path / "in" / "photo.jpg"))
    other = Path(shutil.copy(example_photo, tmp_path / "in" / "other.jpg"))
    (tmp_path / "out").mkdir()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.txt").write_text("my thesis\n")
    return {"root": tmp_path, "photo": photo, "other": other, "out": tmp_path / "out",
            "foreign": tmp_path / "foreign"}


# ------------------------------------------------------------------------------------------------ item 1


@pytest.mark.parametrize("name", [
    "{w:c}{w:c}{h:c}escaped_{stem}",   # renders "../escaped_photo"
    "{h:c}tmp{h:c}escaped_{stem}",     # renders "/tmp/escaped_photo" (47 = "/")
    "{w:c}{stem}",                     # renders a hidden ".photo"
    "{stem:>300}",                     # more than 255 bytes
    "{stem:d}",                        # a format spec that cannot apply
])
def test_rendered_names_never_leave_the_output_folder(world: dict[str, Path], name: str) -> None:
    before = snapshot(world["root"], Path("/tmp/escaped_photo.jpg"))
    with pytest.raises(UsageError) as err:
        fast_cropper().crop(world["photo"], out=world["out"], size="46x47", name=name)
    assert "\n" not in str(err.value) and str(err.value).startswith("name ")
    assert snapshot(world["root"], Path("/tmp/escaped_photo.jpg")) == before


def test_escaping_name_on_the_command_line_is_one_line_exit_2(cli: Any, world: dict[str, Path]) -> None:
    before = snapshot(world["root"])
    code, out, err = cli([world["photo"], "--out", world["out"], "--size", "46x47",
                          "--name", "{w:c}{w:c}{h:c}escaped_{stem}"])
    assert code == 2 and len(error_lines(err)) == 1 and "leave the output folder" in err
    no_traceback(err)
    assert snapshot(world["root"]) == before


def test_an_output_name_that_is_a_link_is_never_written_through(world: dict[str, Path]) -> None:
    target = world["foreign"] / "thesis.txt"
    os.symlink(target, world["out"] / "photo.crop1.jpg")
    before = snapshot(world["root"])
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="link") as err:
            fast_cropper().crop(world["photo"], out=world["out"], overwrite=overwrite)
        assert "\n" not in str(err.value)
    assert snapshot(world["root"]) == before and target.read_text() == "my thesis\n"


def test_a_dangling_link_at_an_output_name_is_refused(world: dict[str, Path]) -> None:
    os.symlink(world["foreign"] / "new.jpg", world["out"] / "photo.crop1.jpg")
    with pytest.raises(OutputError, match="link"):
        fast_cropper().crop(world["photo"], out=world["out"], overwrite=True)
    assert not (world["foreign"] / "new.jpg").exists()


def test_a_symlinked_output_folder_chosen_by_the_user_is_fine(world: dict[str, Path]) -> None:
    os.symlink(world["out"], world["root"] / "via-link")
    result = fast_cropper().crop(world["photo"], out=world["root"] / "via-link")
    assert [p.name for p in world["out"].iterdir()] == ["photo.crop1.jpg"] and result.paths


# ------------------------------------------------------------------------------------------------ item 2


def test_an_output_is_never_another_input_of_the_same_call(world: dict[str, Path]) -> None:
    victim = world["root"] / "in" / "photo.crop1.jpg"
    shutil.copy(world["other"], victim)
    before = snapshot(world["root"])
    with pytest.raises(OutputError, match="is an input photo"):
        fast_cropper().crop(world["photo"], out=world["root"] / "in", overwrite=True, protected=[victim])
    hard = world["out"] / "hard.jpg"
    os.link(world["other"], hard)  # the same file under another name
    os.symlink(world["other"], world["out"] / "photo.crop1.jpg")
    with pytest.raises(OutputError):
        fast_cropper().crop(world["photo"], out=world["out"], overwrite=True, protected=[world["other"]])
    assert changed(before, snapshot(world["root"]), allowed=world["out"]) == []
    assert hashlib.sha256(world["other"].read_bytes()).hexdigest() == before[str(world["other"])]


def test_two_inputs_on_the_command_line_with_overwrite(cli: Any, world: dict[str, Path]) -> None:
    """`autocrop photo.jpg photo.crop1.jpg --overwrite`: the second input is not replaced by the first's crop."""
    second = world["root"] / "in" / "photo.crop1.jpg"
    shutil.copy(world["other"], second)
    before = snapshot(world["root"] / "in")
    code, out, err = cli([world["photo"], second, "--overwrite"])
    no_traceback(err)
    assert code == 3 and "is an input photo" in err
    after = snapshot(world["root"] / "in")
    assert after[str(second)] == before[str(second)] and after[str(world["photo"])] == before[str(world["photo"])]


# ------------------------------------------------------------------------------------------------ item 9


@pytest.mark.parametrize("size", ["65535x65535", "20000x20000", "10000x9000"])
def test_output_size_is_bounded_like_the_bomb_limit(cli: Any, world: dict[str, Path], size: str) -> None:
    before = snapshot(world["root"])
    code, out, err = cli([world["photo"], "--out", world["out"], "--size", size])
    assert code == 2 and len(error_lines(err)) == 1 and "MAX_IMAGE_PIXELS" in err
    no_traceback(err)
    assert snapshot(world["root"]) == before


def test_long_edge_with_upscale_is_bounded_per_photo(world: dict[str, Path]) -> None:
    with pytest.raises(UsageError, match="exceeds the limit"):
        fast_cropper().crop(world["photo"], out=world["out"], ratio="20:1", long_edge=65535, upscale=True)
    assert list(world["out"].iterdir()) == []


def test_a_config_file_name_that_escapes_is_one_line(cli: Any, world: dict[str, Path], isolated_config: Path) -> None:
    (isolated_config / "config.toml").write_text('name = "{w:c}{w:c}{h:c}escaped_{stem}"\n')
    before = snapshot(world["root"])
    code, out, err = cli([world["photo"], "--out", world["out"], "--size", "46x47"])
    assert code == 2 and len(error_lines(err)) == 1 and "leave the output folder" in err
    no_traceback(err)
    assert snapshot(world["root"]) == before


# ------------------------------------------------------------------------------------------------ limits done earlier


@pytest.mark.parametrize("value", ["100000", "0", "abc"])
def test_threads_from_the_environment_fail_once(cli: Any, world: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                value: str) -> None:
    monkeypatch.setenv("AUTOCROP_THREADS", value)
    code, out, err = cli([world["photo"], world["other"], "--out", world["out"]])
    assert code == 2 and "threads" in err.lower() and err.lower().count("threads") <= 2
    no_traceback(err)
    assert list(world["out"].iterdir()) == []


def test_an_unavailable_device_is_one_line(cli: Any, world: dict[str, Path]) -> None:
    import torch

    device = "mps" if not torch.backends.mps.is_available() else "cuda:99"
    code, out, err = cli([world["photo"], "--out", world["out"], "--device", device])
    assert code == 2 and len(error_lines(err)) == 1 and f"device '{device}'" in err
    no_traceback(err)
