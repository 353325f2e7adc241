"""Zero-copy tensors of a safetensors file (autocrop.model.onnx_scorer.tensor_views): equal to safetensors' own
loader, read-only views of the bytes, and one line (ModelError) for every malformed layout, generated here."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load, save

from autocrop.errors import ModelError
from autocrop.model.onnx_scorer import tensor_views
from autocrop.model.weights import PACKAGED_WEIGHTS

PATH = Path("model.safetensors")


def _file(header: dict[str, object], payload: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + payload


def test_views_equal_the_safetensors_loader_for_every_numpy_dtype() -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "f32": rng.standard_normal((3, 4, 5)).astype(np.float32),
        "f64": rng.standard_normal(7),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": rng.integers(-9, 9, (4,), dtype=np.int64),
        "i32": rng.integers(-9, 9, (2, 3), dtype=np.int32),
        "i16": rng.integers(-9, 9, (5,), dtype=np.int16),
        "i8": rng.integers(-9, 9, (3,), dtype=np.int8),
        "u8": rng.integers(0, 255, (6,), dtype=np.uint8),
        "bool": rng.integers(0, 2, (4,)).astype(bool),
        "scalar": np.asarray(3.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }
    data = save(tensors, metadata={"config": "{}"})
    views, expected = tensor_views(data, PATH), load(data)
    assert views.keys() == expected.keys() == tensors.keys()
    for name, array in expected.items():
        assert views[name].dtype == array.dtype and views[name].shape == array.shape, name
        assert np.array_equal(views[name], array), name
        assert not views[name].flags.writeable  # a view of the bytes, never a place to write


def test_packaged_weights_as_views_equal_the_loader() -> None:
    if not PACKAGED_WEIGHTS.is_file():
        pytest.skip("packaged model not built")
    data = PACKAGED_WEIGHTS.read_bytes()
    views, expected = tensor_views(data, PACKAGED_WEIGHTS), load(data)
    assert views.keys() == expected.keys()
    assert all(np.array_equal(views[k], expected[k]) and views[k].dtype == expected[k].dtype for k in expected)
    assert all(np.shares_memory(v, np.frombuffer(data, np.uint8)) for v in views.values() if v.size)


def test_a_dtype_numpy_lacks_goes_to_the_safetensors_loader() -> None:
    data = _file({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0\0\0\0")
    with pytest.raises(ModelError, match=r"^model\.safetensors: not a valid safetensors model file \("):
        tensor_views(data, PATH)  # safetensors' numpy loader has no bfloat16 either: its own error, one line


GOOD = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("data, why", [
    (b"\x01\x02", "shorter than its header"),
    (struct.pack("<Q", 10_000) + b"{}", "header longer than the file"),
    (struct.pack("<Q", 3) + b"{x}", "header is not JSON"),
    (_file([1, 2], b""), "header is not a JSON object"),  # type: ignore[arg-type]
    (_file({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8)), "offsets do not fit"),
    (_file({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8)), "offsets do not fit"),
    (_file({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8)), "offsets do not fit"),
    (_file({"w": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, bytes(8)), "offsets do not fit"),
    (_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, bytes(8)), "offsets do not fit"),
    (_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, bytes(8)), "tensor 'w'"),
    (_file({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, bytes(8)), "tensor 'w'"),
    (_file({"w": {"shape": [2], "data_offsets": [0, 8]}}, bytes(8)), "tensor 'w'"),
    (_file({"w": "F32"}, bytes(8)), "tensor 'w'"),
    (_file({"w": GOOD, "v": {**GOOD, "data_offsets": [2 ** 62, 2 ** 62 + 8]}}, bytes(8)), "offsets do not fit"),
])
def test_malformed_layouts_are_one_line(data: bytes, why: str) -> None:
    with pytest.raises(ModelError, match="^model.safetensors: not a valid safetensors model file") as info:
        tensor_views(data, PATH)
    assert why in str(info.value) and "\n" not in str(info.value)


def test_an_unaligned_tensor_is_copied_into_an_aligned_array() -> None:
    text = json.dumps({"b": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                       "w": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-aligned, as safetensors writes it; "w" one byte after
    data = struct.pack("<Q", len(text)) + text + b"\x07" + np.asarray([1.5, -2.0], np.float32).tobytes()
    assert not np.frombuffer(data, np.float32, count=2, offset=8 + len(text) + 1).flags.aligned
    views = tensor_views(data, PATH)
    assert views["w"].flags.aligned and views["w"].tolist() == [1.5, -2.0] and views["b"].tolist() == [7]
