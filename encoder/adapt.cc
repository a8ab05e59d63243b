// AdaptInputs in plain C++ (no torch): the resize reproduces
// torch.nn.functional.interpolate(mode="bilinear", align_corners=False), computed in float like
// LibTorch's CPU kernel so that results agree to rounding.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "encoder/black_box.h"

namespace modeldock::encoder {
namespace {

// Source taps of one output coordinate along one axis.
struct Tap {
  int64_t i0, i1;
  float w0, w1;
};

std::vector<Tap> BilinearTaps(int64_t in, int64_t out) {
  std::vector<Tap> taps(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    float src = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (src < 0) src = 0;
    const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(src), in - 1);
    const int64_t i1 = std::min<int64_t>(i0 + 1, in - 1);
    const float w1 = src - static_cast<float>(i0);
    taps[o] = {i0, i1, 1.0f - w1, w1};
  }
  return taps;
}

// Resizes planes [P, H, W] to [P, oh, ow].
std::vector<float> ResizePlanes(const std::vector<float>& in, int64_t planes, int64_t h,
                                int64_t w, int64_t oh, int64_t ow) {
  const std::vector<Tap> ty = BilinearTaps(h, oh);
  const std::vector<Tap> tx = BilinearTaps(w, ow);
  std::vector<float> out(planes * oh * ow);
  for (int64_t p = 0; p < planes; ++p) {
    const float* src = in.data() + p * h * w;
    float* dst = out.data() + p * oh * ow;
    for (int64_t y = 0; y < oh; ++y) {
      const float* r0 = src + ty[y].i0 * w;
      const float* r1 = src + ty[y].i1 * w;
      for (int64_t x = 0; x < ow; ++x) {
        const Tap& t = tx[x];
        dst[y * ow + x] = ty[y].w0 * (t.w0 * r0[t.i0] + t.w1 * r0[t.i1]) +
                          ty[y].w1 * (t.w0 * r1[t.i0] + t.w1 * r1[t.i1]);
      }
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Tensor> AdaptInputs(const Tensor& samples,
                                   const std::vector<int64_t>& target_shape) {
  if (!samples.IsConsistent() || samples.shape.empty()) {
    return absl::InvalidArgumentError("samples tensor is empty or inconsistent with its shape");
  }
  const std::vector<int64_t> from = samples.SampleShape();
  if (from == target_shape) return samples;
  const std::string mismatch = absl::StrCat("cannot adapt samples of shape ",
                                            ShapeToString(from), " to the model's input shape ",
                                            ShapeToString(target_shape));
  if (from.size() != 3 || target_shape.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat(mismatch, ": only images [C, H, W] are adapted, other inputs must match"));
  }
  for (int64_t d : target_shape) {
    if (d <= 0) return absl::InvalidArgumentError(mismatch);
  }
  const int64_t n = samples.Rows();
  const int64_t c = from[0], h = from[1], w = from[2];
  const int64_t tc = target_shape[0], th = target_shape[1], tw = target_shape[2];
  if (c != tc && !(c == 1 && tc == 3) && !(c == 3 && tc == 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat(mismatch, ": only 1 <-> 3 channel conversion is supported"));
  }

  // Channels first: averaging RGB->grey before resizing does a third of the work; both steps
  // are linear so the order does not change the result beyond rounding.
  std::vector<float> values;
  const int64_t plane = h * w;
  if (c == 3 && tc == 1) {
    values.resize(n * plane);
    for (int64_t i = 0; i < n; ++i) {
      const float* s = samples.values.data() + i * 3 * plane;
      float* d = values.data() + i * plane;
      for (int64_t p = 0; p < plane; ++p) d[p] = (s[p] + s[plane + p] + s[2 * plane + p]) / 3.0f;
    }
  } else {
    values = samples.values;
  }
  const int64_t mid_c = std::min(c, tc);
  if (h != th || w != tw) values = ResizePlanes(values, n * mid_c, h, w, th, tw);

  if (c == 1 && tc == 3) {
    const int64_t tplane = th * tw;
    std::vector<float> rgb(n * 3 * tplane);
    for (int64_t i = 0; i < n; ++i) {
      const float* s = values.data() + i * tplane;
      for (int64_t k = 0; k < 3; ++k) {
        std::copy(s, s + tplane, rgb.data() + (i * 3 + k) * tplane);
      }
    }
    values = std::move(rgb);
  }
  return Tensor({n, tc, th, tw}, std::move(values));
}

}  // namespace modeldock::encoder
