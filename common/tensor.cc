#include "common/tensor.h"

#include <algorithm>

namespace modeldock {

int64_t Tensor::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Tensor::RowSize() const {
  int64_t n = 1;
  for (size_t i = 1; i < shape.size(); ++i) n *= shape[i];
  return n;
}

std::vector<int64_t> Tensor::SampleShape() const {
  if (shape.empty()) return {};
  return std::vector<int64_t>(shape.begin() + 1, shape.end());
}

int Dataset::NumClasses() const {
  if (labels.empty()) return 0;
  int max_label = *std::max_element(labels.begin(), labels.end());
  return std::max<int>(max_label + 1, static_cast<int>(class_names.size()));
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  std::string out;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) out += "x";
    out += std::to_string(shape[i]);
  }
  return out;
}

}  // namespace modeldock
