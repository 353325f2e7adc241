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

import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
SETTING_ENV = ("RATIO", "TOP", "QUALITY", "NAME", "FORMAT", "DEVICE", "MODEL", "GAICD_DIR", "FCDB_DIR",
               "FLMS_DIR", "THREADS", "RUNTIME", "FACES")


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


MINI_SIZE = (512, 384)


# tiny synthetic datasets in the official layouts (no ../shared/data needed)


def _photo(path: Path, size: tuple[int, int], seed: int) -> None:
    """A JPEG with a gradient background and a bright square somewhere (what a crop should keep)."""
    w, h = size
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, w)[None, :, None]
    y = np.linspace(0, 1, h)[:, None, None]
    base = 60 + 80 * x + 40 * y + rng.uniform(0, 30, (1, 1, 3))  # broadcast to [h, w, 3]
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
    draw.rectangle([cx - w // 8, cy - h // 8, cx + w // 8, cy + h // 8], fill=(240, 220, 90))
    image.save(path, quality=90)


def _gaicd_crops(width: int, height: int) -> list[list[float]]:
    """A small grid of candidate crops ``x1 y1 x2 y2`` (3 scales x 3 positions, like GAICD's dense grid)."""
    crops = []
    for scale in (0.6, 0.75, 0.9):
        cw, ch = round(width * scale), round(height * scale)
        for fx in (0.0, 0.5, 1.0):
            x1, y1 = round((width - cw) * fx), round((height - ch) * (1 - fx) / 2)
            crops.append([x1, y1, x1 + cw, y1 + ch])
    return crops


def make_mini_gaicd(root: Path, count: int = 4, size: tuple[int, int] = MINI_SIZE) -> Path:
    """A GAICD-layout folder: ``images/test/NAME.jpg`` + ``annotations/test/NAME.txt`` (``y1 x1 y2 x2 MOS``).

    MOS falls with the crop's distance from the photo centre and rises with its size, ties included;
    each file also has one invalid crop (MOS -2, dropped by the reader).
    """
    images, notes = root / "images" / "test", root / "annotations" / "test"
    images.mkdir(parents=True)
    notes.mkdir(parents=True)
    w, h = size
    for i in range(count):
        name = f"90000{i}"
        _photo(images / f"{name}.jpg", size, seed=i)
        lines = []
        for x1, y1, x2, y2 in _gaicd_crops(w, h):
            off = abs((x1 + x2) / 2 - w / 2) / w + abs((y1 + y2) / 2 - h / 2) / h
            mos = round(2.0 + 2.0 * (x2 - x1) / w - 2.0 * off + 0.1 * (i % 2), 1)
            lines.append(f"{y1} {x1} {y2} {x2} {mos}")
        lines.append(f"0 0 {h} {w} -2")
        (notes / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def mini_gaicd(tmp_path: Path) -> Path:
    """A 4-photo GAICD test split in the official layout (512x384 JPEGs, 9 annotated crops each)."""
    return make_mini_gaicd(tmp_path / "GAICD")


def make_mini_fcdb(root: Path, count: int = 3, size: tuple[int, int] = MINI_SIZE) -> Path:
    """An FCDB-layout folder: ``cropping_testing_set.json`` (url, crop ``x y w h``) + ``data/NAME.jpg``;
    one annotated photo is missing. Also holds a 4-anchor ``pdefined_anchors_1745.json``."""
    (root / "data").mkdir(parents=True)
    w, h = size
    entries = []
    for i in range(count + 1):
        name = f"mini_{i}.jpg"
        if i < count:
            _photo(root / "data" / name, size, seed=10 + i)
        entries.append({"url": f"https://example.org/{name}", "crop": [20 + 10 * i, 15, w - 80, h - 60]})
    (root / "cropping_testing_set.json").write_text(json.dumps(entries))
    anchors = [[0, 0, 1, 1], [0.1, 0.1, 0.9, 0.9], [0.0, 0.2, 0.7, 1.0], [0.3, 0.0, 1.0, 0.8]]
    (root / "pdefined_anchors_1745.json").write_text(json.dumps(anchors))
    return root


@pytest.fixture()
def mini_fcdb(tmp_path: Path) -> Path:
    """A 3-photo FCDB test split (one more annotated photo missing) with a tiny anchor file."""
    return make_mini_fcdb(tmp_path / "FCDB")
