"""Free an ONNX model's fixed input size, in memory, without the ``onnx`` package (protobuf wire format only).

YuNet's published file declares its input as ``[1, 3, 640, 640]``; the network itself is fully
convolutional (its reshapes use ``-1``, its upsampling uses scales), so OpenCV feeds it any size that is a
multiple of 32. onnxruntime checks the declared shape, so :func:`free_input_shapes` drops the declared
shapes of the graph's inputs and outputs and its intermediate ``value_info`` (which only repeat the
640x640 shapes); onnxruntime then infers every shape from the actual input. The shipped file stays
byte-identical to the upstream one (its sha256 is checked before this runs).

Wire format used (protobuf, https://protobuf.dev/programming-guides/encoding/): ModelProto.graph = field
7; GraphProto.input = 11, .output = 12, .value_info = 13; ValueInfoProto.type = 2; TypeProto.tensor_type
= 1; TypeProto.Tensor.shape = 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
MODEL_GRAPH = 7
GRAPH_INPUT, GRAPH_OUTPUT, GRAPH_VALUE_INFO = 11, 12, 13
VALUE_INFO_TYPE = 2
TYPE_TENSOR = 1
TENSOR_SHAPE = 2
SHAPE_DIM = 1
DIM_PARAM = 2


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("protobuf varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(field number, wire type, the whole encoded field, its payload) for each field of a message."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, end = _varint(buf, pos)
            payload_start = pos
        elif wire == _FIXED64:
            payload_start, end = pos, pos + 8
        elif wire == _FIXED32:
            payload_start, end = pos, pos + 4
        elif wire == _BYTES:
            length, payload_start = _varint(buf, pos)
            end = payload_start + length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if end > len(buf):
            raise ValueError("truncated protobuf field")
        yield number, wire, buf[start:end], buf[payload_start:end]
        pos = end


def _message(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(payload)) + payload


def _rewrite(buf: bytes, edits: Mapping[int, Callable[[bytes], bytes | None]]) -> bytes:
    """``buf`` with each length-delimited field whose number is in ``edits`` replaced by its edit (None drops it)."""
    out = bytearray()
    for number, wire, whole, payload in _fields(buf):
        edit = edits.get(number) if wire == _BYTES else None
        if edit is None:
            out += whole
            continue
        new = edit(payload)
        if new is not None:
            out += _message(number, new)
    return bytes(out)


def _drop(_: bytes) -> None:
    return None


def _shapeless(value_info: bytes) -> bytes:
    """A ValueInfoProto without the declared shape of its tensor type (element type kept)."""
    tensor = {TENSOR_SHAPE: _drop}
    return _rewrite(value_info, {VALUE_INFO_TYPE: lambda t: _rewrite(t, {TYPE_TENSOR: lambda x: _rewrite(x, tensor)})})


def _spatial_dims_free(shape: bytes) -> bytes:
    """A TensorShapeProto whose dimensions after the first two (N, C) are named (``dim_param``), not fixed."""
    out = bytearray()
    index = 0
    for number, wire, whole, _ in _fields(shape):
        if number == SHAPE_DIM and wire == _BYTES:
            if index >= 2:
                name = f"spatial_{index}".encode()
                whole = _message(SHAPE_DIM, _message(DIM_PARAM, name))
            index += 1
        out += whole
    return bytes(out)


def _input_free(value_info: bytes) -> bytes:
    """A ValueInfoProto (graph input) whose spatial dimensions are free; batch and channels stay declared."""
    tensor = {TENSOR_SHAPE: _spatial_dims_free}
    return _rewrite(value_info, {VALUE_INFO_TYPE: lambda t: _rewrite(t, {TYPE_TENSOR: lambda x: _rewrite(x, tensor)})})


def free_input_shapes(model: bytes) -> bytes:
    """The serialised ONNX ``model`` with free spatial input dimensions.

    The inputs' dimensions after N and C become named (symbolic) dimensions; the declared shapes of the
    outputs and the intermediate ``value_info`` (derived from the old fixed size) are removed.
    Raises ``ValueError`` when ``model`` is not a well-formed protobuf message.
    """
    graph_edits = {GRAPH_INPUT: _input_free, GRAPH_OUTPUT: _shapeless, GRAPH_VALUE_INFO: _drop}
    return _rewrite(model, {MODEL_GRAPH: lambda g: _rewrite(g, graph_edits)})
