// Readers for query datasets: IDX (MNIST format, optionally .gz), NPY, NPZ, an image folder with
// one sub-folder per class (as torchvision's ImageFolder), and CSV for tabular data.
// Image values are scaled to [0, 1]; images come out as [N, C, H, W].
#ifndef MODELDOCK_COMMON_DATASETS_H_
#define MODELDOCK_COMMON_DATASETS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::datasets {

enum class Format { kIdx, kNpy, kImageFolder, kCsv, kNpz };

const char* FormatName(Format format);

struct LoadOptions {
  // Separate labels file for IDX (idx1-ubyte) and NPY (integer array); empty = unlabelled,
  // unless the format carries labels itself (image folder, CSV).
  std::string labels_path;
  // Keep only the first N samples (0 = all).
  int64_t max_samples = 0;
  // CSV: name of the label column; if absent from the header the last column is the label.
  // "" means the CSV has no label column at all (unlabelled).
  std::string csv_label_column = "label";
  // Image folders: images of another size are resized to image_height x image_width (bilinear
  // with antialiasing, as torchvision's Resize on PIL images); 0 = the folder's most common size.
  int64_t image_height = 0;
  int64_t image_width = 0;
};

// Detects the format from the content: a directory is an image folder; IDX and NPY by their
// magic bytes (after gunzip for .gz); text with commas is CSV; a zip archive is kNpz (LoadDataset
// loads one without .npy members as a zipped image folder).
absl::StatusOr<Format> DetectFormat(const std::string& path);

// Detects the format and loads. Errors name the file and what is wrong with it.
absl::StatusOr<Dataset> LoadDataset(const std::string& path, const LoadOptions& options = {});

absl::StatusOr<Dataset> LoadIdx(const std::string& images_path, const LoadOptions& options = {});
absl::StatusOr<Dataset> LoadNpy(const std::string& samples_path, const LoadOptions& options = {});
// The shape LoadNpy would give the samples of an NPY file ([N,H,W] -> [N,1,H,W], NHWC -> NCHW,
// ...), from its header alone, checked against the file's size (for gzipped content only when
// loaded): a large array can be loaded when it is first needed.
absl::StatusOr<std::vector<int64_t>> ReadNpyShape(const std::string& path);
absl::StatusOr<Dataset> LoadImageFolder(const std::string& dir, const LoadOptions& options = {});

// What a zipped image folder may declare in its central directory; anything over is refused
// before a byte is inflated.
struct ImageZipLimits {
  uint64_t max_members = 100000;                // directory records, folders included
  uint64_t max_member_bytes = uint64_t{64} << 20;  // one image, uncompressed
  uint64_t max_total_bytes = uint64_t{1} << 30;    // all members, uncompressed
};
// An image folder as a zip archive (image_zip.cc): CLASS/IMAGE members, or TOP/CLASS/IMAGE
// when every image is under one top folder (`zip -r photos.zip photos`); folders and files
// whose name starts with '.', and __MACOSX/, are skipped, as are files beside the class folders.
// INVALID_ARGUMENT, saying what to change, when the directory breaks `limits`, a path is
// absolute or has "..", or an image is nested deeper than CLASS/IMAGE. Loads as LoadImageFolder
// of the unpacked folder would (same order, labels, sizes and notes).
absl::StatusOr<Dataset> LoadImageFolderZip(const std::string& path, const LoadOptions& options = {},
                                           const ImageZipLimits& limits = {});
// True if the zip archive at `path` holds no .npy member (so it is not an .npz).
absl::StatusOr<bool> IsImageFolderZip(const std::string& path);
// The image file extensions an image folder's loaders read (.png, .jpg, ...; any case).
bool IsImageFileName(const std::string& name);
// Behind LoadImageFolder and LoadImageFolderZip: decodes `files` (sorted by class, then name;
// `read(i)` gives the bytes of files[i]) into [N, C, H, W] as described at LoadImageFolder.
struct ImageFile {
  std::string name;  // in notes and errors
  int32_t label = 0;  // index into class_names
};
using ImageReader = std::function<absl::StatusOr<std::string>(size_t index)>;
absl::StatusOr<Dataset> DecodeImageFiles(const std::string& name,
                                         std::vector<std::string> class_names,
                                         std::vector<ImageFile> files, const ImageReader& read,
                                         const LoadOptions& options);
absl::StatusOr<Dataset> LoadCsv(const std::string& path, const LoadOptions& options = {});
// NumPy .npz (np.savez or np.savez_compressed): samples from the array named x (else X, samples,
// images, data, or the only array), labels from y (else Y, labels, targets) unless
// options.labels_path is given.
absl::StatusOr<Dataset> LoadNpz(const std::string& path, const LoadOptions& options = {});
// What the samples array of an NPY file, or of an NPZ archive (the member LoadNpz takes),
// declares before any conversion: NumPy's type code ("f4", "f8", "i2", "u1", ...) and its shape.
// Lets a caller refuse a shape or scale a type the generic loaders take as they are.
struct ArrayHeader {
  std::string dtype;
  std::vector<int64_t> shape;
};
absl::StatusOr<ArrayHeader> ReadSamplesHeader(const std::string& path);

// In-memory decoders behind the loaders above, which read a file whole (gunzipping gzip content)
// and hand its bytes to these. Exposed so that the parsers can be fuzzed (fuzz/) and tested
// without files; `name` only labels error messages.

// The format of file content (its first 4 KiB suffice); `name`'s extension ".csv" (or ".csv.gz")
// makes comma-less text CSV. Never kImageFolder.
absl::StatusOr<Format> DetectContentFormat(const std::string& name, const std::string& head);

// IDX or NPY samples, at most max_samples (0 = all) of them. `rows_in_content`, if not null,
// receives the number of samples the content holds (a labels file must have that many).
absl::StatusOr<Tensor> DecodeIdx(const std::string& name, const std::string& bytes,
                                 int64_t max_samples = 0, int64_t* rows_in_content = nullptr);
absl::StatusOr<Tensor> DecodeNpy(const std::string& name, const std::string& bytes,
                                 int64_t max_samples = 0, int64_t* rows_in_content = nullptr);
// A labels file: IDX idx1 or a one-dimensional integer NPY array.
absl::StatusOr<std::vector<int32_t>> DecodeLabels(const std::string& name,
                                                  const std::string& bytes);
// A .npz archive's content (zip, stored or deflated members).
absl::StatusOr<Dataset> DecodeNpz(const std::string& name, const std::string& bytes,
                                  const LoadOptions& options = {});
// CSV text; options.labels_path is not used.
absl::StatusOr<Dataset> DecodeCsv(const std::string& name, const std::string& text,
                                  const LoadOptions& options = {});

// One image as stored: 8-bit pixels, interleaved channels (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
struct DecodedImage {
  int width = 0, height = 0, channels = 0;
  std::vector<unsigned char> pixels;
};
// Largest image accepted (16 Mpx, e.g. 4096x4096): samples are fed to models as they are, so
// real query images are small, while a few header bytes can declare gigapixels.
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 24;
// PNG, JPEG, BMP, GIF (first frame), TGA or PNM content.
absl::StatusOr<DecodedImage> DecodeImage(const std::string& name, const std::string& bytes);
// Resizes one channel plane [height, width] of values to [out_height, out_width] like PIL's
// Image.resize(BILINEAR) (what torchvision's Resize does to PIL images): separable triangle
// filter, widened by the scale when shrinking (antialiasing), pixel centres aligned.
std::vector<float> ResizePlane(const std::vector<float>& plane, int height, int width,
                               int out_height, int out_width);

// Writes samples as a float32 or uint8 NPY file (used by tests and tools).
absl::Status WriteNpy(const std::string& path, const Tensor& tensor, bool as_uint8 = false);

}  // namespace modeldock::datasets

#endif  // MODELDOCK_COMMON_DATASETS_H_
