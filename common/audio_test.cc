#include "common/audio.h"

#include <sndfile.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FitAudioLengthTest, CentreCropsAndPadsAtTheEnd) {
  Tensor clips({2, 5}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10});
  EXPECT_THAT(FitAudioLength(clips, 3).values, ElementsAre(2, 3, 4, 7, 8, 9));
  EXPECT_THAT(FitAudioLength(clips, 4).values, ElementsAre(1, 2, 3, 4, 6, 7, 8, 9));
  const Tensor padded = FitAudioLength(clips, 7);
  EXPECT_THAT(padded.shape, ElementsAre(2, 7));
  EXPECT_THAT(padded.values, ElementsAre(1, 2, 3, 4, 5, 0, 0, 6, 7, 8, 9, 10, 0, 0));
  EXPECT_EQ(FitAudioLength(clips, 5).values, clips.values);
}

class AudioFolderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("audio_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A 16-bit PCM WAV of `frames` frames of a sine at `hz`, the same on every channel.
  void WriteWav(const std::string& relative, int rate, int channels, int frames, double hz) {
    fs::create_directories((dir_ / relative).parent_path());
    SF_INFO info{};
    info.samplerate = rate;
    info.channels = channels;
    info.format = SF_FORMAT_WAV | SF_FORMAT_PCM_16;
    SNDFILE* file = sf_open((dir_ / relative).c_str(), SFM_WRITE, &info);
    ASSERT_NE(file, nullptr) << sf_strerror(nullptr);
    std::vector<float> data(static_cast<size_t>(frames) * channels);
    for (int f = 0; f < frames; ++f) {
      for (int c = 0; c < channels; ++c) {
        data[f * channels + c] = 0.5f * static_cast<float>(std::sin(2 * M_PI * hz * f / rate));
      }
    }
    sf_writef_float(file, data.data(), frames);
    sf_close(file);
  }

  fs::path dir_;
};

TEST_F(AudioFolderTest, ResamplesMixesDownFitsAndSaysSo) {
  WriteWav("no/a.wav", 16000, 1, 16000, 440);
  WriteWav("yes/b.wav", 22050, 2, 22050, 440);  // 1 s stereo at 22.05 kHz
  WriteWav("yes/c.wav", 16000, 1, 8000, 440);   // 0.5 s
  auto dataset = LoadAudioFolder(dir_.string(), 0);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->class_names, ElementsAre("no", "yes"));
  EXPECT_THAT(dataset->labels, ElementsAre(0, 1, 1));
  ASSERT_THAT(dataset->samples.shape, ElementsAre(3, 16000));
  // The resampled clip is still a 440 Hz sine of amplitude 0.5: compare with the 16 kHz one
  // away from the edges (sinc resampling, 16-bit samples).
  const float* original = dataset->samples.Row(0);
  const float* resampled = dataset->samples.Row(1);
  double worst = 0;
  for (int i = 1000; i < 15000; ++i) worst = std::max(worst, std::fabs(original[i] - resampled[i]) * 1.0);
  EXPECT_LT(worst, 0.01);
  // The half-second clip is padded with zeros.
  EXPECT_EQ(dataset->samples.Row(2)[12000], 0.0f);
  EXPECT_THAT(dataset->notes, ElementsAre(HasSubstr("resampled 1 file(s) from 22050 Hz"),
                                          HasSubstr("mixed 1 multi-channel file(s) down"),
                                          HasSubstr("0 centre-cropped, 1 zero-padded")));
  EXPECT_TRUE(IsAudioFolder(dir_.string()));
}

TEST_F(AudioFolderTest, AskedLengthAndBadFilesAreNamed) {
  WriteWav("a/x.wav", 16000, 1, 16000, 220);
  WriteWav("b/y.wav", 16000, 1, 16000, 220);
  auto short_clips = LoadAudioFolder(dir_.string(), 4000);
  ASSERT_TRUE(short_clips.ok()) << short_clips.status();
  EXPECT_THAT(short_clips->samples.shape, ElementsAre(2, 4000));
  std::ofstream(dir_ / "b" / "broken.wav") << "not a wav file";
  auto broken = LoadAudioFolder(dir_.string(), 0);
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(broken.status().message(), HasSubstr("broken.wav"));
  fs::remove_all(dir_);
  fs::create_directories(dir_ / "empty");
  EXPECT_FALSE(IsAudioFolder(dir_.string()));
  EXPECT_THAT(LoadAudioFolder(dir_.string(), 0).status().message(), HasSubstr("no audio files"));
}

}  // namespace
}  // namespace modeldock
