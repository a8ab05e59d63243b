// Tests only: the build's grey knowledge space on its own (the first of spaces.json), for the
// tests of one part (prober_test, recommender_test, registry_test): its index under `data_dir`,
// the stored vectors read from `probe_data`, no trained serving version, and the test
// processes' shared probe embedding cache (probe_cache.h).
#ifndef MODELDOCK_DOCK_TESTING_GREY_SPACE_H_
#define MODELDOCK_DOCK_TESTING_GREY_SPACE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dock/knowledge_spaces.h"
#include "dock/learning.h"
#include "dock/testing/dock_fixture.h"
#include "dock/testing/probe_cache.h"

namespace modeldock::dock::test {

inline absl::StatusOr<std::unique_ptr<KnowledgeSpaces>> LoadGreySpaceOnly(
    const std::string& data_dir, ProbeDataTable* probe_data) {
  SpaceOverrides overrides;
  overrides.data_dir = data_dir;
  overrides.probe_cache_dir = SharedProbeCacheDir();
  auto specs = ReadSpaces(AssetDir(), overrides);
  if (!specs.ok()) return specs.status();
  specs->resize(1);  // the grey space
  return KnowledgeSpaces::Load(*specs, probe_data, [] { return LearningLoop::Serving(); });
}

}  // namespace modeldock::dock::test

#endif  // MODELDOCK_DOCK_TESTING_GREY_SPACE_H_
