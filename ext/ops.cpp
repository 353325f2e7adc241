// Operator schemas of the autocrop extension and the Python module stub.
//
// The kernels live in one file per device (ext/cpu/roi_kernels_cpu.cpp); this file only declares the
// four operators so that `torch.ops.autocrop.<name>` exists once the shared library is loaded.
// Conventions (shared by all kernels, identical to autocrop/ops.py's pure-torch references):
//   features [B, C, H, W]; rois [K, 5] rows (batch_index, x1, y1, x2, y2) in input-image pixels;
//   spatial_scale maps pixels to feature cells; output [K, C, pooled_height, pooled_width].
//   backward returns the gradient w.r.t. features [batch_size, channels, height, width] only.

#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(autocrop, m) {
  m.def(
      "roi_align_forward(Tensor features, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned, int batch_size, int channels, int height, "
      "int width) -> Tensor");
  m.def(
      "rod_align_forward(Tensor features, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  m.def(
      "rod_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned, int batch_size, int channels, int height, "
      "int width) -> Tensor");
}

// `import autocrop._C` loads this library (which registers the operators above); the module itself
// is empty. No pybind11: it would triple the build time for nothing.
static struct PyModuleDef autocrop_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  return PyModule_Create(&autocrop_c_module);
}
