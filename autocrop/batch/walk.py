"""Finding the inputs of a batch: a safe, loop-free walk of the source tree and its mirror under the output dir.

Rules (documented in ``docs/batch.md``):

* Only files whose suffix is an image suffix (``autocrop.data.folder.IMAGE_SUFFIXES``) are inputs; other files are
  counted as *ignored*. Hidden files and folders (name starting with ``.``) are skipped.
* Symlinked folders are never followed (so there are no symlink loops); symlinked files are read like files.
* The output dir must not be the source dir or lie inside it, unless ``allow_inside_source`` -- and then the walk
  skips the output dir so that outputs never become inputs.
* ``include`` / ``exclude`` globs match either the file name or the path relative to the source root
  (``/``-separated), e.g. ``include=["*.jpg"], exclude=["drafts/*"]``.
* Output names are collision-free by construction (:func:`output_stems`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import stat as stat_mod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autocrop.data.folder import IMAGE_SUFFIXES
from autocrop.errors import OutputError, UsageError
from autocrop.io.fs import check_writable_folder


@dataclass(frozen=True)
class SourceFile:
    """One input of the batch.

    ``path`` is absolute; ``rel`` is the ``/``-separated path relative to the source root (the manifest key);
    ``size`` in bytes and ``mtime_ns`` come from the walk's ``stat`` and detect changed sources on resume.
    """

    path: Path
    rel: str
    size: int
    mtime_ns: int


@dataclass
class WalkStats:
    """What the walk saw besides inputs: non-image files and entries it refused to enter or read."""

    ignored: int = 0
    hidden: int = 0
    symlinked_dirs: int = 0
    unreadable_dirs: list[tuple[str, str]] = field(default_factory=list)  # (folder relative to the root + "/", why)


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_locations(source: str | Path, out: str | Path, allow_inside_source: bool = False,
                    create: bool = True) -> tuple[Path, Path]:
    """Validate and resolve (source folder, output folder).

    Raises :class:`UsageError` (one line, naming the parameter ``source`` or ``out``) for a missing source or
    an output folder that is the source folder or lies inside it (unless ``allow_inside_source``), and
    :class:`OutputError` (with the OS's errno) when the output folder cannot be created or written. With
    ``create`` the output folder is created (with parents) and probed by writing a temporary file;
    without (dry runs) nothing is touched.
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise UsageError(f"source {src}: folder does not exist")
    if not src.is_dir():
        raise UsageError(f"source {src}: is a file, not a folder")
    src = src.resolve()
    out_path = Path(out).expanduser()
    out_real = out_path.resolve()
    if out_real == src:
        raise UsageError(f"out {out_path}: is the source folder (choose another output folder)")
    if _is_within(out_real, src) and not allow_inside_source:
        raise UsageError(f"out {out_path}: is inside the source folder {src} "
                         f"(choose another output folder, or set allow_inside_source)")
    if out_real.exists() and not out_real.is_dir():
        raise OutputError(out_path, "exists and is not a folder")
    if not create:
        return src, out_real
    try:
        out_real.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError.from_os_error(out_path, err, "cannot create the output folder") from err
    try:
        check_writable_folder(out_real)
    except OutputError as err:
        raise OutputError(out_path, f"output {err.reason}", err.errno) from err
    return src, out_real


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)


def walk_sources(
    source: Path,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip_dirs: Sequence[Path] = (),
    stats: WalkStats | None = None,
) -> Iterator[SourceFile]:
    """Yield the image files under ``source`` (absolute, resolved) in sorted, deterministic order.

    Folders in ``skip_dirs`` (resolved paths, e.g. the output dir) are not entered. Symlinked folders are not
    followed and each real folder is visited once, so the walk terminates on any tree.
    """
    stats = stats if stats is not None else WalkStats()
    skip = {os.path.normcase(str(p)) for p in skip_dirs}
    visited: set[tuple[int, int]] = set()

    def visit(folder: Path, rel_prefix: str) -> Iterator[SourceFile]:
        try:
            st = folder.stat()
            key = (st.st_dev, st.st_ino)
            if key in visited:
                return
            visited.add(key)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            stats.unreadable_dirs.append((rel_prefix or "./", str(err.strerror or err)))
            return
        subdirs: list[os.DirEntry[str]] = []
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                stats.hidden += 1
                continue
            rel = f"{rel_prefix}{name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry)
                    continue
                if entry.is_symlink() and entry.is_dir(follow_symlinks=True):
                    stats.symlinked_dirs += 1
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:  # a dangling symlink or a file that vanished: not an image we can read
                stats.ignored += 1
                continue
            if not stat_mod.S_ISREG(st.st_mode) or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                stats.ignored += 1
                continue
            if include and not _matches(rel, name, include):
                stats.ignored += 1
                continue
            if exclude and _matches(rel, name, exclude):
                stats.ignored += 1
                continue
            yield SourceFile(path=Path(entry.path), rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)
        if not recursive:
            return
        for entry in subdirs:
            path = Path(entry.path)
            if os.path.normcase(str(path)) in skip:
                continue
            rel = f"{rel_prefix}{entry.name}/"
            if exclude and _matches(rel.rstrip("/"), entry.name, exclude):
                continue
            yield from visit(path, rel)

    yield from visit(source, "")


def mirror_dir(out_root: Path, rel: str) -> Path:
    """The output folder for input ``rel``: the same sub-folders under ``out_root``."""
    parent = rel.rpartition("/")[0]
    return out_root.joinpath(*parent.split("/")) if parent else out_root


def _stem_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def output_stems(sources: Sequence[SourceFile]) -> dict[str, str]:
    """rel -> the ``{stem}`` of its output names, for the inputs whose stem is not simply their file's stem.

    Output names must be distinct for distinct inputs of one folder, in every run, whatever is added
    later. An input's stem is its file stem (``IMG_1.jpg`` -> ``IMG_1``) unless

    * another input of the folder has the same stem, ignoring case (``a.jpg``, ``a.png``, ``A.gif``), or
    * its stem itself ends with an image suffix (``a.jpg.png`` -> stem ``a.jpg``),

    and then it is the file's full name (``a.jpg``, ``a.png``, ``a.jpg.png``). So plain stems never end
    with an image suffix and full names always do: the two kinds cannot meet, and full names are unique
    in a folder. Full names that differ only in case (``A.jpg``, ``a.jpg``; one file on a case-insensitive
    output disk) also get ``~`` and 8 hex digits of their name's sha1.
    """
    by_stem: dict[tuple[str, str], list[SourceFile]] = {}
    for s in sources:
        parent, _, name = s.rel.rpartition("/")
        by_stem.setdefault((parent, _stem_of(name).casefold()), []).append(s)
    full: dict[str, str] = {}
    for (_parent, stem), members in by_stem.items():
        for s in members:
            name = s.rel.rpartition("/")[2]
            if len(members) > 1 or Path(stem).suffix in IMAGE_SUFFIXES:
                full[s.rel] = name
    by_name: dict[tuple[str, str], list[str]] = {}
    for rel, name in full.items():
        by_name.setdefault((rel.rpartition("/")[0], name.casefold()), []).append(rel)
    for rels in by_name.values():
        if len(rels) > 1:
            for rel in rels:
                digest = hashlib.sha1(full[rel].encode("utf-8", "surrogateescape")).hexdigest()[:8]
                full[rel] = f"{full[rel]}~{digest}"
    return full
