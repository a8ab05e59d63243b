// Combining several metrics' scores of the same models into one ranking score.
#ifndef MODELDOCK_SCORING_FUSION_H_
#define MODELDOCK_SCORING_FUSION_H_

#include <cstdint>
#include <vector>

namespace modeldock::scoring {

// Weighted rank fusion. lists[m][i] is metric m's score of item i; weights[m] >= 0. A NaN
// score means "not measured" (e.g. NCE of a feature extractor, which has no class outputs): the
// item is ranked without that metric. Each metric ranks the items it measured (Ranks: -inf ranks
// lowest) and its ranks are divided by how many it measured; an item's fused score is the
// weighted mean of its normalised ranks over the metrics that measured it, in (0, 1] (1 = first
// by every metric), 0 when none did. With equal weights and no NaN this is RankFusion / n.
std::vector<double> WeightedRankFusion(const std::vector<std::vector<double>>& lists,
                                       const std::vector<double>& weights);

}  // namespace modeldock::scoring

#endif  // MODELDOCK_SCORING_FUSION_H_
