"""The one atomic writer (autocrop.io.fs): permissions from the umask, no replacing, clean failures, errno kept."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest

from autocrop.errors import OutputError
from autocrop.io import fs

REPO = Path(__file__).resolve().parent.parent


def _current_umask() -> int:
    """The process umask, read (and restored at once) here in the test; the library never calls os.umask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write(data: bytes):  # noqa: ANN202 - a write function for atomic_write
    return lambda fh: fh.write(data)


def test_atomic_write_creates_the_file_with_0666_minus_the_umask(tmp_path: Path) -> None:
    out = tmp_path / "a.bin"
    fs.atomic_write(out, _write(b"hello"))
    assert out.read_bytes() == b"hello"
    assert out.stat().st_mode & 0o777 == 0o666 & ~_current_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temp file left (nor a second link)
    assert out.stat().st_nlink == 1


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_mode_under_a_given_umask(tmp_path: Path, umask: int, mode: int) -> None:
    out = tmp_path / "m.bin"
    code = ("import sys; from pathlib import Path; from autocrop.io.fs import atomic_write, atomic_write_bytes; "
            "atomic_write(Path(sys.argv[1]), lambda fh: fh.write(b'x')); "
            "atomic_write_bytes(Path(sys.argv[1] + '.2'), b'y')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, umask=umask, env=env, cwd=tmp_path)
    assert out.stat().st_mode & 0o777 == mode
    assert Path(f"{out}.2").stat().st_mode & 0o777 == mode


def test_atomic_write_refuses_to_replace_an_existing_file(tmp_path: Path) -> None:
    out = tmp_path / "keep.txt"
    out.write_bytes(b"original")
    with pytest.raises(OutputError) as err:
        fs.atomic_write(out, _write(b"new"))
    assert err.value.errno is None and not err.value.fatal
    assert err.value.path == out
    assert str(err.value) == f"{out}: already exists (not replaced)"
    assert "--" not in str(err.value)
    assert out.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_atomic_write_does_not_replace_a_file_created_while_writing(tmp_path: Path) -> None:
    out = tmp_path / "race.txt"

    def write(fh: IO[bytes]) -> None:
        fh.write(b"mine")
        out.write_bytes(b"someone else's")  # appears after the existence check, before the link

    with pytest.raises(OutputError, match="already exists") as err:
        fs.atomic_write(out, write)
    assert err.value.errno is None
    assert out.read_bytes() == b"someone else's"
    assert [p.name for p in tmp_path.iterdir()] == ["race.txt"]


def test_atomic_write_overwrite_replaces(tmp_path: Path) -> None:
    out = tmp_path / "replace.txt"
    out.write_bytes(b"old")
    fs.atomic_write(out, _write(b"new"), overwrite=True)
    assert out.read_bytes() == b"new"
    fs.atomic_write_bytes(out, b"newer")  # overwrite=True by default for weights, cards, reports
    assert out.read_bytes() == b"newer"
    with pytest.raises(OutputError, match="already exists"):
        fs.atomic_write_bytes(out, b"no", overwrite=False)
    assert out.read_bytes() == b"newer"
    assert [p.name for p in tmp_path.iterdir()] == ["replace.txt"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failing_write_function_leaves_no_temp_file_and_no_target(tmp_path: Path, overwrite: bool) -> None:
    seen: list[str] = []

    def write(fh: IO[bytes]) -> None:
        fh.write(b"half")
        seen.extend(p.name for p in tmp_path.iterdir())
        raise ValueError("encoder broke")

    with pytest.raises(ValueError, match="encoder broke"):
        fs.atomic_write(tmp_path / "out.jpg", write, overwrite=overwrite)
    assert len(seen) == 1 and fs.is_temp_name(seen[0]) and seen[0].endswith(".out.jpg.part")  # it did exist
    assert list(tmp_path.iterdir()) == []


def test_disk_full_in_the_write_function_is_a_fatal_output_error(tmp_path: Path) -> None:
    out = tmp_path / "crop.jpg"
    cause = OSError(errno.ENOSPC, "No space left on device")

    def write(fh: IO[bytes]) -> None:
        fh.write(b"\xff\xd8 partial")
        raise cause

    with pytest.raises(OutputError) as err:
        fs.atomic_write(out, write)
    assert err.value.errno == errno.ENOSPC
    assert err.value.fatal is True
    assert err.value.__cause__ is cause
    assert err.value.path == out
    assert str(err.value) == f"{out}: cannot write: No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_a_non_fatal_os_error_keeps_its_errno(tmp_path: Path) -> None:
    def write(fh: IO[bytes]) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OutputError) as err:
        fs.atomic_write(tmp_path / "x.png", write)
    assert err.value.errno == errno.EIO and err.value.fatal is False
    assert list(tmp_path.iterdir()) == []


def test_writing_imports_neither_secrets_nor_base64(tmp_path: Path) -> None:
    """Temporary names come from os.urandom directly (secrets + base64 cost ~4 ms before the first file)."""
    code = ("import sys; from pathlib import Path; from autocrop.io import fs; "
            f"fs.atomic_write(Path({str(tmp_path / 'out.bin')!r}), lambda fh: fh.write(b'x')); "
            "print([m for m in ('secrets', 'base64') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert (tmp_path / "out.bin").read_bytes() == b"x"


def test_is_temp_name(tmp_path: Path) -> None:
    names = set()
    for target in ("photo.jpg", "a", "weights.safetensors", "x" * 300, "été.png"):
        temp = fs._temp_path(tmp_path / target)
        assert fs.is_temp_name(temp.name), temp.name
        assert len(temp.name.encode("utf-8")) <= 255
        assert temp.parent == tmp_path
        names.add(temp.name)
    assert len(names) == 5
    assert fs.is_temp_name(".autocrop-0123456789ab.photo.jpg.part")
    for name in (".thesis.part", ".x.part", "a.part", ".autocrop-.x.part", ".autocrop-0123456789AB.x.part",
                 ".autocrop-0123456789a.x.part", ".autocrop-0123456789abc.x.part", ".autocrop-0123456789ab.x.jpg",
                 "autocrop-0123456789ab.x.part", ".autocrop-zzzzzzzzzzzz.x.part"):
        assert not fs.is_temp_name(name), name


def test_a_long_target_name_still_writes(tmp_path: Path) -> None:
    out = tmp_path / ("n" * 250 + ".jpg")  # 254 bytes: the temp name must be shortened to stay valid
    fs.atomic_write(out, _write(b"ok"))
    assert out.read_bytes() == b"ok" and [p.name for p in tmp_path.iterdir()] == [out.name]


def test_remove_quietly_and_same_file(tmp_path: Path) -> None:
    a = tmp_path / "a"
    a.write_bytes(b"1")
    link = tmp_path / "b"
    os.link(a, link)
    sym = tmp_path / "c"
    sym.symlink_to(a)
    other = tmp_path / "d"
    other.write_bytes(b"1")
    assert fs.same_file(a, link) and fs.same_file(a, sym) and fs.same_file(a, a)
    assert not fs.same_file(a, other) and not fs.same_file(a, tmp_path / "missing")
    fs.remove_quietly(other)
    assert not other.exists()
    fs.remove_quietly(other)  # already gone: no error


def test_a_missing_folder_is_an_output_error_with_errno(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "folder" / "x.png"
    with pytest.raises(OutputError) as err:
        fs.atomic_write(out, _write(b"x"))
    assert err.value.errno == errno.ENOENT and err.value.path == out
    assert isinstance(err.value.__cause__, OSError)
    assert str(err.value).startswith(f"{out}: ") and "\n" not in str(err.value)


def test_permission_denied_when_creating_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The EACCES path without needing a non-root user: os.open refuses like a read-only folder would."""
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fs.os, "open", refuse)
    out = tmp_path / "x.png"
    with pytest.raises(OutputError) as err:
        fs.atomic_write(out, _write(b"x"))
    monkeypatch.undo()
    assert err.value.errno == errno.EACCES and err.value.fatal
    assert str(err.value) == f"{out}: cannot write: Permission denied"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_folder_gives_eacces(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(OutputError) as err:
            fs.atomic_write(folder / "x.png", _write(b"x"))
        assert err.value.errno == errno.EACCES and err.value.fatal
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="runs as root only")
def test_read_only_folder_gives_eacces_as_root_without_dac_override(tmp_path: Path) -> None:
    """As root, the same check in a child process without the capabilities that bypass file permissions."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    code = ("import errno, sys; from pathlib import Path; from autocrop.io.fs import atomic_write\n"
            "from autocrop.errors import OutputError\n"
            "try:\n    atomic_write(Path(sys.argv[1]), lambda fh: fh.write(b'x'))\n"
            "except OutputError as err:\n"
            "    print(err.errno == errno.EACCES, err.fatal, isinstance(err.__cause__, OSError))\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    caps = "-dac_override,-dac_read_search"
    try:
        done = subprocess.run([setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}", "--", sys.executable, "-c",
                               code, str(folder / "x.png")], capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot drop capabilities here: {exc}")
    if done.returncode != 0 and "setpriv" in done.stderr:
        pytest.skip(f"cannot drop capabilities here: {done.stderr.strip()[-200:]}")
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["True", "True", "True"], done.stdout + done.stderr
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)
