"""Region feature operators: ``roi_align`` and ``rod_align`` (GAIC's region of discard).

Both take ``features`` [B, C, H, W] and ``rois`` [K, 5] rows ``(batch_index, x1, y1, x2, y2)`` in
*input-image pixels*; ``spatial_scale`` maps pixels to feature cells (1/16 for a stride-16 map).
With ``aligned=True`` a pixel index i covers the continuous interval [i, i+1) and its centre is at
i + 0.5 (half-pixel offset, as torchvision's ``aligned=True``).

- ``roi_align``: each of the oh x ow bins of the crop averages ``sampling_ratio``^2 bilinear samples.
- ``rod_align``: the bins tile the *whole* feature map; every sample that falls inside the crop is set
  to zero before averaging, so the output describes what the crop discards.

The pure-torch implementations here are exact references (differentiable through autograd, shape-generic).
The operators ``torch.ops.autocrop.{roi,rod}_align_{forward,backward}`` run the compiled kernels of
``autocrop._C`` when it is importable (else the references, registered under the same schemas); they have
fake kernels and an autograd formula (``torch.library``), so they trace with symbolic shapes.
``roi_align`` / ``rod_align`` dispatch: the compiled op for CPU float32/float64 inputs whose rois share
the features' dtype and need no gradient; the reference otherwise (CUDA tensors, gradients w.r.t. the
boxes, a missing extension); the registered operator while ``torch.export`` traces (the ONNX export maps it
to ONNX ``RoiAlign``). ``backend()`` says which kernels eager calls use. Environment ``AUTOCROP_OPS``:
``auto`` (default), ``torch`` (always the reference) or ``compiled`` (fail loudly when the extension is missing).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

OPS_ENV = "AUTOCROP_OPS"


def _bilinear_taps(y: Tensor, x: Tensor, height: int, width: int) -> tuple[list[Tensor], list[Tensor], Tensor]:
    """The four bilinear neighbours of points y, x [K, P] (feature cells) on an H x W map.

    Returns (flat indices y * W + x [K, P] int64, weights [K, P], inside [K, P] bool), neighbours in the
    order (low, low), (low, high), (high, low), (high, high). torchvision's convention: points beyond one
    cell outside the map contribute nothing (``inside`` False), points in the border cell are clamped.
    """
    outside = (y < -1.0) | (y > height) | (x < -1.0) | (x > width)
    y = y.clamp(min=0.0)
    x = x.clamp(min=0.0)
    y_low = y.floor().clamp(max=height - 1)
    x_low = x.floor().clamp(max=width - 1)
    y = torch.where(y_low >= height - 1, y_low, y)
    x = torch.where(x_low >= width - 1, x_low, x)
    y_high = (y_low + 1).clamp(max=height - 1)
    x_high = (x_low + 1).clamp(max=width - 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    corners = ((y_low, x_low), (y_low, x_high), (y_high, x_low), (y_high, x_high))
    indices = [yi.long() * width + xi.long() for yi, xi in corners]
    return indices, [hy * hx, hy * lx, ly * hx, ly * lx], ~outside


def _bilinear_gather(features: Tensor, batch: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Bilinear samples of ``features`` [B,C,H,W] at points y, x [K, P] (feature cells) of image ``batch`` [K]
    -> [K, C, P] (see :func:`_bilinear_taps`)."""
    _, channels, height, width = features.shape
    indices, weights, inside = _bilinear_taps(y, x, height, width)
    per_roi = features.flatten(2)[batch]  # [K, C, H*W]
    taken = [per_roi.gather(2, index.unsqueeze(1).expand(-1, channels, -1)) for index in indices]
    value = (
        weights[0].unsqueeze(1) * taken[0]
        + weights[1].unsqueeze(1) * taken[1]
        + weights[2].unsqueeze(1) * taken[2]
        + weights[3].unsqueeze(1) * taken[3]
    )
    return value * inside.unsqueeze(1).to(value.dtype)


def _bilinear_scatter(grad: Tensor, batch: Tensor, y: Tensor, x: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Adjoint of :func:`_bilinear_gather`: grad [K, C, P] of the samples -> grad of the features ``shape``."""
    batch_size, channels, height, width = shape
    indices, weights, inside = _bilinear_taps(y, x, height, width)
    grad = grad * inside.unsqueeze(1).to(grad.dtype)
    per_roi = grad.new_zeros((grad.shape[0], channels, height * width))
    for index, weight in zip(indices, weights):
        per_roi.scatter_add_(2, index.unsqueeze(1).expand(-1, channels, -1), weight.unsqueeze(1) * grad)
    out = grad.new_zeros((batch_size, channels, height * width)).index_add_(0, batch, per_roi)
    return out.view(batch_size, channels, height, width)


def _sample_grid(start: Tensor, length: Tensor, bins: int, sampling_ratio: int) -> Tensor:
    """Sample coordinates [K, bins * sampling_ratio] along one axis for boxes starting at ``start`` [K]."""
    steps = torch.arange(bins * sampling_ratio, dtype=start.dtype, device=start.device)
    bin_index = torch.div(steps, sampling_ratio, rounding_mode="floor")
    within = steps - bin_index * sampling_ratio
    bin_size = (length / bins).unsqueeze(1)
    return start.unsqueeze(1) + bin_index * bin_size + (within + 0.5) * bin_size / sampling_ratio


def _pool(samples: Tensor, oh: int, ow: int, s: int) -> Tensor:
    """Average s x s samples per bin: [K, C, oh*s*ow*s] -> [K, C, oh, ow]."""
    k, c, _ = samples.shape
    return samples.view(k, c, oh, s, ow, s).mean(dim=(3, 5))


def _unpool(grad: Tensor, s: int) -> Tensor:
    """Adjoint of :func:`_pool`: [K, C, oh, ow] -> [K, C, oh*s*ow*s], each bin's value / s^2 on its samples."""
    k, c, oh, ow = grad.shape
    return (grad / (s * s))[:, :, :, None, :, None].expand(k, c, oh, s, ow, s).reshape(k, c, oh * s * ow * s)


def _grid(ys: Tensor, xs: Tensor) -> tuple[Tensor, Tensor]:
    """Row-major sample points of axes ys [K, R], xs [K, Q] -> yy, xx [K, R * Q]."""
    yy = ys.unsqueeze(2).expand(-1, -1, xs.shape[1]).flatten(1)
    xx = xs.unsqueeze(1).expand(-1, ys.shape[1], -1).flatten(1)
    return yy, xx


def _roi_points(rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int,
                aligned: bool) -> tuple[Tensor, Tensor]:
    """RoIAlign's sample points yy, xx [K, oh*s*ow*s] (feature cells): an even sub-grid of each box's bins."""
    oh, ow = output_size
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    w = (rois[:, 3] - rois[:, 1]) * spatial_scale
    h = (rois[:, 4] - rois[:, 2]) * spatial_scale
    if not aligned:
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    return _grid(_sample_grid(y1, h, oh, sampling_ratio), _sample_grid(x1, w, ow, sampling_ratio))


def _rod_points(shape: tuple[int, ...], rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                sampling_ratio: int, aligned: bool) -> tuple[Tensor, Tensor, Tensor]:
    """RoDAlign's sample points yy, xx [1, P] over a whole map of ``shape`` [B, C, H, W] and, per box, the
    samples it keeps [K, P] (1 outside the crop, 0 inside). Shape-generic: no Python arithmetic on H, W."""
    oh, ow = output_size
    height, width = shape[2], shape[3]
    offset = 0.5 if aligned else 0.0
    start = rois.new_full((1,), -offset)
    yy, xx = _grid(_sample_grid(start, rois.new_ones(1) * height, oh, sampling_ratio),
                   _sample_grid(start, rois.new_ones(1) * width, ow, sampling_ratio))
    x1 = (rois[:, 1] * spatial_scale - offset).unsqueeze(1)
    y1 = (rois[:, 2] * spatial_scale - offset).unsqueeze(1)
    x2 = (rois[:, 3] * spatial_scale - offset).unsqueeze(1)
    y2 = (rois[:, 4] * spatial_scale - offset).unsqueeze(1)
    inside = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)  # [K, P]
    return yy, xx, (~inside).to(rois.dtype)


def roi_align_reference(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                        sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """Pure-torch RoIAlign: [B,C,H,W], [K,5] -> [K, C, oh, ow]. See module docstring."""
    oh, ow = output_size
    yy, xx = _roi_points(rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _pool(_bilinear_gather(features, rois[:, 0].long(), yy, xx), oh, ow, sampling_ratio)


def rod_align_reference(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                        sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """Pure-torch RoDAlign: bins over the whole map, samples inside the crop zeroed. -> [K, C, oh, ow].

    Shape-generic (traces with symbolic H, W, K): the sample grid depends on the map size only, so it is
    built once ([1, oh*s*ow*s]) and sampled once per image; each box then masks its own copy.
    """
    oh, ow = output_size
    batch_size = features.shape[0]
    yy, xx, keep = _rod_points(tuple(features.shape), rois, output_size, spatial_scale, sampling_ratio, aligned)
    images = torch.arange(batch_size, device=features.device)
    per_image = _bilinear_gather(features, images, yy.expand(batch_size, -1), xx.expand(batch_size, -1))  # [B, C, P]
    samples = per_image[rois[:, 0].long()] * keep.unsqueeze(1).to(features.dtype)
    return _pool(samples, oh, ow, sampling_ratio)


def roi_align_reference_backward(grad: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                                 sampling_ratio: int, aligned: bool, shape: tuple[int, ...]) -> Tensor:
    """Gradient of :func:`roi_align_reference` w.r.t. features of ``shape`` for grad [K, C, oh, ow] (it is linear)."""
    yy, xx = _roi_points(rois, output_size, spatial_scale, sampling_ratio, aligned)
    return _bilinear_scatter(_unpool(grad, sampling_ratio), rois[:, 0].long(), yy, xx, shape)


def rod_align_reference_backward(grad: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
                                 sampling_ratio: int, aligned: bool, shape: tuple[int, ...]) -> Tensor:
    """Gradient of :func:`rod_align_reference` w.r.t. features of ``shape`` for grad [K, C, oh, ow]."""
    batch_size, channels = shape[0], shape[1]
    yy, xx, keep = _rod_points(shape, rois, output_size, spatial_scale, sampling_ratio, aligned)
    samples = _unpool(grad, sampling_ratio) * keep.unsqueeze(1).to(grad.dtype)  # [K, C, P]
    per_image = grad.new_zeros((batch_size, channels, samples.shape[2])).index_add_(0, rois[:, 0].long(), samples)
    images = torch.arange(batch_size, device=grad.device)
    return _bilinear_scatter(per_image, images, yy.expand(batch_size, -1), xx.expand(batch_size, -1), shape)


REFERENCES = {"roi_align": roi_align_reference, "rod_align": rod_align_reference}
ADJOINTS = {"roi_align": roi_align_reference_backward, "rod_align": rod_align_reference_backward}

# ------------------------------------------------------------------------------ operator registration
# The operators torch.ops.autocrop.{roi,rod}_align_{forward,backward} (schemas in ext/ops.cpp): C++ kernels when
# the extension is built, else the references above registered under the same schemas from Python. Either way
# they get fake (meta) kernels, so they trace with symbolic shapes (torch.export, torch.compile), and an autograd
# formula (gradient w.r.t. features only), checked by torch.library.opcheck in tests/test_ops.py.

SCHEMAS = (
    "{name}_forward(Tensor features, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
    "int sampling_ratio, bool aligned) -> Tensor",
    "{name}_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, int pooled_width, "
    "int sampling_ratio, bool aligned, int batch_size, int channels, int height, int width) -> Tensor",
)
_LIBRARIES: list[torch.library.Library] = []  # Python-defined schemas live as long as these objects


def _fake_forward(
    features: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int,
    sampling_ratio: int, aligned: bool,
) -> Tensor:
    """Fake (meta) kernel: features [B, C, H, W], rois [K, 5] -> empty [K, C, pooled_height, pooled_width]."""
    torch._check(features.dim() == 4, lambda: f"autocrop ops: features must be [B, C, H, W], got {features.shape}")
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: f"autocrop ops: rois must be [K, 5], got {rois.shape}")
    return features.new_empty((rois.shape[0], features.shape[1], pooled_height, pooled_width))


def _fake_backward(
    grad: Tensor, rois: Tensor, spatial_scale: float, pooled_height: int, pooled_width: int, sampling_ratio: int,
    aligned: bool, batch_size: int, channels: int, height: int, width: int,
) -> Tensor:
    """Fake (meta) kernel of the backward: -> empty [batch_size, channels, height, width]."""
    return grad.new_empty((batch_size, channels, height, width))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    features, rois, *geometry = inputs
    ctx.save_for_backward(rois)
    ctx.geometry = tuple(geometry)  # spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned
    ctx.feature_shape = tuple(features.shape)


def _autograd_of(name: str) -> Any:
    """The backward formula of ``{name}_forward``: the gradient w.r.t. features through ``{name}_backward``."""

    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors
        grad_features = None
        if ctx.needs_input_grad[0]:
            backward_op = getattr(torch.ops.autocrop, f"{name}_backward")
            grad_features = backward_op(grad.contiguous(), rois, *ctx.geometry, *ctx.feature_shape)
        return grad_features, None, None, None, None, None, None

    return backward


def _reference_kernels(name: str) -> tuple[Any, Any]:
    """CPU kernels (forward, backward) computed by the pure-torch reference, for a build without the extension."""
    reference, adjoint = REFERENCES[name], ADJOINTS[name]

    def forward(features: Tensor, rois: Tensor, scale: float, oh: int, ow: int, s: int, aligned: bool) -> Tensor:
        return reference(features, rois, (oh, ow), scale, s, aligned)

    def backward(grad: Tensor, rois: Tensor, scale: float, oh: int, ow: int, s: int, aligned: bool,
                 *shape: int) -> Tensor:  # shape: batch, channels, height, width
        return adjoint(grad, rois, (oh, ow), scale, s, aligned, shape)

    return forward, backward


@lru_cache(maxsize=1)
def compiled_status() -> tuple[bool, str]:
    """Load the C++ extension once: (True, path of the library) or (False, why it is not available).

    Either way the operators ``torch.ops.autocrop.*`` exist afterwards (see :func:`ensure_ops`).
    """
    try:
        import autocrop._C as compiled  # loading the library registers torch.ops.autocrop.*
    except ImportError as err:
        status = False, f"autocrop._C not importable ({err}); build with pip install --no-build-isolation ."
    except OSError as err:  # pragma: no cover - a library built against another torch
        status = False, f"autocrop._C failed to load ({err})"
    else:
        try:
            torch.ops.autocrop.roi_align_forward  # noqa: B018 - raises if the schema is not registered
            status = True, str(getattr(compiled, "__file__", "autocrop._C"))
        except (AttributeError, RuntimeError) as err:  # pragma: no cover - a stale build
            status = False, f"autocrop._C loaded but registers no autocrop ops ({err})"
    _register(compiled=status[0])
    return status


def _register(compiled: bool) -> None:
    """Fake kernels + autograd for the four operators; without the extension, their schemas and reference kernels."""
    library = None if compiled else torch.library.Library("autocrop", "FRAGMENT")
    for name in REFERENCES:
        if library is not None:
            for schema in SCHEMAS:
                library.define(schema.format(name=name))
            forward, backward = _reference_kernels(name)
            library.impl(f"{name}_forward", forward, "CPU")
            library.impl(f"{name}_backward", backward, "CPU")
        torch.library.register_fake(f"autocrop::{name}_forward")(_fake_forward)
        torch.library.register_fake(f"autocrop::{name}_backward")(_fake_backward)
        torch.library.register_autograd(f"autocrop::{name}_forward", _autograd_of(name), setup_context=_setup_context)
    if library is not None:
        _LIBRARIES.append(library)


def ensure_ops() -> None:
    """Make sure ``torch.ops.autocrop.{roi,rod}_align_{forward,backward}`` exist (compiled or reference kernels)."""
    compiled_status()


def backend() -> str:
    """'compiled' when the C++ extension is loaded (and not disabled by ``AUTOCROP_OPS=torch``), else 'torch'.

    Raises :class:`autocrop.errors.InputError` for an unknown ``AUTOCROP_OPS`` value, or for
    ``AUTOCROP_OPS=compiled`` when the extension is missing.
    """
    choice = os.environ.get(OPS_ENV, "auto").strip().lower() or "auto"
    if choice == "torch":
        return "torch"
    if choice not in ("auto", "compiled"):
        from autocrop.errors import InputError

        raise InputError(f"{OPS_ENV}={choice!r}: expected 'auto', 'torch' or 'compiled'")
    available, reason = compiled_status()
    if available:
        return "compiled"
    if choice == "compiled":
        from autocrop.errors import InputError

        raise InputError(f"{OPS_ENV}=compiled but the compiled ops are unavailable: {reason}")
    return "torch"


def _use_compiled(features: Tensor, rois: Tensor) -> bool:
    """True when the compiled kernels can compute exactly what the reference would."""
    return (
        features.device.type == "cpu"
        and rois.device.type == "cpu"
        and features.dtype in (torch.float32, torch.float64)
        and rois.dtype == features.dtype
        and not rois.requires_grad
        and backend() == "compiled"
    )


def compiled_align(
    name: str, features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
    sampling_ratio: int = 2, aligned: bool = True,
) -> Tensor:
    """``torch.ops.autocrop.{name}_forward`` (name: ``roi_align`` / ``rod_align``) -> [K, C, oh, ow].

    Differentiable w.r.t. ``features`` (its registered autograd formula); the C++ kernel when the extension
    is built, else the reference registered under the same schema.
    """
    ensure_ops()
    oh, ow = output_size
    forward_op = getattr(torch.ops.autocrop, f"{name}_forward")
    return forward_op(features, rois, spatial_scale, oh, ow, sampling_ratio, aligned)


class _CompiledAlign:
    """Backward-compatible spelling of :func:`compiled_align`: ``_CompiledAlign.apply(features, rois, name, ...)``."""

    @staticmethod
    def apply(features: Tensor, rois: Tensor, name: str, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int, aligned: bool) -> Tensor:
        return compiled_align(name, features, rois, output_size, float(spatial_scale), sampling_ratio, aligned)


def _exported(name: str, features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int, aligned: bool) -> Tensor:
    """The operator as traced by ``torch.export`` (ONNX export): rois pre-scaled to feature cells, scale 1.

    ``spatial_scale`` may then be symbolic (it is feature width / input width); the operator's ``float``
    argument must not be, or the export would pin the input size.
    """
    cells = torch.cat([rois[:, :1], rois[:, 1:] * spatial_scale], dim=1)
    return compiled_align(name, features, cells, output_size, 1.0, sampling_ratio, aligned)


def _align(name: str, features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
           sampling_ratio: int, aligned: bool) -> Tensor:
    if torch.compiler.is_exporting():
        return _exported(name, features, rois, output_size, spatial_scale, sampling_ratio, aligned)
    if _use_compiled(features, rois):
        return compiled_align(name, features, rois, output_size, float(spatial_scale), sampling_ratio, aligned)
    return REFERENCES[name](features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def roi_align(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """RoIAlign: features [B,C,H,W], rois [K,5] (batch, x1, y1, x2, y2 pixels) -> [K, C, oh, ow].

    Same result as :func:`roi_align_reference`; uses the compiled kernel when :func:`backend` allows, and the
    registered operator while ``torch.export`` traces (mapped to ONNX RoiAlign by :mod:`autocrop.model.export`).
    """
    return _align("roi_align", features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def rod_align(features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """RoDAlign: bins over the whole map, samples inside the crop zeroed -> [K, C, oh, ow].

    Same result as :func:`rod_align_reference`; dispatch as :func:`roi_align`.
    """
    return _align("rod_align", features, rois, output_size, spatial_scale, sampling_ratio, aligned)
