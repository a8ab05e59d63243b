// Plain data types that cross folder boundaries. No torch, faiss or gRPC types here, so every
// library can include this header cheaply.
#ifndef MODELDOCK_COMMON_TENSOR_H_
#define MODELDOCK_COMMON_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

namespace modeldock {

// A dense, row-major float32 array and its shape. shape[0] is the number of rows (samples).
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> values;

  Tensor() = default;
  Tensor(std::vector<int64_t> shape_in, std::vector<float> values_in)
      : shape(std::move(shape_in)), values(std::move(values_in)) {}

  // Number of elements the shape describes (1 for an empty shape).
  int64_t NumElements() const;
  // shape[0], or 0 for an empty shape.
  int64_t Rows() const { return shape.empty() ? 0 : shape[0]; }
  // Elements per row: the product of shape[1:].
  int64_t RowSize() const;
  // shape[1:], e.g. {1, 28, 28} for a batch of grey images.
  std::vector<int64_t> SampleShape() const;
  const float* Row(int64_t i) const { return values.data() + i * RowSize(); }
  // True if values.size() matches the shape.
  bool IsConsistent() const { return static_cast<int64_t>(values.size()) == NumElements(); }
};

// Samples of one shape, with labels 0..C-1 (or none). A text dataset (issue 25) holds its
// strings in `texts` and a `samples` of shape [N, 0], so that row counts work alike.
struct Dataset {
  Tensor samples;                        // [N, ...sample shape]; [N, 0] for texts
  std::vector<std::string> texts;        // text datasets only: one UTF-8 string per sample
  std::vector<int32_t> labels;           // N labels, or empty when unlabelled
  std::vector<std::string> class_names;  // optional, index = label
  // What loading did to the data beyond reading it (resized, converted, skipped), for the user.
  std::vector<std::string> notes;

  bool labelled() const { return !labels.empty(); }
  bool is_text() const { return !texts.empty(); }
  // max(label) + 1 (or class_names.size() if larger); 0 when unlabelled.
  int NumClasses() const;
};

// "1x28x28" for {1, 28, 28}.
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_TENSOR_H_
