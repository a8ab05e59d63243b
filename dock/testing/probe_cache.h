// Tests only: the probe embedding cache that the test processes share (scripts/test.sh and
// ctest set MODELDOCK_PROBE_CACHE_DIR to one directory in the build tree), so that each test's
// fresh dock does not run the reference encoder on every probe set again; "" when unset.
#ifndef MODELDOCK_DOCK_TESTING_PROBE_CACHE_H_
#define MODELDOCK_DOCK_TESTING_PROBE_CACHE_H_

#include <cstdlib>
#include <string>

namespace modeldock::dock::test {

inline std::string SharedProbeCacheDir() {
  const char* dir = std::getenv("MODELDOCK_PROBE_CACHE_DIR");
  return dir ? dir : "";
}

}  // namespace modeldock::dock::test

#endif  // MODELDOCK_DOCK_TESTING_PROBE_CACHE_H_
