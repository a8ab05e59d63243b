// The parts of a multipart/form-data upload, read as they arrive: the parts named as files are
// written to a private directory under the spool directory (never held whole in memory), the
// others kept in memory up to a small limit. The directory goes with the object.
#ifndef MODELDOCK_HTTP_SPOOL_H_
#define MODELDOCK_HTTP_SPOOL_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "httplib.h"

namespace modeldock::http {

// Largest in-memory part (metadata, options JSON).
inline constexpr int64_t kMaxSmallPartBytes = 1 << 20;

class Spool {
 public:
  // `file_parts`: the part names written to disk.
  Spool(std::string spool_dir, std::set<std::string> file_parts);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Reads the whole body. INVALID_ARGUMENT unless it is multipart/form-data, for a part named
  // twice, an unknown part or one larger than its limit; INTERNAL if the disk write fails.
  absl::Status Read(const httplib::Request& request, const httplib::ContentReader& reader);

  bool Has(const std::string& part) const;
  // A file part's path on disk ("" if absent). Its name keeps the uploaded file's extension
  // (the dataset readers tell CSV by ".csv").
  std::string Path(const std::string& part) const;
  int64_t Size(const std::string& part) const;
  // A small part's content ("" if absent).
  std::string Text(const std::string& part) const;

 private:
  struct Part {
    std::string path;  // file parts
    std::string text;  // small parts
    int64_t size = 0;
  };

  std::string dir_;
  std::set<std::string> file_parts_;
  std::map<std::string, Part> parts_;
};

}  // namespace modeldock::http

#endif  // MODELDOCK_HTTP_SPOOL_H_
