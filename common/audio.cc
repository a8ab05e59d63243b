#include "common/audio.h"

#include <samplerate.h>
#include <sndfile.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/datasets.h"

namespace modeldock {
namespace fs = std::filesystem;
namespace {

bool IsAudioFile(const fs::path& path) {
  const std::string ext = absl::AsciiStrToLower(path.extension().string());
  return ext == ".wav" || ext == ".flac" || ext == ".ogg";
}

// `mono` at `rate` Hz resampled to kAudioRate (libsamplerate's sinc converter).
absl::StatusOr<std::vector<float>> Resample(const std::vector<float>& mono, int rate,
                                            const std::string& path) {
  const double ratio = static_cast<double>(kAudioRate) / rate;
  std::vector<float> out(static_cast<size_t>(mono.size() * ratio) + 16);
  SRC_DATA data{};
  data.data_in = mono.data();
  data.input_frames = static_cast<long>(mono.size());
  data.data_out = out.data();
  data.output_frames = static_cast<long>(out.size());
  data.src_ratio = ratio;
  data.end_of_input = 1;
  if (int error = src_simple(&data, SRC_SINC_MEDIUM_QUALITY, 1); error != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot resample from ", rate, " Hz: ", src_strerror(error)));
  }
  out.resize(static_cast<size_t>(data.output_frames_gen));
  return out;
}

}  // namespace

Tensor FitAudioLength(const Tensor& clips, int64_t length) {
  const int64_t rows = clips.Rows();
  const int64_t have = clips.RowSize();
  Tensor out;
  out.shape = {rows, length};
  out.values.assign(static_cast<size_t>(rows * length), 0.0f);
  const int64_t keep = std::min(have, length);
  const int64_t skip = have > length ? (have - length) / 2 : 0;  // centre crop
  for (int64_t r = 0; r < rows; ++r) {
    const float* from = clips.values.data() + r * have + skip;
    std::copy(from, from + keep, out.values.begin() + r * length);
  }
  return out;
}

absl::StatusOr<AudioClip> ReadAudioFile(const std::string& path) {
  SF_INFO info{};
  std::unique_ptr<SNDFILE, int (*)(SNDFILE*)> file(sf_open(path.c_str(), SFM_READ, &info),
                                                   sf_close);
  if (!file) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a readable audio file: ", sf_strerror(nullptr)));
  }
  if (info.channels <= 0 || info.samplerate <= 0 || info.frames <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": holds no audio"));
  }
  if (info.frames > static_cast<sf_count_t>(kMaxAudioSamples) * 48) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": longer than the dock reads"));
  }
  std::vector<float> interleaved(static_cast<size_t>(info.frames * info.channels));
  const sf_count_t read = sf_readf_float(file.get(), interleaved.data(), info.frames);
  AudioClip clip;
  clip.source_rate = info.samplerate;
  clip.source_channels = info.channels;
  std::vector<float> mono(static_cast<size_t>(read));
  for (sf_count_t f = 0; f < read; ++f) {
    float sum = 0;
    for (int c = 0; c < info.channels; ++c) sum += interleaved[f * info.channels + c];
    mono[f] = sum / info.channels;
  }
  if (info.samplerate == kAudioRate) {
    clip.samples = std::move(mono);
  } else {
    auto resampled = Resample(mono, info.samplerate, path);
    if (!resampled.ok()) return resampled.status();
    clip.samples = *std::move(resampled);
  }
  for (float& v : clip.samples) v = std::clamp(v, -1.0f, 1.0f);
  return clip;
}

bool IsAudioFolder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const fs::directory_entry& cls : fs::directory_iterator(dir, ec)) {
    if (!cls.is_directory(ec)) continue;
    for (const fs::directory_entry& file : fs::directory_iterator(cls.path(), ec)) {
      if (IsAudioFile(file.path())) return true;
    }
  }
  return false;
}

absl::StatusOr<Dataset> LoadAudioFolder(const std::string& dir, int64_t length) {
  std::error_code ec;
  std::vector<fs::path> classes;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) classes.push_back(e.path());
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(classes.begin(), classes.end());
  Dataset dataset;
  std::vector<std::vector<float>> clips;
  std::map<int, int> resampled_from;  // rate -> files
  int mixed_down = 0;
  for (size_t c = 0; c < classes.size(); ++c) {
    std::vector<fs::path> files;
    for (const fs::directory_entry& e : fs::directory_iterator(classes[c], ec)) {
      if (e.is_regular_file(ec) && IsAudioFile(e.path())) files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) continue;
    dataset.class_names.push_back(classes[c].filename().string());
    for (const fs::path& f : files) {
      auto clip = ReadAudioFile(f.string());
      if (!clip.ok()) return clip.status();
      if (clip->source_rate != kAudioRate) ++resampled_from[clip->source_rate];
      if (clip->source_channels > 1) ++mixed_down;
      clips.push_back(std::move(clip->samples));
      dataset.labels.push_back(static_cast<int32_t>(dataset.class_names.size() - 1));
    }
  }
  if (clips.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": no audio files (.wav, .flac, .ogg) in class sub-folders"));
  }
  int64_t longest = 0;
  for (const auto& clip : clips) longest = std::max<int64_t>(longest, clip.size());
  const int64_t target = length > 0 ? length : std::min(longest, kMaxAudioSamples);
  int cropped = 0, padded = 0;
  dataset.samples.shape = {static_cast<int64_t>(clips.size()), target};
  dataset.samples.values.reserve(clips.size() * target);
  for (const auto& clip : clips) {
    Tensor one({1, static_cast<int64_t>(clip.size())}, clip);
    const int64_t n = static_cast<int64_t>(clip.size());
    cropped += n > target;
    padded += n < target;
    Tensor fitted = FitAudioLength(one, target);
    dataset.samples.values.insert(dataset.samples.values.end(), fitted.values.begin(),
                                  fitted.values.end());
  }
  for (const auto& [rate, files] : resampled_from) {
    dataset.notes.push_back(absl::StrCat("resampled ", files, " file(s) from ", rate, " Hz to ",
                                         kAudioRate, " Hz"));
  }
  if (mixed_down > 0) {
    dataset.notes.push_back(absl::StrCat("mixed ", mixed_down, " multi-channel file(s) down to mono"));
  }
  if (cropped + padded > 0) {
    dataset.notes.push_back(absl::StrCat("made every clip ", target, " samples (",
                                         static_cast<double>(target) / kAudioRate, " s): ",
                                         cropped, " centre-cropped, ", padded,
                                         " zero-padded"));
  }
  return dataset;
}

absl::StatusOr<Dataset> LoadAudioArrays(const std::string& path, const std::string& labels_path,
                                        int64_t max_samples) {
  auto header = datasets::ReadSamplesHeader(path);
  if (!header.ok()) return header.status();
  if (header->shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": audio samples must be a 2-D array [N, T] (N clips of T samples, 16 kHz mono); "
              "got a ", header->shape.size(), "-D array of shape [",
        absl::StrJoin(header->shape, ", "), "]"));
  }
  const bool int16 = header->dtype == "i2";
  if (!int16 && header->dtype != "f4" && header->dtype != "f8") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": audio samples must be float32 (or float64) in [-1, 1] or int16 PCM; "
                           "got NumPy type ", header->dtype));
  }
  datasets::LoadOptions load;
  load.labels_path = labels_path;
  load.max_samples = max_samples;
  auto dataset = datasets::LoadDataset(path, load);  // NPY or NPZ, by content
  if (!dataset.ok()) return dataset.status();
  const int64_t rows = dataset->samples.Rows();
  const int64_t length = dataset->samples.RowSize();
  dataset->notes.push_back(absl::StrCat("took the ", rows, " rows of ", length,
                                        " samples as 16 kHz mono clips"));
  int64_t clipped = 0;
  for (float& v : dataset->samples.values) {
    if (int16) v /= 32768.0f;  // exact: a power of two
    const float kept = std::clamp(v, -1.0f, 1.0f);
    clipped += kept != v;
    v = kept;
  }
  if (int16) dataset->notes.push_back("scaled int16 PCM by 1/32768 to [-1, 1)");
  if (clipped > 0) {
    dataset->notes.push_back(absl::StrCat("clipped ", clipped, " values outside [-1, 1]"));
  }
  if (length > kMaxAudioSamples) {
    dataset->samples = FitAudioLength(dataset->samples, kMaxAudioSamples);
    dataset->notes.push_back(absl::StrCat("centre-cropped every clip to ", kMaxAudioSamples,
                                          " samples (", kMaxAudioSamples / kAudioRate, " s)"));
  }
  if (max_samples > 0 && header->shape[0] > max_samples) {
    dataset->notes.push_back(absl::StrCat("kept the first ", max_samples, " clips"));
  }
  return dataset;
}

}  // namespace modeldock
