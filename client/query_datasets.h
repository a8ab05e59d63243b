// Text and audio query datasets as users keep them (issue 25), for the CLI and the REST API.
// Text: a CSV or TSV with a `text` and a `label` column, JSON Lines, or a folder of .txt files
// per class. Audio: a folder of WAV files per class, or NPY/NPZ arrays of 16 kHz mono clips.
#ifndef MODELDOCK_CLIENT_QUERY_DATASETS_H_
#define MODELDOCK_CLIENT_QUERY_DATASETS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock::client {

// Whether `path` holds texts: `task_flag` "text" (any other non-empty task: no), else by its
// form: a .jsonl file, a CSV/TSV whose header names a `text` column, or a folder whose class
// folders hold .txt files.
bool IsTextDataset(const std::string& path, const std::string& task_flag);

// A text dataset as the client sends it: texts, labels, class names and samples [N, 0]; at most
// `max_samples` texts when > 0. `labels` (a --labels file) is refused: a text dataset's labels
// are its label column or class folders.
absl::StatusOr<Dataset> LoadTextQuery(const std::string& path, const std::string& labels,
                                      int64_t max_samples);

// Whether `path` holds audio: `task_flag` "audio", or (no flag) a folder whose class folders
// hold .wav (.flac, .ogg) files.
bool IsAudioDataset(const std::string& path, const std::string& task_flag);

// An audio dataset as the client sends it: clips [N, T] of 16 kHz mono and their labels; at
// most `max_samples` clips when > 0; `notes` say what was done. `path` is
// - a folder with one sub-folder of .wav (.flac, .ogg) files per class: resampled and mixed down
//   as needed, fitted to `seconds` when > 0, else to the longest clip; `labels` must be "";
// - an NPY file of samples [N, T] with `labels` (an integer NPY file; "" = unlabelled), or an
//   NPZ archive with samples and labels (LoadAudioArrays: taken as 16 kHz mono, int16 PCM
//   scaled by 1/32768; other shapes are INVALID_ARGUMENT), fitted to `seconds` when > 0.
absl::StatusOr<Dataset> LoadAudioQuery(const std::string& path, const std::string& labels,
                                       double seconds, int64_t max_samples);

}  // namespace modeldock::client

#endif  // MODELDOCK_CLIENT_QUERY_DATASETS_H_
