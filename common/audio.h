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

}  // namespace modeldock

#endif  // MODELDOCK_COMMON_AUDIO_H_
