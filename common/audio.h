// Audio as the dock takes it (issue 25): clips of 16 kHz mono float32 samples in [-1, 1].
// Reading (libsndfile: WAV, FLAC, Ogg/Vorbis at any rate and bit depth), mixing down to mono
// and resampling (libsamplerate) are the Debian libraries' work; this file says what was done.
#ifndef MODELDOCK_COMMON_AUDIO_H_
#define MODELDOCK_COMMON_AUDIO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tensor.h"

namespace modeldock {

inline constexpr int kAudioRate = 16000;
// Longest clip a folder dataset keeps when no length is asked for (longer clips are cropped).
inline constexpr int64_t kMaxAudioSamples = 30 * kAudioRate;

// Each row of `clips` [N, T] made `length` samples long: centre-cropped when longer, zero-padded
// at the end when shorter (a copy either way; the same rows when T == length).
Tensor FitAudioLength(const Tensor& clips, int64_t length);

// One file's audio at 16 kHz mono, and what reading it took.
struct AudioClip {
  std::vector<float> samples;
  int source_rate = 0;      // the file's sample rate
  int source_channels = 0;  // the file's channels (mixed down by averaging)
};
absl::StatusOr<AudioClip> ReadAudioFile(const std::string& path);

// Whether `dir` has class sub-folders holding .wav files.
bool IsAudioFolder(const std::string& dir);

// DIR/<class>/*.wav (and .flac, .ogg): one clip per file, classes are the sub-folders in byte
// order. Every clip is made `length` samples long (FitAudioLength); length 0 = the longest clip,
// at most kMaxAudioSamples. `notes` say what was done (resampled, mixed down, cropped, padded).
absl::StatusOr<Dataset> LoadAudioFolder(const std::string& dir, int64_t length);

// Audio arrays as users keep them: an NPY file of samples [N, T] with labels from `labels_path`
// (an integer NPY or IDX file; "" = unlabelled), or an NPZ archive with samples and labels as
// datasets::LoadNpz reads them. Rows are taken as 16 kHz mono clips: float32/float64 as they
// are, int16 PCM scaled by 1/32768; values outside [-1, 1] are clipped; clips longer than
// kMaxAudioSamples are centre-cropped. Any other rank or type is INVALID_ARGUMENT naming the
// shape expected. At most `max_samples` clips when > 0. `notes` say what was done.
absl::StatusOr<Dataset> LoadAudioArrays(const std::string& path, const std::string& labels_path,
                                        int64_t max_samples);

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_AUDIO_H_
