// A scratch directory for targets that must go through files, private to the fuzzing process and
// removed when it exits normally.
#ifndef MODELDOCK_FUZZ_TEMP_DIR_H_
#define MODELDOCK_FUZZ_TEMP_DIR_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace modeldock::fuzz {

inline const std::filesystem::path& TempDir(const std::string& target) {
  static const std::filesystem::path* dir = [&target] {
    auto* path = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                           (target + "_" + std::to_string(getpid())));
    std::filesystem::remove_all(*path);
    std::filesystem::create_directories(*path);
    std::atexit([] { std::filesystem::remove_all(*dir); });
    return path;
  }();
  return *dir;
}

inline void WriteFile(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace modeldock::fuzz

#endif  // MODELDOCK_FUZZ_TEMP_DIR_H_
