"""Shared test fixtures.

* ``data_dir``: the real datasets (``$AUTOCROP_DATA_DIR`` or ``<repo>/../shared/data``); tests that use
  it are skipped with a clear reason when the folder is absent.
* ``gaicd_images`` / ``fcdb_images``: real photos from those datasets (skip when absent).
* ``model_file``: the packaged default model once it exists, else an untrained model saved to a temp
  file (so end-to-end tests always go through the real loading path).
* ``fake_scorer``: a tiny deterministic scorer without torch, for fast engine tests.
* every test runs with ``AUTOCROP_CONFIG_DIR`` pointing to an empty temp folder and without the
  user's ``AUTOCROP_<KEY>`` settings, so a developer's own config cannot change results.
* ``cli``: runs ``autocrop`` in-process -> (exit code, stdout, stderr); ``error_lines`` picks its error lines.
* ``example_photo`` / ``photos``: the packaged example photo and three photos made from it in a temp
  folder, so end-to-end tests need no ``../shared/data``; ``png_header_only`` makes bomb candidates.

Tests that need the real datasets are marked ``@pytest.mark.data`` (``pytest -m data`` runs only them;
``pytest -m "not data"`` skips them) and skip with a reason when the data is absent.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SETTING_ENV = ("RATIO", "TOP", "QUALITY", "NAME", "FORMAT", "DEVICE", "MODEL", "GAICD_DIR", "FCDB_DIR",
               "FLMS_DIR", "THREADS")


def _data_root() -> Path:
    env = os.environ.get("AUTOCROP_DATA_DIR")
    return Path(env).expanduser() if env else REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty private config directory and no AUTOCROP_<KEY> overrides for every test."""
    folder = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("AUTOCROP_CONFIG_DIR", str(folder))
    for key in SETTING_ENV:
        monkeypatch.delenv(f"AUTOCROP_{key}", raising=False)
    return folder


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the shared real datasets; skips the test when it is not there."""
    root = _data_root()
    if not root.is_dir():
        pytest.skip(f"real datasets not found at {root} (set AUTOCROP_DATA_DIR to the folder holding GAICD/ and FCDB/)")
    return root


@pytest.fixture(scope="session")
def gaicd_images(data_dir: Path) -> list[Path]:
    """Real GAICD test photos (sorted); skips when the folder is absent or empty."""
    folder = data_dir / "GAICD" / "images" / "test"
    images = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not images:
        pytest.skip(f"no GAICD photos in {folder}")
    return images


@pytest.fixture(scope="session")
def fcdb_images(data_dir: Path) -> list[Path]:
    """Real FCDB photos (sorted); skips when the folder is absent or empty."""
    folder = data_dir / "FCDB" / "data"
    images = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    if not images:
        pytest.skip(f"no FCDB photos in {folder}")
    return images


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged default model when it exists, else an untrained model in a temp file."""
    packaged = REPO / "autocrop" / "weights" / "default.safetensors"
    if packaged.is_file():
        return packaged
    import torch

    from autocrop.model import ModelConfig
    from autocrop.model.network import ViewRankingNet
    from autocrop.model.weights import save_weights

    torch.manual_seed(0)
    net = ViewRankingNet(ModelConfig())  # training layout (ViewScorer folds BatchNorm, so save before wrapping)
    path = tmp_path_factory.mktemp("model") / "untrained.safetensors"
    save_weights(path, net.state_dict(), net.config, {"name": "untrained (tests)", "training_images": []})
    return path


class FakeScorer:
    """Deterministic stand-in for a ViewScorer (no torch).

    Score of a box = mean brightness inside it minus 0.1 x its distance from the image centre
    (normalised), so brighter, more central crops rank higher. Records every call in ``calls``.
    """

    input_short_side = 256

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, int], np.ndarray]] = []

    def score(self, image, boxes) -> np.ndarray:  # noqa: ANN001 - mirrors ViewScorer.score
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.calls.append((image.size, boxes.copy()))
        gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
        integral = np.pad(gray.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        h, w = gray.shape
        x1 = np.clip(np.floor(boxes[:, 0]).astype(int), 0, w - 1)
        y1 = np.clip(np.floor(boxes[:, 1]).astype(int), 0, h - 1)
        x2 = np.clip(np.ceil(boxes[:, 2]).astype(int), x1 + 1, w)
        y2 = np.clip(np.ceil(boxes[:, 3]).astype(int), y1 + 1, h)
        total = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
        mean = total / ((x2 - x1) * (y2 - y1))
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 / w, (boxes[:, 1] + boxes[:, 3]) / 2 / h
        return (mean - 0.1 * np.hypot(cx - 0.5, cy - 0.5)).astype(np.float32)


@pytest.fixture()
def fake_scorer() -> FakeScorer:
    return FakeScorer()


CliRunner = Callable[[Sequence[object]], tuple[int, str, str]]


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str]) -> CliRunner:
    """Run ``autocrop ARGS...`` in this process -> (exit code, stdout, stderr)."""
    from autocrop.cli import main

    def run(args: Sequence[object]) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def error_lines(err: str) -> list[str]:
    """The ``autocrop: error: ...`` lines of a command's stderr."""
    return [line for line in err.splitlines() if line.startswith("autocrop: error:")]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression-bomb candidate)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def example_photo() -> Path:
    """The photo shipped in the package (600x400 JPEG)."""
    from autocrop.examples import example_photo as packaged

    return packaged()


@pytest.fixture()
def photos(tmp_path: Path, example_photo: Path) -> list[Path]:
    """Three JPEG photos in a temp folder: the example photo, a mirrored 900x600 and a 400x560 portrait of it."""
    folder = tmp_path / "in"
    folder.mkdir()
    first = Path(shutil.copy(example_photo, folder / "coffee.jpg"))
    with Image.open(example_photo) as im:
        rgb = im.convert("RGB")
    wide = folder / "wide.jpg"
    rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((900, 600), Image.Resampling.BICUBIC).save(wide, quality=92)
    tall = folder / "tall.jpg"
    rgb.crop((150, 0, 436, 400)).resize((400, 560), Image.Resampling.BICUBIC).save(tall, quality=92)
    return [first, wide, tall]
