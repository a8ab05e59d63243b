// Subsets of a query's rows: what stage 2 runs the candidates on when the latency budget cannot
// run every model on every sample, and what the tuner splits into train and validation.
#ifndef MODELDOCK_DOCK_QUERY_ROWS_H_
#define MODELDOCK_DOCK_QUERY_ROWS_H_

#include <cstdint>
#include <vector>

#include "common/tensor.h"

namespace modeldock::dock {

// Rows `rows` of t (its first dimension), in that order.
Tensor TakeRows(const Tensor& t, const std::vector<int64_t>& rows);
std::vector<int32_t> TakeLabels(const std::vector<int32_t>& labels,
                                const std::vector<int64_t>& rows);
// The dataset's samples, texts and labels at `rows` (class names and notes kept).
Dataset TakeDatasetRows(const Dataset& data, const std::vector<int64_t>& rows);

// About `target` of the indices of `labels`, stratified: each class keeps its share,
// round(target * n_c / N), but at least min(n_c, 2), chosen by a std::mt19937 shuffle of the
// class's indices seeded with `seed`. Ascending; every index when target >= N.
std::vector<int64_t> StratifiedSample(const std::vector<int32_t>& labels, int64_t target,
                                      uint64_t seed);

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_QUERY_ROWS_H_
