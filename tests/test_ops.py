"""RoIAlign / RoDAlign: compiled kernels vs the pure-torch references, gradients, hand-worked cases, operator
registration (opcheck: schema, fake kernels, autograd) and tracing with symbolic shapes (torch.export)."""

from __future__ import annotations

import pytest
import torch

from autocrop import ops
from autocrop.errors import InputError

COMPILED, WHY_NOT = ops.compiled_status()
needs_compiled = pytest.mark.skipif(not COMPILED, reason=f"compiled extension absent: {WHY_NOT}")

REFERENCES = {"roi_align": ops.roi_align_reference, "rod_align": ops.rod_align_reference}
DISPATCH = {"roi_align": ops.roi_align, "rod_align": ops.rod_align}


def compiled(name: str, features, rois, output_size, scale, sampling_ratio=2, aligned=True):
    """The compiled op (its registered autograd formula included), whatever AUTOCROP_OPS says."""
    return ops.compiled_align(name, features, rois, output_size, scale, sampling_ratio, aligned)


def random_rois(generator: torch.Generator, batch: int, width: float, height: float, dtype) -> torch.Tensor:
    """[K, 5] boxes in pixels: ordinary, touching each border, partially outside, tiny, whole image."""
    rows = []
    for _ in range(24):  # ordinary boxes inside the image
        x1, x2 = sorted((torch.rand(2, generator=generator) * width).tolist())
        y1, y2 = sorted((torch.rand(2, generator=generator) * height).tolist())
        rows.append([x1, y1, x2 + 1.0, y2 + 1.0])
    rows += [
        [0.0, 0.0, width, height],  # the whole image
        [0.0, 10.3, 37.0, height],  # touching left and bottom
        [width - 50.5, 0.0, width, 41.2],  # touching right and top
        [-30.0, -12.5, 60.0, 70.0],  # partially outside, top left
        [width - 20.0, height - 33.0, width + 45.0, height + 80.0],  # partially outside, bottom right
        [-200.0, 5.0, -60.0, 50.0],  # entirely outside (samples beyond one cell give 0)
        [50.0, 60.0, 53.5, 62.0],  # tiny: much smaller than one feature cell (16 px)
        [width - 4.0, height - 3.0, width - 1.0, height - 0.5],  # tiny in the corner cell
        [100.0, 40.0, 100.0, 40.0],  # degenerate: zero area
    ]
    boxes = torch.tensor(rows, dtype=torch.float64)
    index = torch.randint(0, batch, (len(rows), 1), generator=generator).to(torch.float64)
    return torch.cat([index, boxes], dim=1).to(dtype)


CASES = [
    # (output_size, sampling_ratio, aligned)
    ((3, 3), 2, True),
    ((5, 4), 1, True),
    ((2, 6), 3, False),
    ((9, 9), 2, True),
]


@needs_compiled
@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
@pytest.mark.parametrize("output_size,sampling_ratio,aligned", CASES)
def test_compiled_matches_reference_forward_and_backward(name, output_size, sampling_ratio, aligned):
    generator = torch.Generator().manual_seed(10 * CASES.index((output_size, sampling_ratio, aligned)) + len(name))
    scale = 1.0 / 16.0
    batch, channels, height, width = 3, 5, 12, 17  # an image of 272 x 192 pixels at stride 16
    features = torch.randn(batch, channels, height, width, generator=generator)
    rois = random_rois(generator, batch, width / scale, height / scale, torch.float32)
    assert set(rois[:, 0].long().tolist()) == {0, 1, 2}

    f_ref = features.clone().requires_grad_(True)
    f_cmp = features.clone().requires_grad_(True)
    out_ref = REFERENCES[name](f_ref, rois, output_size, scale, sampling_ratio, aligned)
    out_cmp = compiled(name, f_cmp, rois, output_size, scale, sampling_ratio, aligned)
    assert out_cmp.shape == (rois.shape[0], channels, *output_size)
    assert out_cmp.dtype == torch.float32
    torch.testing.assert_close(out_cmp, out_ref, atol=1e-5, rtol=1e-5)

    grad_out = torch.randn(out_ref.shape, generator=generator)
    out_ref.backward(grad_out)
    out_cmp.backward(grad_out)
    assert f_cmp.grad.abs().sum() > 0
    torch.testing.assert_close(f_cmp.grad, f_ref.grad, atol=1e-5, rtol=1e-5)


@needs_compiled
@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
def test_compiled_float64_is_exact(name):
    generator = torch.Generator().manual_seed(7)
    features = torch.randn(2, 3, 9, 11, generator=generator, dtype=torch.float64)
    rois = random_rois(generator, 2, 11 * 16.0, 9 * 16.0, torch.float64)
    out_cmp = compiled(name, features, rois, (4, 4), 1 / 16)
    assert out_cmp.dtype == torch.float64
    torch.testing.assert_close(out_cmp, REFERENCES[name](features, rois, (4, 4), 1 / 16), atol=1e-12, rtol=1e-12)


def _gradcheck_inputs(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 2, 5, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor(
        [[0, 10.0, 7.0, 70.0, 50.0], [1, -9.0, 20.0, 40.0, 95.0], [1, 33.0, 2.0, 36.0, 9.0], [0, 0.0, 0.0, 96.0, 80.0]],
        dtype=torch.float64,
    )
    return features, rois


@needs_compiled
@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
def test_gradcheck_compiled(name):
    features, rois = _gradcheck_inputs(1)
    assert torch.autograd.gradcheck(lambda f: compiled(name, f, rois, (3, 2), 1 / 16, 2, True), (features,))
    assert torch.autograd.gradcheck(lambda f: compiled(name, f, rois, (2, 3), 1 / 16, 1, False), (features,))


@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
def test_gradcheck_reference(name):
    features, rois = _gradcheck_inputs(2)
    reference = REFERENCES[name]
    assert torch.autograd.gradcheck(lambda f: reference(f, rois, (3, 2), 1 / 16, 2, True), (features,))


@pytest.fixture(params=["torch", "compiled"])
def backend_env(request, monkeypatch):
    """Runs a test once per backend through the public roi_align / rod_align."""
    if request.param == "compiled" and not COMPILED:
        pytest.skip(f"compiled extension absent: {WHY_NOT}")
    monkeypatch.setenv(ops.OPS_ENV, request.param)
    assert ops.backend() == request.param
    return request.param


def test_constant_map_roi_align_returns_the_constant(backend_env):
    features = torch.full((2, 3, 6, 8), 2.5)
    rois = torch.tensor([[0, 0.0, 0.0, 128.0, 96.0], [1, 17.0, 3.0, 40.0, 90.0], [1, 126.0, 94.0, 127.5, 95.5]])
    out = ops.roi_align(features, rois, (4, 5), 1 / 16)
    torch.testing.assert_close(out, torch.full((3, 3, 4, 5), 2.5))


def test_rod_of_whole_image_is_zero(backend_env):
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(1, 4, 6, 8, generator=generator)
    rois = torch.tensor([[0, 0.0, 0.0, 128.0, 96.0], [0, -10.0, -10.0, 200.0, 100.0]])
    out = ops.rod_align(features, rois, (3, 3), 1 / 16)
    assert out.shape == (2, 4, 3, 3)
    assert torch.count_nonzero(out) == 0
    # a crop that keeps only part of the image discards something
    assert torch.count_nonzero(ops.rod_align(features, torch.tensor([[0, 0.0, 0.0, 64.0, 96.0]]), (3, 3), 1 / 16)) > 0


def test_roi_align_hand_worked_case(backend_env):
    # f(y, x) = 3y + x on a 3x3 map; bilinear sampling of a linear map is linear in the clamped
    # sample coordinates, so each bin is 3 * mean(y samples) + mean(x samples).
    features = torch.arange(9, dtype=torch.float32).view(1, 1, 3, 3)
    rois = torch.tensor([[0, 1.0, 0.0, 3.0, 2.0]])  # pixels; spatial_scale 1, aligned: cells x 0.5..2.5, y -0.5..1.5
    # x samples 0.75, 1.25 | 1.75, 2.25 -> 2.25 lies in the border cell and is clamped to 2.
    # y samples -0.25 -> 0 (clamped), 0.25 | 0.75, 1.25.
    x_mean = torch.tensor([1.0, (1.75 + 2.0) / 2])
    y_mean = torch.tensor([(0.0 + 0.25) / 2, 1.0])
    expected = (3 * y_mean[:, None] + x_mean[None, :]).view(1, 1, 2, 2)
    torch.testing.assert_close(ops.roi_align(features, rois, (2, 2), 1.0, 2, True), expected)
    torch.testing.assert_close(expected, torch.tensor([[[[1.375, 2.25], [4.0, 4.875]]]]))
    # a box more than one cell left of the map samples nothing
    far = torch.tensor([[0, -40.0, 0.0, -20.0, 2.0]])
    assert torch.count_nonzero(ops.roi_align(features, far, (2, 2), 1.0)) == 0


def test_rod_align_hand_worked_case(backend_env):
    # 2x2 map of ones, 2x2 bins with one sample each at cell centres (0,0), (0,1), (1,0), (1,1);
    # the crop (pixels 0..1 x 0..1) covers only the sample at (0, 0).
    features = torch.ones(1, 1, 2, 2)
    out = ops.rod_align(features, torch.tensor([[0, 0.0, 0.0, 1.0, 1.0]]), (2, 2), 1.0, 1, True)
    torch.testing.assert_close(out, torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]]))
    grad = torch.ones(1, 1, 2, 2, requires_grad=True)
    ops.rod_align(grad, torch.tensor([[0, 0.0, 0.0, 1.0, 1.0]]), (2, 2), 1.0, 1, True).sum().backward()
    torch.testing.assert_close(grad.grad, torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]]))


@needs_compiled
def test_dispatch_uses_compiled_kernel(monkeypatch):
    monkeypatch.delenv(ops.OPS_ENV, raising=False)
    assert ops.backend() == "compiled"

    def forbidden(*args, **kwargs):
        raise AssertionError("reference called although the compiled op applies")

    features = torch.randn(1, 2, 4, 4)
    rois = torch.tensor([[0, 4.0, 4.0, 40.0, 50.0]])
    expected = ops.roi_align_reference(features, rois, (2, 2), 1 / 16)
    monkeypatch.setattr(ops, "roi_align_reference", forbidden)
    monkeypatch.setattr(ops, "rod_align_reference", forbidden)
    torch.testing.assert_close(ops.roi_align(features, rois, (2, 2), 1 / 16), expected)
    ops.rod_align(features, rois, (2, 2), 1 / 16)
    with torch.inference_mode():
        ops.roi_align(features, rois, (2, 2), 1 / 16)


def test_gradient_wrt_boxes_uses_reference(monkeypatch):
    monkeypatch.delenv(ops.OPS_ENV, raising=False)
    features = torch.randn(1, 2, 4, 4)
    rois = torch.tensor([[0, 4.0, 4.0, 40.0, 50.0]], requires_grad=True)
    ops.roi_align(features, rois, (2, 2), 1 / 16).sum().backward()
    assert rois.grad is not None and torch.count_nonzero(rois.grad[:, 1:]) > 0


def test_backend_environment(monkeypatch):
    monkeypatch.setenv(ops.OPS_ENV, "torch")
    assert ops.backend() == "torch"
    monkeypatch.setenv(ops.OPS_ENV, "fast")
    with pytest.raises(InputError, match="AUTOCROP_OPS"):
        ops.backend()
    monkeypatch.setenv(ops.OPS_ENV, "compiled")
    if COMPILED:
        assert ops.backend() == "compiled"
    else:
        with pytest.raises(InputError, match="unavailable"):
            ops.backend()
    monkeypatch.delenv(ops.OPS_ENV)
    assert ops.backend() == ("compiled" if COMPILED else "torch")


@needs_compiled
def test_compiled_rejects_bad_input():
    features = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="batch index"):
        compiled("roi_align", features, torch.tensor([[1, 0.0, 0.0, 8.0, 8.0]]), (2, 2), 1 / 16)
    with pytest.raises(RuntimeError, match=r"\[K, 5\]"):
        compiled("rod_align", features, torch.zeros(3, 4), (2, 2), 1 / 16)
    with pytest.raises(RuntimeError, match="sampling_ratio"):
        compiled("roi_align", features, torch.tensor([[0, 0.0, 0.0, 8.0, 8.0]]), (2, 2), 1 / 16, 0)
    empty = compiled("roi_align", features, torch.zeros(0, 5), (2, 2), 1 / 16)
    assert empty.shape == (0, 2, 2, 2)


OPCHECK_ROIS = [[0, 10.0, 7.0, 70.0, 50.0], [1, -9.0, 20.0, 40.0, 95.0], [1, 33.0, 2.0, 36.0, 9.0]]


@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_registered_operators(name, dtype):
    """Schema, fake (meta) kernel, autograd registration and AOT dispatch with dynamic shapes, as torch checks them."""
    ops.ensure_ops()
    generator = torch.Generator().manual_seed(4)
    features = torch.randn(2, 3, 6, 7, generator=generator, dtype=dtype, requires_grad=True)
    rois = torch.tensor(OPCHECK_ROIS, dtype=dtype)
    forward = getattr(torch.ops.autocrop, f"{name}_forward")
    backward = getattr(torch.ops.autocrop, f"{name}_backward")
    for op, args in (
        (forward, (features, rois, 1 / 16, 3, 2, 2, True)),
        (forward, (features.detach(), rois, 0.5, 2, 2, 1, False)),
        (backward, (torch.randn(3, 3, 3, 2, generator=generator, dtype=dtype), rois, 1 / 16, 3, 2, 2, True,
                    2, 3, 6, 7)),
    ):
        result = torch.library.opcheck(op, args)
        assert set(result.values()) == {"SUCCESS"}, result


@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
def test_reference_kernels_registered_without_the_extension_match_the_compiled_ones(name):
    """A build without the extension registers the references under the same schemas: same forward and backward."""
    forward, backward = ops._reference_kernels(name)
    generator = torch.Generator().manual_seed(8)
    features = torch.randn(2, 3, 6, 7, generator=generator, dtype=torch.float64)
    rois = torch.tensor(OPCHECK_ROIS, dtype=torch.float64)
    grad = torch.randn(3, 3, 3, 2, generator=generator, dtype=torch.float64)
    out = forward(features, rois, 1 / 16, 3, 2, 2, True)
    torch.testing.assert_close(out, ops.REFERENCES[name](features, rois, (3, 2), 1 / 16, 2, True))
    leaf = features.clone().requires_grad_(True)
    ops.REFERENCES[name](leaf, rois, (3, 2), 1 / 16, 2, True).backward(grad)
    torch.testing.assert_close(backward(grad, rois, 1 / 16, 3, 2, 2, True, 2, 3, 6, 7), leaf.grad)
    if COMPILED:
        torch.testing.assert_close(out, compiled(name, features, rois, (3, 2), 1 / 16), atol=1e-12, rtol=1e-12)
        compiled_grad = getattr(torch.ops.autocrop, f"{name}_backward")(grad, rois, 1 / 16, 3, 2, 2, True, 2, 3, 6, 7)
        torch.testing.assert_close(compiled_grad, leaf.grad, atol=1e-12, rtol=1e-12)


class _Heads(torch.nn.Module):
    """RoI + RoD features of boxes [N, 4] (input pixels) on a stride-16 map of an image of any size."""

    def __init__(self, use_reference: bool) -> None:
        super().__init__()
        self.use_reference = use_reference

    def forward(self, features: torch.Tensor, boxes: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        scale = features.shape[-1] / image.shape[-1]
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        if self.use_reference:
            return torch.cat([ops.roi_align_reference(features, rois, (3, 3), scale),
                              ops.rod_align_reference(features, rois, (3, 3), scale)], dim=1)
        return torch.cat([ops.roi_align(features, rois, (3, 3), scale),
                          ops.rod_align(features, rois, (3, 3), scale)], dim=1)


@pytest.mark.parametrize("use_reference", [False, True])
def test_ops_trace_with_symbolic_sizes(use_reference):
    """torch.export with dynamic map size, image size and box count; the program then runs at other sizes."""
    height, width, count = torch.export.Dim("h", min=2), torch.export.Dim("w", min=2), torch.export.Dim("n")
    image_h, image_w = torch.export.Dim("ih", min=16), torch.export.Dim("iw", min=16)
    example = (torch.randn(1, 4, 8, 12), torch.tensor([[0.0, 0.0, 100.0, 80.0], [20.0, 10.0, 150.0, 120.0]]),
               torch.zeros(1, 3, 128, 192))
    program = torch.export.export(_Heads(use_reference), example, dynamic_shapes=(
        {2: height, 3: width}, {0: count}, {2: image_h, 3: image_w}))
    targets = {str(node.target) for node in program.graph.nodes}
    assert any("autocrop.roi_align_forward" in t for t in targets) != use_reference
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(1, 4, 11, 7, generator=generator)
    boxes = torch.tensor([[0.0, 0.0, 112.0, 176.0], [5.0, 30.0, 60.0, 150.0], [50.0, 2.0, 111.0, 90.0]])
    image = torch.zeros(1, 3, 176, 112)
    expected = _Heads(True)(features, boxes, image)
    torch.testing.assert_close(program.module()(features, boxes, image), expected, atol=1e-5, rtol=1e-5)


def test_operators_exist_and_pass_opcheck_without_the_extension():
    """A build without a C++ compiler: the references are registered under the same schemas (fresh process)."""
    import subprocess
    import sys

    code = """
import sys
sys.modules["autocrop._C"] = None  # the extension is absent
import torch
from autocrop import ops
assert ops.compiled_status()[0] is False and ops.backend() == "torch"
features = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
rois = torch.tensor([[0, 10.0, 7.0, 70.0, 50.0], [1, -9.0, 20.0, 40.0, 95.0]], dtype=torch.float64)
for name in ("roi_align", "rod_align"):
    forward, backward = (getattr(torch.ops.autocrop, f"{name}_{d}") for d in ("forward", "backward"))
    assert set(torch.library.opcheck(forward, (features, rois, 1 / 16, 3, 2, 2, True)).values()) == {"SUCCESS"}
    grad = torch.randn(2, 3, 3, 2, dtype=torch.float64)
    args = (grad, rois, 1 / 16, 3, 2, 2, True, 2, 3, 6, 7)
    assert set(torch.library.opcheck(backward, args).values()) == {"SUCCESS"}
    assert torch.autograd.gradcheck(lambda f: forward(f, rois, 1 / 16, 3, 2, 2, True), (features,))
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
