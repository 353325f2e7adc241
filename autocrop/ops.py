"""Region feature operators: ``roi_align`` and ``rod_align`` (GAIC's region of discard).

Both take ``features`` [B, C, H, W] and ``rois`` [K, 5] rows ``(batch_index, x1, y1, x2, y2)`` in
*input-image pixels*; ``spatial_scale`` maps pixels to feature cells (1/16 for a stride-16 map).
With ``aligned=True`` a pixel index i covers the continuous interval [i, i+1) and its centre is at
i + 0.5 (half-pixel offset, as torchvision's ``aligned=True``).

- ``roi_align``: each of the oh x ow bins of the crop averages ``sampling_ratio``^2 bilinear samples.
- ``rod_align``: the bins tile the *whole* feature map; every sample that falls inside the crop is set
  to zero before averaging, so the output describes what the crop discards.

The pure-torch implementations here are exact references (differentiable through autograd). When the
compiled extension ``autocrop._C`` is importable its kernels are used instead; ``backend()`` says which.
``roi_align`` / ``rod_align`` dispatch: the compiled op for CPU float32/float64 inputs whose rois share
the features' dtype and need no gradient; the reference otherwise (CUDA tensors, gradients w.r.t. the
boxes, a missing extension). Environment ``AUTOCROP_OPS``: ``auto`` (default), ``torch`` (always the
reference) or ``compiled`` (fail loudly when the extension is missing).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

OPS_ENV = "AUTOCROP_OPS"


def _bilinear_gather(features: Tensor, batch: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Bilinear samples of ``features`` [B,C,H,W] at points y, x [K, P] (feature cells) -> [K, C, P].

    Follows torchvision's convention: points beyond one cell outside the map give 0, points in the
    border cell are clamped to the edge.
    """
    _, channels, height, width = features.shape
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

    flat = features.flatten(2)  # [B, C, H*W]
    per_roi = flat[batch]  # [K, C, H*W]

    def take(yi: Tensor, xi: Tensor) -> Tensor:
        index = (yi.long() * width + xi.long()).unsqueeze(1).expand(-1, channels, -1)
        return per_roi.gather(2, index)

    value = (
        (hy * hx).unsqueeze(1) * take(y_low, x_low)
        + (hy * lx).unsqueeze(1) * take(y_low, x_high)
        + (ly * hx).unsqueeze(1) * take(y_high, x_low)
        + (ly * lx).unsqueeze(1) * take(y_high, x_high)
    )
    return value * (~outside).unsqueeze(1).to(value.dtype)


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


def roi_align_reference(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """Pure-torch RoIAlign: [B,C,H,W], [K,5] -> [K, C, oh, ow]. See module docstring."""
    oh, ow = output_size
    offset = 0.5 if aligned else 0.0
    batch = rois[:, 0].long()
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    w = (rois[:, 3] - rois[:, 1]) * spatial_scale
    h = (rois[:, 4] - rois[:, 2]) * spatial_scale
    if not aligned:
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    ys = _sample_grid(y1, h, oh, sampling_ratio)  # [K, oh*s]
    xs = _sample_grid(x1, w, ow, sampling_ratio)  # [K, ow*s]
    yy = ys.unsqueeze(2).expand(-1, -1, xs.shape[1]).flatten(1)
    xx = xs.unsqueeze(1).expand(-1, ys.shape[1], -1).flatten(1)
    return _pool(_bilinear_gather(features, batch, yy, xx), oh, ow, sampling_ratio)


def rod_align_reference(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """Pure-torch RoDAlign: bins over the whole map, samples inside the crop zeroed. -> [K, C, oh, ow]."""
    oh, ow = output_size
    height, width = features.shape[-2:]
    offset = 0.5 if aligned else 0.0
    k = rois.shape[0]
    batch = rois[:, 0].long()
    zeros = torch.full((k,), -offset, dtype=rois.dtype, device=rois.device)
    ys = _sample_grid(zeros, torch.full_like(zeros, float(height)), oh, sampling_ratio)
    xs = _sample_grid(zeros, torch.full_like(zeros, float(width)), ow, sampling_ratio)
    yy = ys.unsqueeze(2).expand(-1, -1, xs.shape[1]).flatten(1)
    xx = xs.unsqueeze(1).expand(-1, ys.shape[1], -1).flatten(1)
    x1 = (rois[:, 1] * spatial_scale - offset).unsqueeze(1)
    y1 = (rois[:, 2] * spatial_scale - offset).unsqueeze(1)
    x2 = (rois[:, 3] * spatial_scale - offset).unsqueeze(1)
    y2 = (rois[:, 4] * spatial_scale - offset).unsqueeze(1)
    inside = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
    samples = _bilinear_gather(features, batch, yy, xx) * (~inside).unsqueeze(1).to(features.dtype)
    return _pool(samples, oh, ow, sampling_ratio)


@lru_cache(maxsize=1)
def compiled_status() -> tuple[bool, str]:
    """Load the C++ extension once: (True, path of the library) or (False, why it is not available)."""
    try:
        import autocrop._C as compiled  # loading the library registers torch.ops.autocrop.*
    except ImportError as err:
        return False, f"autocrop._C not importable ({err}); build with pip install --no-build-isolation ."
    except OSError as err:  # pragma: no cover - a library built against another torch
        return False, f"autocrop._C failed to load ({err})"
    try:
        torch.ops.autocrop.roi_align_forward  # noqa: B018 - raises if the schema is not registered
    except (AttributeError, RuntimeError) as err:  # pragma: no cover - a stale build
        return False, f"autocrop._C loaded but registers no autocrop ops ({err})"
    return True, str(getattr(compiled, "__file__", "autocrop._C"))


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


class _CompiledAlign(torch.autograd.Function):
    """Autograd wrapper of ``torch.ops.autocrop.{roi,rod}_align_{forward,backward}`` (gradient w.r.t. features)."""

    # ``ctx`` is typed Any: the saved attributes (args, feature_shape) are ours, not FunctionCtx's
    @staticmethod
    def forward(
        ctx: Any,
        features: Tensor,
        rois: Tensor,
        op: str,
        output_size: tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool,
    ) -> Tensor:
        available, reason = compiled_status()  # loads the library on first use
        if not available:
            raise RuntimeError(f"compiled {op} unavailable: {reason}")
        oh, ow = output_size
        forward_op = getattr(torch.ops.autocrop, f"{op}_forward")
        output = forward_op(features, rois, float(spatial_scale), int(oh), int(ow), int(sampling_ratio), bool(aligned))
        ctx.save_for_backward(rois)
        ctx.args = (op, int(oh), int(ow), float(spatial_scale), int(sampling_ratio), bool(aligned))
        ctx.feature_shape = tuple(features.shape)
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        (rois,) = ctx.saved_tensors
        op, oh, ow, spatial_scale, sampling_ratio, aligned = ctx.args
        grad_features = None
        if ctx.needs_input_grad[0]:
            batch, channels, height, width = ctx.feature_shape
            backward_op = getattr(torch.ops.autocrop, f"{op}_backward")
            grad_features = backward_op(
                grad.contiguous(), rois, spatial_scale, oh, ow, sampling_ratio, aligned, batch, channels, height, width
            )
        return grad_features, None, None, None, None, None, None


def roi_align(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """RoIAlign: features [B,C,H,W], rois [K,5] (batch, x1, y1, x2, y2 pixels) -> [K, C, oh, ow].

    Same result as :func:`roi_align_reference`; uses the compiled kernel when :func:`backend` allows.
    """
    if _use_compiled(features, rois):
        return _CompiledAlign.apply(features, rois, "roi_align", output_size, spatial_scale, sampling_ratio, aligned)
    return roi_align_reference(features, rois, output_size, spatial_scale, sampling_ratio, aligned)


def rod_align(
    features: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Tensor:
    """RoDAlign: bins over the whole map, samples inside the crop zeroed -> [K, C, oh, ow].

    Same result as :func:`rod_align_reference`; uses the compiled kernel when :func:`backend` allows.
    """
    if _use_compiled(features, rois):
        return _CompiledAlign.apply(features, rois, "rod_align", output_size, spatial_scale, sampling_ratio, aligned)
    return rod_align_reference(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
