#include "common/datasets.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include <stb/stb_image.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "common/zip_reader.h"

namespace modeldock::datasets {
namespace {

namespace fs = std::filesystem;

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Reads a file whole, transparently gunzipping gzip content (zlib's gzread passes plain files
// through). `limit` > 0 stops after that many (decompressed) bytes.
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t limit = 0) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  if (fs::is_directory(st)) return Bad(path, "is a directory, expected a file");
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  }
  gzbuffer(file, 1 << 18);
  std::string out;
  // Uncompressed files (the usual case) are read without growing the string again and again.
  const uintmax_t size = fs::file_size(path, ec);
  if (!ec) out.reserve(limit == 0 ? size : std::min<uintmax_t>(size, limit));
  char buffer[1 << 16];
  while (limit == 0 || out.size() < limit) {
    int n = gzread(file, buffer, sizeof(buffer));
    if (n < 0) {
      int err = Z_OK;
      std::string msg = gzerror(file, &err);
      gzclose_r(file);
      if (err == Z_ERRNO) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": read failed"));
      return Bad(path, absl::StrCat("corrupt gzip data (", msg, ")"));
    }
    if (n == 0) break;
    out.append(buffer, n);
  }
  const bool stopped_early = limit != 0 && out.size() >= limit;
  int close = gzclose_r(file);
  if (!stopped_early && close == Z_BUF_ERROR) {
    return Bad(path, "gzip stream ends early (truncated file)");
  }
  if (limit != 0 && out.size() > limit) out.resize(limit);
  return out;
}

bool StartsWith(const std::string& s, absl::string_view prefix) {
  return s.size() >= prefix.size() && std::memcmp(s.data(), prefix.data(), prefix.size()) == 0;
}

constexpr absl::string_view kNpyMagic("\x93NUMPY", 6);

// Element types shared by IDX and NPY.
enum class Dtype { kU8, kI8, kI16, kI32, kI64, kF32, kF64 };

size_t DtypeSize(Dtype t) {
  switch (t) {
    case Dtype::kU8:
    case Dtype::kI8:
      return 1;
    case Dtype::kI16:
      return 2;
    case Dtype::kI32:
    case Dtype::kF32:
      return 4;
    case Dtype::kI64:
    case Dtype::kF64:
      return 8;
  }
  return 1;
}

bool IsInteger(Dtype t) { return t != Dtype::kF32 && t != Dtype::kF64; }

// Reads element i of a raw array as double, swapping bytes when the file's order differs.
double Element(const char* data, size_t i, Dtype t, bool big_endian) {
  const size_t size = DtypeSize(t);
  unsigned char b[8];
  std::memcpy(b, data + i * size, size);
  if (big_endian) std::reverse(b, b + size);  // x86: host is little-endian
  switch (t) {
    case Dtype::kU8:
      return b[0];
    case Dtype::kI8:
      return static_cast<int8_t>(b[0]);
    case Dtype::kI16: {
      int16_t v;
      std::memcpy(&v, b, 2);
      return v;
    }
    case Dtype::kI32: {
      int32_t v;
      std::memcpy(&v, b, 4);
      return v;
    }
    case Dtype::kI64: {
      int64_t v;
      std::memcpy(&v, b, 8);
      return static_cast<double>(v);
    }
    case Dtype::kF32: {
      float v;
      std::memcpy(&v, b, 4);
      return v;
    }
    case Dtype::kF64: {
      double v;
      std::memcpy(&v, b, 8);
      return v;
    }
  }
  return 0;
}

// A decoded array header: element type, byte order, shape and where the data starts.
struct RawArray {
  Dtype dtype = Dtype::kU8;
  bool big_endian = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

int64_t Product(const std::vector<int64_t>& shape, size_t from = 0) {
  int64_t n = 1;
  for (size_t i = from; i < shape.size(); ++i) n *= shape[i];
  return n;
}

// Checks that the data after the header is exactly what the shape needs. The dimensions are
// untrusted: their product must not overflow, and a shape with a zero dimension is refused, as
// no caller can use an array without values (and its other dimensions could be anything).
absl::Status CheckDataSize(const std::string& path, uint64_t content_size, const RawArray& a) {
  if (std::find(a.shape.begin(), a.shape.end(), 0) != a.shape.end()) {
    return Bad(path, absl::StrCat("array of shape ", ShapeToString(a.shape), " is empty"));
  }
  const uint64_t have = content_size - a.data_offset;
  uint64_t want = DtypeSize(a.dtype);
  for (int64_t d : a.shape) {
    if (static_cast<uint64_t>(d) > std::numeric_limits<uint64_t>::max() / want) {
      return Bad(path, absl::StrCat("truncated: shape ", ShapeToString(a.shape),
                                    " needs more than 2^64 data bytes, the file has ", have));
    }
    want *= static_cast<uint64_t>(d);
  }
  if (have < want) {
    return Bad(path, absl::StrCat("truncated: shape ", ShapeToString(a.shape), " needs ", want,
                                  " data bytes, the file has ", have));
  }
  if (have > want) {
    return Bad(path, absl::StrCat("has ", have - want, " bytes beyond the data of shape ",
                                  ShapeToString(a.shape)));
  }
  return absl::OkStatus();
}

absl::StatusOr<RawArray> ParseIdxHeader(const std::string& path, const std::string& bytes) {
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0) {
    return Bad(path, "not an IDX file (bad magic number)");
  }
  RawArray a;
  a.big_endian = true;
  switch (static_cast<unsigned char>(bytes[2])) {
    case 0x08: a.dtype = Dtype::kU8; break;
    case 0x09: a.dtype = Dtype::kI8; break;
    case 0x0B: a.dtype = Dtype::kI16; break;
    case 0x0C: a.dtype = Dtype::kI32; break;
    case 0x0D: a.dtype = Dtype::kF32; break;
    case 0x0E: a.dtype = Dtype::kF64; break;
    default:
      return Bad(path, absl::StrCat("unknown IDX element type 0x",
                                    absl::Hex(static_cast<unsigned char>(bytes[2]))));
  }
  const int ndims = static_cast<unsigned char>(bytes[3]);
  if (ndims < 1 || ndims > 4) return Bad(path, absl::StrCat("IDX rank ", ndims, " unsupported"));
  if (bytes.size() < 4 + 4 * static_cast<size_t>(ndims)) return Bad(path, "truncated IDX header");
  for (int i = 0; i < ndims; ++i) {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + 4 + 4 * i);
    a.shape.push_back((int64_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3]);
  }
  a.data_offset = 4 + 4 * ndims;
  if (absl::Status st = CheckDataSize(path, bytes.size(), a); !st.ok()) return st;
  return a;
}

// Extracts the value text of `key` from a NPY header dict ("{'descr': '<f4', ...}").
bool NpyField(absl::string_view header, absl::string_view key, std::string* value) {
  const std::string quoted = absl::StrCat("'", key, "'");
  size_t pos = header.find(quoted);
  if (pos == absl::string_view::npos) return false;
  pos = header.find(':', pos + quoted.size());
  if (pos == absl::string_view::npos) return false;
  absl::string_view rest = absl::StripLeadingAsciiWhitespace(header.substr(pos + 1));
  size_t end;
  if (!rest.empty() && rest[0] == '(') {
    end = rest.find(')');
    if (end == absl::string_view::npos) return false;
    ++end;
  } else if (!rest.empty() && (rest[0] == '\'' || rest[0] == '"')) {
    end = rest.find(rest[0], 1);
    if (end == absl::string_view::npos) return false;
    ++end;
  } else {
    end = rest.find_first_of(",}");
    if (end == absl::string_view::npos) end = rest.size();
  }
  *value = std::string(absl::StripAsciiWhitespace(rest.substr(0, end)));
  return true;
}

// The header of NPY content (`bytes` may end after it); the data size is not checked.
absl::StatusOr<RawArray> ParseNpyHeaderFields(const std::string& path, const std::string& bytes) {
  if (!StartsWith(bytes, kNpyMagic) || bytes.size() < 10) {
    return Bad(path, "not an NPY file (bad magic string)");
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len, header_start;
  const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
  if (major == 1) {
    header_len = u[8] | (u[9] << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return Bad(path, "truncated NPY header");
    header_len = u[8] | (u[9] << 8) | (u[10] << 16) | (size_t{u[11]} << 24);
    header_start = 12;
  } else {
    return Bad(path, absl::StrCat("NPY format version ", major, " unsupported"));
  }
  if (bytes.size() < header_start + header_len) return Bad(path, "truncated NPY header");
  absl::string_view header(bytes.data() + header_start, header_len);

  std::string descr, fortran, shape_text;
  if (!NpyField(header, "descr", &descr) || !NpyField(header, "fortran_order", &fortran) ||
      !NpyField(header, "shape", &shape_text)) {
    return Bad(path, absl::StrCat("malformed NPY header: ", header));
  }
  if (fortran != "False") {
    return Bad(path, "Fortran-ordered NPY arrays are unsupported (save a C-contiguous array)");
  }
  descr = std::string(absl::StripSuffix(absl::StripPrefix(descr, "'"), "'"));
  RawArray a;
  if (descr.size() != 3 || (descr[0] != '<' && descr[0] != '>' && descr[0] != '|')) {
    return Bad(path, absl::StrCat("unsupported NPY dtype ", descr));
  }
  a.big_endian = descr[0] == '>';
  const std::string kind = descr.substr(1);
  if (kind == "u1") a.dtype = Dtype::kU8;
  else if (kind == "i1") a.dtype = Dtype::kI8;
  else if (kind == "i2") a.dtype = Dtype::kI16;
  else if (kind == "i4") a.dtype = Dtype::kI32;
  else if (kind == "i8") a.dtype = Dtype::kI64;
  else if (kind == "f4") a.dtype = Dtype::kF32;
  else if (kind == "f8") a.dtype = Dtype::kF64;
  else return Bad(path, absl::StrCat("unsupported NPY dtype ", descr, " (use u1, f4, f8, i4, i8)"));

  absl::string_view dims = absl::StripPrefix(absl::StripSuffix(shape_text, ")"), "(");
  for (absl::string_view d : absl::StrSplit(dims, ',', absl::SkipWhitespace())) {
    int64_t v;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(d), &v) || v < 0) {
      return Bad(path, absl::StrCat("bad NPY shape ", shape_text));
    }
    a.shape.push_back(v);
  }
  if (a.shape.empty()) return Bad(path, "NPY array is a scalar, expected samples");
  a.data_offset = header_start + header_len;
  return a;
}

absl::StatusOr<RawArray> ParseNpyHeader(const std::string& path, const std::string& bytes) {
  auto a = ParseNpyHeaderFields(path, bytes);
  if (!a.ok()) return a.status();
  if (absl::Status st = CheckDataSize(path, bytes.size(), *a); !st.ok()) return st;
  return a;
}

absl::Status CheckSamplesRank(const std::string& path, const std::vector<int64_t>& shape) {
  if (shape.size() > 4) {
    return Bad(path, absl::StrCat("rank-", shape.size(), " array ", ShapeToString(shape),
                                  " unsupported (expected 1 to 4 dimensions)"));
  }
  return absl::OkStatus();
}
bool IsNhwc(const std::vector<int64_t>& shape) {
  return shape.size() == 4 && (shape[3] == 1 || shape[3] == 3) && shape[1] != 1 && shape[1] != 3;
}
// The tensor shape of the first n samples of an array of `shape` (rank 1 to 4):
// [N] -> [N,1]; [N,F] kept; [N,H,W] -> [N,1,H,W]; [N,H,W,C] with C in {1,3} -> [N,C,H,W];
// other 4-d shapes are taken as NCHW already.
std::vector<int64_t> SamplesShape(const std::vector<int64_t>& shape, int64_t n) {
  if (IsNhwc(shape)) return {n, shape[3], shape[1], shape[2]};
  switch (shape.size()) {
    case 1: return {n, 1};
    case 2: return {n, shape[1]};
    case 3: return {n, 1, shape[1], shape[2]};
    default: return {n, shape[1], shape[2], shape[3]};
  }
}

// Converts the first `max_samples` samples (0: all) of a raw array into a tensor of
// SamplesShape, in NCHW layout. uint8 values are scaled by 1/255.
absl::StatusOr<Tensor> ToSamples(const std::string& path, const std::string& bytes,
                                 const RawArray& a, int64_t max_samples) {
  if (absl::Status s = CheckSamplesRank(path, a.shape); !s.ok()) return s;
  const int64_t n = max_samples > 0 ? std::min(max_samples, a.shape[0]) : a.shape[0];
  const int64_t row = Product(a.shape, 1);
  const double scale = a.dtype == Dtype::kU8 ? 1.0 / 255.0 : 1.0;
  const char* data = bytes.data() + a.data_offset;
  Tensor t;
  t.values.resize(static_cast<size_t>(n * row));
  t.shape = SamplesShape(a.shape, n);
  if (IsNhwc(a.shape)) {
    const int64_t h = a.shape[1], w = a.shape[2], c = a.shape[3];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          for (int64_t ch = 0; ch < c; ++ch) {
            const size_t src = ((i * h + y) * w + x) * c + ch;
            const size_t dst = ((i * c + ch) * h + y) * w + x;
            t.values[dst] = static_cast<float>(Element(data, src, a.dtype, a.big_endian) * scale);
          }
        }
      }
    }
  } else {
    if (a.dtype == Dtype::kF32 && !a.big_endian) {
      // The common case (probe sets, float arrays): the bytes are the values (x86 is
      // little-endian), copied at memory speed.
      std::memcpy(t.values.data(), data, t.values.size() * sizeof(float));
    } else if (a.dtype == Dtype::kU8) {
      // Image probe sets: a table of the 256 values, each computed as Element() * scale is.
      float table[256];
      for (int v = 0; v < 256; ++v) table[v] = static_cast<float>(v * scale);
      const auto* bytes_u8 = reinterpret_cast<const unsigned char*>(data);
      for (size_t i = 0; i < t.values.size(); ++i) t.values[i] = table[bytes_u8[i]];
    } else {
      for (size_t i = 0; i < t.values.size(); ++i) {
        t.values[i] = static_cast<float>(Element(data, i, a.dtype, a.big_endian) * scale);
      }
    }
  }
  for (float v : t.values) {
    if (!std::isfinite(v)) return Bad(path, "contains non-finite values");
  }
  return t;
}

// Attaches options.labels_path (if any) to samples read from `path` that had `total` rows.
absl::Status AttachLabels(const std::string& path, int64_t total, const LoadOptions& options,
                          Dataset& dataset) {
  if (options.labels_path.empty()) return absl::OkStatus();
  auto bytes = ReadFile(options.labels_path);
  if (!bytes.ok()) return bytes.status();
  auto labels = DecodeLabels(options.labels_path, *bytes);
  if (!labels.ok()) return labels.status();
  if (static_cast<int64_t>(labels->size()) != total) {
    return Bad(options.labels_path,
               absl::StrCat("has ", labels->size(), " labels but ", path, " has ", total,
                            " samples"));
  }
  labels->resize(dataset.samples.Rows());
  dataset.labels = std::move(*labels);
  return absl::OkStatus();
}


// Where the pixels of binary PGM/PPM content start, reading the header as stb_image does: "P5" or
// "P6", then width, height and maxval, each after whitespace and #-comments, and one more byte
// after maxval's digits. Past the end if the header is cut short.
size_t PnmDataOffset(const std::string& b) {
  const auto is_space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
  };
  size_t i = 2;
  for (int field = 0; field < 3; ++field) {
    while (true) {
      while (i < b.size() && is_space(b[i])) ++i;
      if (i >= b.size() || b[i] != '#') break;
      while (i < b.size() && b[i] != '\n' && b[i] != '\r') ++i;
    }
    while (i < b.size() && absl::ascii_isdigit(static_cast<unsigned char>(b[i]))) ++i;
  }
  return i + 1;
}

// Splits one CSV line into fields: commas separate, double quotes group ("" is a quote).
std::vector<std::string> SplitCsvLine(absl::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  for (std::string& f : fields) f = std::string(absl::StripAsciiWhitespace(f));
  return fields;
}

bool ParseNumber(const std::string& s, double* v) {
  return absl::SimpleAtod(s, v) && std::isfinite(*v);
}

}  // namespace

bool IsImageFileName(const std::string& name) {
  std::string ext = absl::AsciiStrToLower(fs::path(name).extension().string());
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".gif" ||
         ext == ".tga" || ext == ".pgm" || ext == ".ppm" || ext == ".pnm";
}

const char* FormatName(Format format) {
  switch (format) {
    case Format::kIdx: return "idx";
    case Format::kNpy: return "npy";
    case Format::kImageFolder: return "image_folder";
    case Format::kCsv: return "csv";
    case Format::kNpz: return "npz";
  }
  return "unknown";
}

absl::StatusOr<Format> DetectFormat(const std::string& path) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  if (fs::is_directory(st)) return Format::kImageFolder;
  auto head = ReadFile(path, 4096);
  if (!head.ok()) return head.status();
  return DetectContentFormat(path, *head);
}

absl::StatusOr<Format> DetectContentFormat(const std::string& name, const std::string& head) {
  const std::string& b = head;
  if (StartsWith(b, kNpyMagic)) return Format::kNpy;
  if (StartsWith(b, absl::string_view("PK\x03\x04", 4))) return Format::kNpz;
  if (b.size() >= 4 && b[0] == 0 && b[1] == 0) {
    const unsigned char type = b[2], ndims = b[3];
    if ((type == 0x08 || type == 0x09 || (type >= 0x0B && type <= 0x0E)) && ndims >= 1 &&
        ndims <= 4) {
      return Format::kIdx;
    }
  }
  // Text: printable characters and line breaks only.
  bool text = !b.empty();
  for (unsigned char c : b) {
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') {
      text = false;
      break;
    }
  }
  std::string ext = absl::AsciiStrToLower(fs::path(name).extension().string());
  if (ext == ".gz") ext = absl::AsciiStrToLower(fs::path(name).stem().extension().string());
  if (text && (b.find(',') != std::string::npos || ext == ".csv")) return Format::kCsv;
  return Bad(name, "unrecognised dataset format (expected IDX, NPY, NPZ, CSV or an image folder)");
}

absl::StatusOr<Dataset> LoadDataset(const std::string& path, const LoadOptions& options) {
  auto format = DetectFormat(path);
  if (!format.ok()) return format.status();
  switch (*format) {
    case Format::kIdx: return LoadIdx(path, options);
    case Format::kNpy: return LoadNpy(path, options);
    case Format::kImageFolder: return LoadImageFolder(path, options);
    case Format::kCsv: return LoadCsv(path, options);
    case Format::kNpz: {
      auto images = IsImageFolderZip(path);
      if (!images.ok()) return images.status();
      return *images ? LoadImageFolderZip(path, options) : LoadNpz(path, options);
    }
  }
  return absl::InternalError("unreachable");
}

absl::StatusOr<Tensor> DecodeIdx(const std::string& name, const std::string& bytes,
                                 int64_t max_samples, int64_t* rows_in_content) {
  auto raw = ParseIdxHeader(name, bytes);
  if (!raw.ok()) return raw.status();
  if (raw->shape.size() < 2) {
    return Bad(name, "is a one-dimensional IDX file (labels?), expected samples");
  }
  if (rows_in_content != nullptr) *rows_in_content = raw->shape[0];
  return ToSamples(name, bytes, *raw, max_samples);
}

absl::StatusOr<Tensor> DecodeNpy(const std::string& name, const std::string& bytes,
                                 int64_t max_samples, int64_t* rows_in_content) {
  auto raw = ParseNpyHeader(name, bytes);
  if (!raw.ok()) return raw.status();
  if (rows_in_content != nullptr) *rows_in_content = raw->shape[0];
  return ToSamples(name, bytes, *raw, max_samples);
}

absl::StatusOr<std::vector<int32_t>> DecodeLabels(const std::string& name,
                                                  const std::string& bytes) {
  absl::StatusOr<RawArray> a = StartsWith(bytes, kNpyMagic) ? ParseNpyHeader(name, bytes)
                                                            : ParseIdxHeader(name, bytes);
  if (!a.ok()) return a.status();
  if (!IsInteger(a->dtype)) return Bad(name, "labels must be integers");
  if (a->shape.size() != 1 && !(a->shape.size() == 2 && a->shape[1] == 1)) {
    return Bad(name, absl::StrCat("labels must be one-dimensional, got shape ",
                                  ShapeToString(a->shape)));
  }
  std::vector<int32_t> labels(a->shape[0]);
  const char* data = bytes.data() + a->data_offset;
  for (size_t i = 0; i < labels.size(); ++i) {
    const double v = Element(data, i, a->dtype, a->big_endian);
    if (v < 0 || v > INT32_MAX) {
      // Printed from the double: an int64 near its maximum rounds up to 2^63, which does not
      // convert back to int64.
      return Bad(name, absl::StrCat("label ", absl::StrFormat("%.0f", v), " at index ", i,
                                    " out of range"));
    }
    labels[i] = static_cast<int32_t>(v);
  }
  return labels;
}

absl::StatusOr<Dataset> LoadIdx(const std::string& images_path, const LoadOptions& options) {
  auto bytes = ReadFile(images_path);
  if (!bytes.ok()) return bytes.status();
  Dataset dataset;
  int64_t rows = 0;
  auto samples = DecodeIdx(images_path, *bytes, options.max_samples, &rows);
  if (!samples.ok()) return samples.status();
  dataset.samples = std::move(*samples);
  if (absl::Status st = AttachLabels(images_path, rows, options, dataset); !st.ok()) {
    return st;
  }
  return dataset;
}

absl::StatusOr<Dataset> LoadNpy(const std::string& samples_path, const LoadOptions& options) {
  auto bytes = ReadFile(samples_path);
  if (!bytes.ok()) return bytes.status();
  Dataset dataset;
  int64_t rows = 0;
  auto samples = DecodeNpy(samples_path, *bytes, options.max_samples, &rows);
  if (!samples.ok()) return samples.status();
  dataset.samples = std::move(*samples);
  if (absl::Status st = AttachLabels(samples_path, rows, options, dataset); !st.ok()) {
    return st;
  }
  return dataset;
}

absl::StatusOr<std::vector<int64_t>> ReadNpyShape(const std::string& path) {
  auto head = ReadFile(path, 1 << 16);  // NPY headers are a few hundred bytes
  if (!head.ok()) return head.status();
  auto raw = ParseNpyHeaderFields(path, *head);
  if (!raw.ok()) return raw.status();
  std::ifstream file(path, std::ios::binary);
  char magic[2] = {0, 0};
  file.read(magic, 2);
  const bool gzipped = magic[0] == '\x1f' && magic[1] == '\x8b';
  if (!gzipped) {  // a gzipped file's data size is checked when it is loaded
    std::error_code ec;
    const uintmax_t size = fs::file_size(path, ec);
    if (ec) return absl::NotFoundError(absl::StrCat(path, ": ", ec.message()));
    if (absl::Status st = CheckDataSize(path, size, *raw); !st.ok()) return st;
  }
  if (absl::Status st = CheckSamplesRank(path, raw->shape); !st.ok()) return st;
  return SamplesShape(raw->shape, raw->shape[0]);
}

absl::StatusOr<DecodedImage> DecodeImage(const std::string& name, const std::string& bytes) {
  const auto* in = reinterpret_cast<const unsigned char*>(bytes.data());
  const int size = static_cast<int>(bytes.size());
  // The header's size is checked before stb_image allocates (and fills) what it declares. If
  // stb cannot read a header, decoding below fails with its reason.
  int width = 0, height = 0, channels = 0;
  if (stbi_info_from_memory(in, size, &width, &height, &channels)) {
    // stb's PNM header parser overflows int on huge numbers and can report negative sizes.
    const int64_t pixels = int64_t{width} * height;
    if (width <= 0 || height <= 0 || pixels > kMaxImagePixels) {
      return Bad(name, absl::StrCat("image of ", width, "x", height,
                                    " pixels exceeds the limit of ", kMaxImagePixels, " pixels"));
    }
    // stb_image (2022-09) returns uninitialised pixels for binary PGM/PPM data that ends early.
    if (size >= 2 && in[0] == 'P' && (in[1] == '5' || in[1] == '6')) {
      const int64_t data_bytes =
          pixels * channels * (stbi_is_16_bit_from_memory(in, size) ? 2 : 1);
      const int64_t have = size - static_cast<int64_t>(PnmDataOffset(bytes));
      if (have < data_bytes) {
        return Bad(name, absl::StrCat("truncated: PNM image of ", width, "x", height, "x",
                                      channels, " needs ", data_bytes, " data bytes, the file has ",
                                      std::max<int64_t>(have, 0)));
      }
    }
  }
  DecodedImage img;
  unsigned char* data = stbi_load_from_memory(in, size, &img.width, &img.height, &img.channels, 0);
  if (data == nullptr) {
    return Bad(name, absl::StrCat("cannot decode image (", stbi_failure_reason(), ")"));
  }
  if (img.width <= 0 || img.height <= 0) {
    // stb_image accepts some headers that declare no pixels (a PNM of height 0).
    stbi_image_free(data);
    return Bad(name, absl::StrCat("image is ", img.width, "x", img.height, " pixels"));
  }
  img.pixels.assign(data, data + static_cast<size_t>(img.width) * img.height * img.channels);
  stbi_image_free(data);
  return img;
}

absl::StatusOr<Dataset> LoadImageFolder(const std::string& dir, const LoadOptions& options) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": no such directory"));
  if (!fs::is_directory(dir, ec)) return Bad(dir, "is not a directory");

  // Sorted class folders, then sorted image files inside each (as torchvision's ImageFolder).
  std::vector<std::string> class_names;
  std::vector<ImageFile> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_directory() && !name.empty() && name[0] != '.') class_names.push_back(name);
  }
  if (ec) return absl::ErrnoToStatus(ec.value(), absl::StrCat(dir, ": cannot list"));
  std::sort(class_names.begin(), class_names.end());
  if (class_names.empty()) return Bad(dir, "has no class sub-folders");
  for (size_t c = 0; c < class_names.size(); ++c) {
    std::vector<std::string> class_files;
    for (const auto& entry : fs::directory_iterator(fs::path(dir) / class_names[c])) {
      const std::string name = entry.path().filename().string();
      if (entry.is_regular_file() && name[0] != '.' && IsImageFileName(name)) {
        class_files.push_back(entry.path().string());
      }
    }
    std::sort(class_files.begin(), class_files.end());
    for (std::string& f : class_files) files.push_back({std::move(f), static_cast<int32_t>(c)});
  }
  return DecodeImageFiles(dir, std::move(class_names), files,
                          [&files](size_t i) { return ReadFile(files[i].name); }, options);
}

absl::StatusOr<Dataset> DecodeImageFiles(const std::string& name,
                                         std::vector<std::string> class_names,
                                         std::vector<ImageFile> files, const ImageReader& read,
                                         const LoadOptions& options) {
  const std::string& dir = name;
  Dataset dataset;
  dataset.class_names = std::move(class_names);
  if (files.empty()) return Bad(dir, "contains no images");
  if (options.max_samples > 0 && static_cast<int64_t>(files.size()) > options.max_samples) {
    files.resize(options.max_samples);
  }

  // Unreadable files are skipped (and counted); sizes and modes are reconciled below.
  std::vector<DecodedImage> images;
  images.reserve(files.size());
  std::vector<std::string> skipped;
  bool all_grey = true;
  int alpha = 0;
  std::map<std::pair<int, int>, int> sizes;  // (height, width) -> images
  for (size_t i = 0; i < files.size(); ++i) {
    const auto& [file, label] = files[i];
    auto bytes = read(i);
    absl::StatusOr<DecodedImage> img =
        bytes.ok() ? DecodeImage(file, *bytes) : absl::StatusOr<DecodedImage>(bytes.status());
    if (!img.ok()) {
      skipped.push_back(std::string(img.status().message()));
      continue;
    }
    all_grey = all_grey && img->channels <= 2;
    alpha += img->channels == 2 || img->channels == 4;
    ++sizes[{img->height, img->width}];
    images.push_back(std::move(*img));
    dataset.labels.push_back(label);
  }
  if (images.empty()) {
    return Bad(dir, absl::StrCat("has no readable image (", skipped.size(), " files failed, e.g. ",
                                 skipped.empty() ? "" : skipped[0], ")"));
  }
  if (!skipped.empty()) {
    dataset.notes.push_back(absl::StrCat("skipped ", skipped.size(), " unreadable file",
                                         skipped.size() == 1 ? "" : "s", " (e.g. ", skipped[0],
                                         ")"));
  }
  // Target size: the requested one, else the most common (ties: the larger area, then taller).
  int64_t h = options.image_height, w = options.image_width;
  if ((h > 0) != (w > 0) || h < 0 || w < 0 || h * w > kMaxImagePixels) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image size must be two positive numbers H,W of at most ", kMaxImagePixels,
        " pixels; got ", h, ",", w));
  }
  if (h == 0) {
    std::pair<int, int> best{0, 0};
    int best_count = -1;
    for (const auto& [size, count] : sizes) {
      if (count > best_count || (count == best_count && int64_t{size.first} * size.second >=
                                                            int64_t{best.first} * best.second)) {
        best = size;
        best_count = count;
      }
    }
    h = best.first;
    w = best.second;
  }
  int resized = 0;
  for (const DecodedImage& img : images) resized += img.height != h || img.width != w;
  if (resized > 0) {
    dataset.notes.push_back(absl::StrCat(
        "resized ", resized, " of ", images.size(), " images to ", h, "x", w,
        options.image_height > 0 ? " (--image-size)" : " (the most common size; --image-size sets it)",
        ", bilinear with antialiasing as torchvision's Resize"));
  }
  if (!all_grey) {
    int grey = 0;
    for (const DecodedImage& img : images) grey += img.channels <= 2;
    if (grey > 0) {
      dataset.notes.push_back(absl::StrCat("converted ", grey, " grey image", grey == 1 ? "" : "s",
                                           " to RGB (channel repeated)"));
    }
  }
  if (alpha > 0) {
    dataset.notes.push_back(absl::StrCat("dropped the alpha channel of ", alpha, " image",
                                         alpha == 1 ? "" : "s"));
  }

  // Grey if every image is grey, else RGB (grey images replicated); alpha is dropped.
  const int64_t c = all_grey ? 1 : 3;
  const int64_t n = static_cast<int64_t>(images.size());
  dataset.samples.shape = {n, c, h, w};
  dataset.samples.values.resize(static_cast<size_t>(n * c * h * w));
  for (int64_t i = 0; i < n; ++i) {
    const DecodedImage& img = images[i];
    const int src_c = img.channels;
    const int64_t src_pixels = int64_t{img.height} * img.width;
    for (int64_t ch = 0; ch < c; ++ch) {
      const int64_t src_ch = src_c <= 2 ? 0 : ch;
      std::vector<float> plane(static_cast<size_t>(src_pixels));
      for (int64_t p = 0; p < src_pixels; ++p) plane[p] = img.pixels[p * src_c + src_ch] / 255.0f;
      if (img.height != h || img.width != w) {
        plane = ResizePlane(plane, img.height, img.width, static_cast<int>(h),
                            static_cast<int>(w));
      }
      std::copy(plane.begin(), plane.end(), dataset.samples.values.begin() + (i * c + ch) * h * w);
    }
  }
  return dataset;
}

namespace {

// PIL's resampling coefficients for one axis (ImagingResample, BILINEAR: a triangle of support
// 1, stretched by the scale when shrinking). For each output index: the first input index and
// the normalised weights.
struct AxisWeights {
  std::vector<int> first;
  std::vector<std::vector<double>> weights;
};

AxisWeights BilinearWeights(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;
  AxisWeights axis;
  axis.first.resize(out_size);
  axis.weights.resize(out_size);
  for (int x = 0; x < out_size; ++x) {
    const double centre = (x + 0.5) * scale;
    int lo = static_cast<int>(std::floor(centre - support + 0.5));
    int hi = static_cast<int>(std::floor(centre + support + 0.5));
    lo = std::max(lo, 0);
    hi = std::min(hi, in_size);
    std::vector<double> w;
    double total = 0;
    for (int i = lo; i < hi; ++i) {
      const double t = std::abs((i - centre + 0.5) / filter_scale);
      const double v = t < 1.0 ? 1.0 - t : 0.0;
      w.push_back(v);
      total += v;
    }
    if (total > 0) {
      for (double& v : w) v /= total;
    }
    axis.first[x] = lo;
    axis.weights[x] = std::move(w);
  }
  return axis;
}

}  // namespace

std::vector<float> ResizePlane(const std::vector<float>& plane, int height, int width,
                               int out_height, int out_width) {
  // Horizontal pass, then vertical, as PIL does.
  const AxisWeights across = BilinearWeights(width, out_width);
  std::vector<double> rows(static_cast<size_t>(height) * out_width);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < out_width; ++x) {
      double v = 0;
      const std::vector<double>& w = across.weights[x];
      for (size_t k = 0; k < w.size(); ++k) {
        v += w[k] * plane[static_cast<size_t>(y) * width + across.first[x] + k];
      }
      rows[static_cast<size_t>(y) * out_width + x] = v;
    }
  }
  const AxisWeights down = BilinearWeights(height, out_height);
  std::vector<float> out(static_cast<size_t>(out_height) * out_width);
  for (int y = 0; y < out_height; ++y) {
    const std::vector<double>& w = down.weights[y];
    for (int x = 0; x < out_width; ++x) {
      double v = 0;
      for (size_t k = 0; k < w.size(); ++k) {
        v += w[k] * rows[static_cast<size_t>(down.first[y] + k) * out_width + x];
      }
      out[static_cast<size_t>(y) * out_width + x] = static_cast<float>(std::clamp(v, 0.0, 1.0));
    }
  }
  return out;
}

namespace {

// The members of a zip archive by name: their content, inflated (np.savez writes zip64
// records even for small arrays).
absl::StatusOr<std::map<std::string, std::string>> ReadZip(const std::string& name,
                                                           const std::string& b) {
  constexpr uint64_t kMaxMembers = 10000, kMaxMember = uint64_t{1} << 31;
  auto entries = zip::ReadDirectory(name, b, kMaxMembers);
  if (!entries.ok()) return entries.status();
  std::map<std::string, std::string> members;
  for (const zip::Entry& entry : *entries) {
    auto content = zip::ReadMember(name, b, entry, kMaxMember);
    if (!content.ok()) return content.status();
    members[entry.name] = *std::move(content);
  }
  return members;
}

// The first of `names` (each tried with ".npy") present in the archive, or "".
std::string FindMember(const std::map<std::string, std::string>& members,
                       std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (members.count(std::string(n) + ".npy")) return std::string(n) + ".npy";
  }
  return "";
}

}  // namespace

absl::StatusOr<Dataset> DecodeNpz(const std::string& name, const std::string& bytes,
                                  const LoadOptions& options) {
  auto members = ReadZip(name, bytes);
  if (!members.ok()) return members.status();
  std::string x = FindMember(*members, {"x", "X", "samples", "images", "data"});
  if (x.empty() && members->size() == 1) x = members->begin()->first;
  if (x.empty()) {
    std::vector<std::string> names;
    for (const auto& [member, _] : *members) names.push_back(member);
    return Bad(name, absl::StrCat("holds ", absl::StrJoin(names, ", "),
                                  "; expected the samples as x (or X, samples, images, data)"));
  }
  Dataset dataset;
  int64_t rows = 0;
  auto samples = DecodeNpy(absl::StrCat(name, ":", x), members->at(x), options.max_samples, &rows);
  if (!samples.ok()) return samples.status();
  dataset.samples = std::move(*samples);
  const std::string y = FindMember(*members, {"y", "Y", "labels", "targets"});
  if (options.labels_path.empty() && !y.empty()) {
    auto labels = DecodeLabels(absl::StrCat(name, ":", y), members->at(y));
    if (!labels.ok()) return labels.status();
    if (static_cast<int64_t>(labels->size()) != rows) {
      return Bad(name, absl::StrCat(y, " has ", labels->size(), " labels but ", x, " has ", rows,
                                    " samples"));
    }
    labels->resize(dataset.samples.Rows());
    dataset.labels = std::move(*labels);
  }
  return dataset;
}

absl::StatusOr<Dataset> LoadNpz(const std::string& path, const LoadOptions& options) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  auto dataset = DecodeNpz(path, *bytes, options);
  if (!dataset.ok()) return dataset.status();
  if (!options.labels_path.empty()) {
    if (absl::Status st = AttachLabels(path, dataset->samples.Rows(), options, *dataset);
        !st.ok()) {
      return st;
    }
  }
  return dataset;
}

absl::StatusOr<ArrayHeader> ReadSamplesHeader(const std::string& path) {
  auto bytes = ReadFile(path);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<RawArray> raw;
  if (StartsWith(*bytes, kNpyMagic)) {
    raw = ParseNpyHeader(path, *bytes);
  } else if (StartsWith(*bytes, absl::string_view("PK\x03\x04", 4))) {
    auto members = ReadZip(path, *bytes);
    if (!members.ok()) return members.status();
    std::string x = FindMember(*members, {"x", "X", "samples", "images", "data"});
    if (x.empty() && members->size() == 1) x = members->begin()->first;
    if (x.empty()) return Bad(path, "holds no samples array (x, X, samples, images or data)");
    raw = ParseNpyHeader(absl::StrCat(path, ":", x), members->at(x));
  } else {
    return Bad(path, "is neither an NPY file nor an NPZ archive");
  }
  if (!raw.ok()) return raw.status();
  static constexpr std::pair<Dtype, const char*> kCodes[] = {
      {Dtype::kU8, "u1"},  {Dtype::kI8, "i1"},  {Dtype::kI16, "i2"}, {Dtype::kI32, "i4"},
      {Dtype::kI64, "i8"}, {Dtype::kF32, "f4"}, {Dtype::kF64, "f8"}};
  ArrayHeader header;
  for (const auto& [dtype, code] : kCodes) {
    if (dtype == raw->dtype) header.dtype = code;
  }
  header.shape = raw->shape;
  return header;
}

absl::StatusOr<Dataset> LoadCsv(const std::string& path, const LoadOptions& options) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return DecodeCsv(path, *text, options);
}

absl::StatusOr<Dataset> DecodeCsv(const std::string& name, const std::string& text,
                                  const LoadOptions& options) {
  std::vector<std::pair<int, std::vector<std::string>>> rows;  // (line number, fields)
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line_no == 1) line = absl::StripPrefix(line, "\xEF\xBB\xBF");  // UTF-8 BOM
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    rows.emplace_back(line_no, SplitCsvLine(line));
  }
  if (rows.empty()) return Bad(name, "is empty");

  // The first row is a header if it names the label column or has no numeric field at all
  // (string labels alone do not make a header: data rows also have numeric features).
  const std::vector<std::string>& first = rows[0].second;
  bool header = true;
  double v;
  for (const std::string& field : first) {
    if (ParseNumber(field, &v)) header = false;
  }
  if (!options.csv_label_column.empty() &&
      std::find(first.begin(), first.end(), options.csv_label_column) != first.end()) {
    header = true;
  }
  const size_t width = first.size();
  int label_col = -1;
  if (!options.csv_label_column.empty()) {
    label_col = static_cast<int>(width) - 1;
    if (header) {
      auto it = std::find(first.begin(), first.end(), options.csv_label_column);
      if (it != first.end()) label_col = static_cast<int>(it - first.begin());
    }
  }
  const int64_t features = static_cast<int64_t>(width) - (label_col >= 0 ? 1 : 0);
  if (features < 1) return Bad(name, "has no feature columns");

  Dataset dataset;
  std::vector<std::string> label_text;
  const size_t begin = header ? 1 : 0;
  for (size_t r = begin; r < rows.size(); ++r) {
    if (options.max_samples > 0 &&
        static_cast<int64_t>(r - begin) >= options.max_samples) {
      break;
    }
    const auto& [line, fields] = rows[r];
    if (fields.size() != width) {
      return Bad(name, absl::StrCat("line ", line, " has ", fields.size(), " fields, expected ",
                                    width));
    }
    for (size_t j = 0; j < width; ++j) {
      if (static_cast<int>(j) == label_col) {
        label_text.push_back(fields[j]);
      } else if (ParseNumber(fields[j], &v) && std::isfinite(static_cast<float>(v))) {
        // Samples are float32: 1e300 is finite as a double but not as a sample.
        dataset.samples.values.push_back(static_cast<float>(v));
      } else {
        return Bad(name, absl::StrCat("line ", line, " column ", j + 1, ": \"", fields[j],
                                      "\" is not a finite float32 number"));
      }
    }
  }
  const int64_t n = static_cast<int64_t>(dataset.samples.values.size()) / features;
  if (n == 0) return Bad(name, "has no data rows");
  dataset.samples.shape = {n, features};

  if (label_col >= 0) {
    // Non-negative integers are used as they are; anything else names classes, numbered in
    // sorted order.
    bool numeric = true;
    std::vector<int32_t> labels;
    for (const std::string& s : label_text) {
      int32_t l;
      if (!absl::SimpleAtoi(s, &l) || l < 0) {
        numeric = false;
        break;
      }
      labels.push_back(l);
    }
    if (!numeric) {
      std::set<std::string> names(label_text.begin(), label_text.end());
      dataset.class_names.assign(names.begin(), names.end());
      labels.clear();
      for (const std::string& s : label_text) {
        labels.push_back(static_cast<int32_t>(
            std::lower_bound(dataset.class_names.begin(), dataset.class_names.end(), s) -
            dataset.class_names.begin()));
      }
    }
    dataset.labels = std::move(labels);
  }
  return dataset;
}

absl::Status WriteNpy(const std::string& path, const Tensor& tensor, bool as_uint8) {
  if (tensor.shape.empty() || !tensor.IsConsistent()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot write ", path, ": tensor of shape ", ShapeToString(tensor.shape), " holds ",
        tensor.values.size(), " values"));
  }
  std::string shape = "(";
  for (int64_t d : tensor.shape) absl::StrAppend(&shape, d, ", ");
  if (tensor.shape.size() > 1) shape.resize(shape.size() - 2);
  else shape.resize(shape.size() - 1);  // "(N,)"
  shape += ")";
  std::string dict = absl::StrCat("{'descr': '", as_uint8 ? "|u1" : "<f4",
                                  "', 'fortran_order': False, 'shape': ", shape, ", }");
  // Pad with spaces so the data starts on a 64-byte boundary, ending the header with '\n'.
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string out(kNpyMagic);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  out += dict;
  if (as_uint8) {
    for (float x : tensor.values) {
      out += static_cast<char>(
          static_cast<unsigned char>(std::lround(std::clamp(x, 0.0f, 1.0f) * 255.0f)));
    }
  } else {
    out.append(reinterpret_cast<const char*>(tensor.values.data()),
               tensor.values.size() * sizeof(float));
  }
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  if (!file) return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
  file.write(out.data(), static_cast<std::streamsize>(out.size()));
  file.close();
  if (!file) return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace modeldock::datasets
