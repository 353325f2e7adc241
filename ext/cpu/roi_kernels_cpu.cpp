// CPU kernels of autocrop::roi_align_* and autocrop::rod_align_* (forward and backward).
//
// Semantics are exactly those of autocrop/ops.py roi_align_reference / rod_align_reference:
//   * a point (y, x) in feature cells is sampled bilinearly with torchvision's convention: points more
//     than one cell outside the map give 0, points in the border cell are clamped to the edge;
//   * aligned=True shifts box corners by -0.5 cell (pixel i covers [i, i+1), centre i + 0.5);
//   * every output bin averages sampling_ratio x sampling_ratio samples at the centres of an even
//     sub-grid of the bin (the count is fixed: samples outside the map or zeroed still count);
//   * RoIAlign: the oh x ow bins tile the box (aligned=False: box width/height at least 1 cell);
//   * RoDAlign: the bins tile the whole feature map and each sample that lies inside the box
//     (x1 <= x <= x2 and y1 <= y <= y2, box corners in cells) is set to zero.
// Coordinates are computed in the input dtype with the same operation order as the reference, so
// float32 results agree to rounding of the final sums.

// Only the headers used (per-operator headers instead of <ATen/ATen.h>) keep the build short.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace autocrop {
namespace {

// The four bilinear neighbours of one sample: flat indices into an H*W plane and their weights.
// A sample that contributes nothing (outside the map, or inside the box for RoD) has live == false.
template <typename T>
struct Tap {
  int64_t index[4];
  T weight[4];
  bool live;
};

struct Geometry {
  double spatial_scale;
  int64_t pooled_height;
  int64_t pooled_width;
  int64_t sampling_ratio;
  bool aligned;
  bool discard;  // true: RoDAlign (bins over the whole map, samples inside the box zeroed)
};

template <typename T>
Tap<T> bilinear_tap(T y, T x, int64_t height, int64_t width) {
  Tap<T> tap{};
  tap.live = false;
  if (y < T(-1) || y > T(height) || x < T(-1) || x > T(width)) {
    return tap;
  }
  if (y < T(0)) y = T(0);
  if (x < T(0)) x = T(0);
  int64_t y_low = static_cast<int64_t>(std::floor(y));
  int64_t x_low = static_cast<int64_t>(std::floor(x));
  if (y_low >= height - 1) {
    y_low = height - 1;
    y = static_cast<T>(y_low);
  }
  if (x_low >= width - 1) {
    x_low = width - 1;
    x = static_cast<T>(x_low);
  }
  const int64_t y_high = y_low + 1 < height - 1 ? y_low + 1 : height - 1;
  const int64_t x_high = x_low + 1 < width - 1 ? x_low + 1 : width - 1;
  const T ly = y - static_cast<T>(y_low);
  const T lx = x - static_cast<T>(x_low);
  const T hy = T(1) - ly;
  const T hx = T(1) - lx;
  tap.index[0] = y_low * width + x_low;
  tap.index[1] = y_low * width + x_high;
  tap.index[2] = y_high * width + x_low;
  tap.index[3] = y_high * width + x_high;
  tap.weight[0] = hy * hx;
  tap.weight[1] = hy * lx;
  tap.weight[2] = ly * hx;
  tap.weight[3] = ly * lx;
  tap.live = true;
  return tap;
}

// Sample coordinates along one axis: start + bin * bin_size + (within + 0.5) * bin_size / s.
template <typename T>
void sample_axis(T start, T length, int64_t bins, int64_t s, T* out) {
  const T bin_size = length / static_cast<T>(bins);
  for (int64_t i = 0; i < bins * s; ++i) {
    const int64_t bin = i / s;
    const int64_t within = i - bin * s;
    out[i] = start + static_cast<T>(bin) * bin_size +
        (static_cast<T>(within) + T(0.5)) * bin_size / static_cast<T>(s);
  }
}

// Fills taps[(iy) * (pooled_width * s) + ix] for the (pooled_height*s) x (pooled_width*s) samples
// of one roi (x1, y1, x2, y2 in pixels at roi[1..4]).
template <typename T>
void roi_taps(const T* roi, int64_t height, int64_t width, const Geometry& g, Tap<T>* taps) {
  const int64_t s = g.sampling_ratio;
  const int64_t rows = g.pooled_height * s;
  const int64_t cols = g.pooled_width * s;
  const T scale = static_cast<T>(g.spatial_scale);
  const T offset = g.aligned ? T(0.5) : T(0);
  std::vector<T> ys(rows), xs(cols);
  T x1 = T(0), y1 = T(0), x2 = T(0), y2 = T(0);
  if (g.discard) {
    sample_axis<T>(-offset, static_cast<T>(height), g.pooled_height, s, ys.data());
    sample_axis<T>(-offset, static_cast<T>(width), g.pooled_width, s, xs.data());
    x1 = roi[1] * scale - offset;
    y1 = roi[2] * scale - offset;
    x2 = roi[3] * scale - offset;
    y2 = roi[4] * scale - offset;
  } else {
    T w = (roi[3] - roi[1]) * scale;
    T h = (roi[4] - roi[2]) * scale;
    if (!g.aligned) {
      w = w < T(1) ? T(1) : w;
      h = h < T(1) ? T(1) : h;
    }
    sample_axis<T>(roi[2] * scale - offset, h, g.pooled_height, s, ys.data());
    sample_axis<T>(roi[1] * scale - offset, w, g.pooled_width, s, xs.data());
  }
  for (int64_t iy = 0; iy < rows; ++iy) {
    for (int64_t ix = 0; ix < cols; ++ix) {
      const T y = ys[iy];
      const T x = xs[ix];
      Tap<T>& tap = taps[iy * cols + ix];
      if (g.discard && x >= x1 && x <= x2 && y >= y1 && y <= y2) {
        tap = Tap<T>{};
        tap.live = false;
      } else {
        tap = bilinear_tap<T>(y, x, height, width);
      }
    }
  }
}

void check_geometry(const at::Tensor& rois, const Geometry& g) {
  TORCH_CHECK(rois.device().is_cpu(), "autocrop ops: rois must be a CPU tensor");
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "autocrop ops: rois must be [K, 5], got ", rois.sizes());
  TORCH_CHECK(g.pooled_height >= 1 && g.pooled_width >= 1, "autocrop ops: output size must be >= 1");
  TORCH_CHECK(g.sampling_ratio >= 1, "autocrop ops: sampling_ratio must be >= 1, got ", g.sampling_ratio);
}

std::vector<int64_t> batch_indices(const at::Tensor& rois, int64_t batch_size) {
  const at::Tensor column = rois.select(1, 0).to(at::kLong);  // truncation, as Tensor.long()
  const int64_t* data = column.data_ptr<int64_t>();
  std::vector<int64_t> out(data, data + column.numel());
  for (const int64_t b : out) {
    TORCH_CHECK(b >= 0 && b < batch_size, "autocrop ops: roi batch index ", b, " out of range [0, ", batch_size, ")");
  }
  return out;
}

at::Tensor align_forward(const at::Tensor& features_in, const at::Tensor& rois_in, const Geometry& g) {
  check_geometry(rois_in, g);
  TORCH_CHECK(features_in.device().is_cpu(), "autocrop ops: features must be a CPU tensor");
  TORCH_CHECK(features_in.dim() == 4, "autocrop ops: features must be [B, C, H, W], got ", features_in.sizes());
  TORCH_CHECK(features_in.scalar_type() == rois_in.scalar_type(), "autocrop ops: features and rois must share a dtype");
  const at::Tensor features = features_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const int64_t channels = features.size(1), height = features.size(2), width = features.size(3);
  const int64_t num_rois = rois.size(0);
  const int64_t oh = g.pooled_height, ow = g.pooled_width, s = g.sampling_ratio;
  if (num_rois == 0 || channels == 0 || height == 0 || width == 0) {
    return at::zeros({num_rois, channels, oh, ow}, features.options());
  }
  at::Tensor output = at::empty({num_rois, channels, oh, ow}, features.options());  // every bin is written below
  const std::vector<int64_t> batch = batch_indices(rois, features.size(0));
  const int64_t samples = oh * s * ow * s;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, channels * samples));

  AT_DISPATCH_FLOATING_TYPES(features.scalar_type(), "autocrop_align_forward", [&] {
    const scalar_t* feat = features.data_ptr<scalar_t>();
    const scalar_t* roi_data = rois.data_ptr<scalar_t>();
    scalar_t* out = output.data_ptr<scalar_t>();
    const scalar_t count = static_cast<scalar_t>(s * s);
    at::parallel_for(0, num_rois, grain, [&](int64_t begin, int64_t end) {
      std::vector<Tap<scalar_t>> taps(samples);
      for (int64_t k = begin; k < end; ++k) {
        roi_taps<scalar_t>(roi_data + k * 5, height, width, g, taps.data());
        for (int64_t c = 0; c < channels; ++c) {
          const scalar_t* plane = feat + (batch[k] * channels + c) * height * width;
          scalar_t* o = out + (k * channels + c) * oh * ow;
          for (int64_t ph = 0; ph < oh; ++ph) {
            for (int64_t pw = 0; pw < ow; ++pw) {
              scalar_t sum = 0;
              for (int64_t sy = 0; sy < s; ++sy) {
                const Tap<scalar_t>* row = taps.data() + (ph * s + sy) * (ow * s) + pw * s;
                for (int64_t sx = 0; sx < s; ++sx) {
                  const Tap<scalar_t>& t = row[sx];
                  if (!t.live) continue;
                  sum += t.weight[0] * plane[t.index[0]] + t.weight[1] * plane[t.index[1]] +
                      t.weight[2] * plane[t.index[2]] + t.weight[3] * plane[t.index[3]];
                }
              }
              o[ph * ow + pw] = sum / count;
            }
          }
        }
      }
    });
  });
  return output;
}

at::Tensor align_backward(
    const at::Tensor& grad_in,
    const at::Tensor& rois_in,
    const Geometry& g,
    int64_t batch_size,
    int64_t channels,
    int64_t height,
    int64_t width) {
  check_geometry(rois_in, g);
  TORCH_CHECK(grad_in.device().is_cpu(), "autocrop ops: grad must be a CPU tensor");
  TORCH_CHECK(grad_in.scalar_type() == rois_in.scalar_type(), "autocrop ops: grad and rois must share a dtype");
  const int64_t oh = g.pooled_height, ow = g.pooled_width, s = g.sampling_ratio;
  const int64_t num_rois = rois_in.size(0);
  TORCH_CHECK(
      grad_in.dim() == 4 && grad_in.size(0) == num_rois && grad_in.size(1) == channels && grad_in.size(2) == oh &&
          grad_in.size(3) == ow,
      "autocrop ops: grad must be [K, C, oh, ow], got ", grad_in.sizes());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  at::Tensor grad_features = at::zeros({batch_size, channels, height, width}, grad.options());
  if (num_rois == 0 || channels == 0 || height == 0 || width == 0) {
    return grad_features;
  }
  const std::vector<int64_t> batch = batch_indices(rois, batch_size);
  const int64_t samples = oh * s * ow * s;

  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "autocrop_align_backward", [&] {
    const scalar_t* roi_data = rois.data_ptr<scalar_t>();
    const scalar_t* g_out = grad.data_ptr<scalar_t>();
    scalar_t* g_feat = grad_features.data_ptr<scalar_t>();
    const scalar_t count = static_cast<scalar_t>(s * s);
    // Bilinear taps of every roi, computed once; then channels are independent (no write races).
    std::vector<Tap<scalar_t>> taps(num_rois * samples);
    at::parallel_for(0, num_rois, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        roi_taps<scalar_t>(roi_data + k * 5, height, width, g, taps.data() + k * samples);
      }
    });
    const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(1, num_rois * samples));
    at::parallel_for(0, channels, grain, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        for (int64_t k = 0; k < num_rois; ++k) {
          scalar_t* plane = g_feat + (batch[k] * channels + c) * height * width;
          const scalar_t* go = g_out + (k * channels + c) * oh * ow;
          const Tap<scalar_t>* roi_taps_k = taps.data() + k * samples;
          for (int64_t ph = 0; ph < oh; ++ph) {
            for (int64_t pw = 0; pw < ow; ++pw) {
              const scalar_t value = go[ph * ow + pw] / count;
              for (int64_t sy = 0; sy < s; ++sy) {
                const Tap<scalar_t>* row = roi_taps_k + (ph * s + sy) * (ow * s) + pw * s;
                for (int64_t sx = 0; sx < s; ++sx) {
                  const Tap<scalar_t>& t = row[sx];
                  if (!t.live) continue;
                  plane[t.index[0]] += t.weight[0] * value;
                  plane[t.index[1]] += t.weight[1] * value;
                  plane[t.index[2]] += t.weight[2] * value;
                  plane[t.index[3]] += t.weight[3] * value;
                }
              }
            }
          }
        }
      }
    });
  });
  return grad_features;
}

Geometry geometry(double scale, int64_t oh, int64_t ow, int64_t s, bool aligned, bool discard) {
  return Geometry{scale, oh, ow, s, aligned, discard};
}

at::Tensor roi_align_forward_cpu(
    const at::Tensor& features, const at::Tensor& rois, double scale, int64_t oh, int64_t ow, int64_t s, bool aligned) {
  return align_forward(features, rois, geometry(scale, oh, ow, s, aligned, false));
}

at::Tensor rod_align_forward_cpu(
    const at::Tensor& features, const at::Tensor& rois, double scale, int64_t oh, int64_t ow, int64_t s, bool aligned) {
  return align_forward(features, rois, geometry(scale, oh, ow, s, aligned, true));
}

at::Tensor roi_align_backward_cpu(
    const at::Tensor& grad, const at::Tensor& rois, double scale, int64_t oh, int64_t ow, int64_t s, bool aligned,
    int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  return align_backward(grad, rois, geometry(scale, oh, ow, s, aligned, false), batch_size, channels, height, width);
}

at::Tensor rod_align_backward_cpu(
    const at::Tensor& grad, const at::Tensor& rois, double scale, int64_t oh, int64_t ow, int64_t s, bool aligned,
    int64_t batch_size, int64_t channels, int64_t height, int64_t width) {
  return align_backward(grad, rois, geometry(scale, oh, ow, s, aligned, true), batch_size, channels, height, width);
}

}  // namespace

TORCH_LIBRARY_IMPL(autocrop, CPU, m) {
  m.impl("roi_align_forward", TORCH_FN(roi_align_forward_cpu));
  m.impl("roi_align_backward", TORCH_FN(roi_align_backward_cpu));
  m.impl("rod_align_forward", TORCH_FN(rod_align_forward_cpu));
  m.impl("rod_align_backward", TORCH_FN(rod_align_backward_cpu));
}

}  // namespace autocrop
