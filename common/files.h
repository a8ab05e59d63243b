// Small file helpers shared by the folders (TLS PEM files, mostly).
#ifndef MODELDOCK_COMMON_FILES_H_
#define MODELDOCK_COMMON_FILES_H_

#include <optional>
#include <string>

namespace modeldock {

// The whole file as bytes; nullopt when it cannot be opened. Callers say what the file was for.
std::optional<std::string> ReadWholeFile(const std::string& path);

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_FILES_H_
