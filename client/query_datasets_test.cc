// Audio arrays as query datasets (issue 25): NPY/NPZ of 16 kHz mono clips through
// client::LoadAudioQuery, which the CLI's recommend and the REST /v1/recommend both call.
#include "client/query_datasets.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::client {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// NPY v1 with a raw little-endian payload.
std::string Npy(const std::string& descr, const std::string& shape, const std::string& payload) {
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict + payload;
}

template <typename T>
std::string Raw(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A zip of stored members with a central directory (what np.savez writes, minus zip64 extras).
std::string StoredZip(const std::vector<std::pair<std::string, std::string>>& members) {
  auto le = [](uint64_t v, int bytes) {
    std::string out;
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return out;
  };
  std::string zip, directory;
  for (const auto& [name, data] : members) {
    const uint64_t offset = zip.size();
    const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(data.data()), data.size());
    zip += le(0x04034b50, 4) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) +
           le(data.size(), 4) + le(data.size(), 4) + le(name.size(), 2) + le(0, 2) + name + data;
    directory += le(0x02014b50, 4) + le(20, 2) + le(20, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
                 le(crc, 4) + le(data.size(), 4) + le(data.size(), 4) + le(name.size(), 2) +
                 le(0, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(offset, 4) + name;
  }
  const uint64_t cd_offset = zip.size();
  zip += directory + le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(members.size(), 2) +
         le(members.size(), 2) + le(directory.size(), 4) + le(cd_offset, 4) + le(0, 2);
  return zip;
}

std::string Notes(const Dataset& dataset) {
  std::string all;
  for (const std::string& note : dataset.notes) all += note + "; ";
  return all;
}

class AudioArraysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("audio_arrays_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  fs::path dir_;
};

// int16 PCM [3, 4] and int64 labels in an NPZ: values / 32768 exactly, labels as stored.
TEST_F(AudioArraysTest, NpzOfInt16PcmIsScaledBy1Over32768) {
  const std::vector<int16_t> pcm = {-32768, -16384, 0, 32767, 1, -1, 8192, 100, 3, 4, 5, 6};
  const std::string path =
      Write("clips.npz",
            StoredZip({{"samples.npy", Npy("<i2", "(3, 4)", Raw(pcm))},
                       {"labels.npy", Npy("<i8", "(3,)", Raw(std::vector<int64_t>{1, 0, 1}))}}));
  auto dataset = LoadAudioQuery(path, "", 0, 0);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->samples.shape, ElementsAre(3, 4));
  ASSERT_EQ(dataset->samples.values.size(), pcm.size());
  for (size_t i = 0; i < pcm.size(); ++i) {
    EXPECT_EQ(dataset->samples.values[i], static_cast<float>(pcm[i]) / 32768.0f) << i;
  }
  EXPECT_EQ(dataset->samples.values[0], -1.0f);
  EXPECT_EQ(dataset->samples.values[1], -0.5f);
  EXPECT_THAT(dataset->labels, ElementsAre(1, 0, 1));
  EXPECT_THAT(Notes(*dataset), HasSubstr("16 kHz mono"));
  EXPECT_THAT(Notes(*dataset), HasSubstr("int16 PCM by 1/32768"));
}

// float32 [2, 3] in an NPY with a labels NPY: values kept, the two outside [-1, 1] clipped.
TEST_F(AudioArraysTest, NpyOfFloat32WithALabelsFile) {
  const std::string path = Write(
      "clips.npy",
      Npy("<f4", "(2, 3)", Raw(std::vector<float>{0.25f, -0.75f, 1.5f, 0.125f, -2.0f, 1.0f})));
  const std::string labels =
      Write("labels.npy", Npy("<i4", "(2,)", Raw(std::vector<int32_t>{4, 2})));
  auto dataset = LoadAudioQuery(path, labels, 0, 0);
  ASSERT_TRUE(dataset.ok()) << dataset.status();
  EXPECT_THAT(dataset->samples.shape, ElementsAre(2, 3));
  EXPECT_THAT(dataset->samples.values, ElementsAre(0.25f, -0.75f, 1.0f, 0.125f, -1.0f, 1.0f));
  EXPECT_THAT(dataset->labels, ElementsAre(4, 2));
  EXPECT_THAT(Notes(*dataset), HasSubstr("clipped 2 values outside [-1, 1]"));
  EXPECT_THAT(Notes(*dataset), ::testing::Not(HasSubstr("int16")));
  // Without labels: unlabelled (the server clusters).
  auto unlabelled = LoadAudioQuery(path, "", 0, 0);
  ASSERT_TRUE(unlabelled.ok()) << unlabelled.status();
  EXPECT_TRUE(unlabelled->labels.empty());
  // Labels of another length are refused.
  const std::string three =
      Write("three.npy", Npy("<i4", "(3,)", Raw(std::vector<int32_t>{0, 1, 2})));
  EXPECT_EQ(LoadAudioQuery(path, three, 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AudioArraysTest, MaxSamplesAndSecondsFitTheClips) {
  const std::string path =
      Write("clips.npz",
            StoredZip({{"x.npy", Npy("<f4", "(3, 2)",
                                     Raw(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}))},
                       {"y.npy", Npy("<i8", "(3,)", Raw(std::vector<int64_t>{0, 1, 0}))}}));
  auto first_two = LoadAudioQuery(path, "", 0, 2);
  ASSERT_TRUE(first_two.ok()) << first_two.status();
  EXPECT_THAT(first_two->samples.shape, ElementsAre(2, 2));
  EXPECT_THAT(first_two->samples.values, ElementsAre(0.1f, 0.2f, 0.3f, 0.4f));
  EXPECT_THAT(first_two->labels, ElementsAre(0, 1));
  EXPECT_THAT(Notes(*first_two), HasSubstr("kept the first 2 clips"));
  // Half a second: 8000 samples, zero-padded at the end.
  auto padded = LoadAudioQuery(path, "", 0.5, 0);
  ASSERT_TRUE(padded.ok()) << padded.status();
  EXPECT_THAT(padded->samples.shape, ElementsAre(3, 8000));
  EXPECT_EQ(padded->samples.values[8000], 0.3f);
  EXPECT_EQ(padded->samples.values[8001], 0.4f);
  EXPECT_EQ(padded->samples.values[8002], 0.0f);
}

// 1-D, 3-D (also inside an NPZ) and non-audio types: INVALID_ARGUMENT naming the shape expected.
TEST_F(AudioArraysTest, OtherShapesAndTypesAreRefusedNamingTheShapeExpected) {
  const std::string one_d = Write("one.npy", Npy("<f4", "(5,)", Raw(std::vector<float>(5, 0.f))));
  auto refused = LoadAudioQuery(one_d, "", 0, 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("2-D array [N, T]"));
  EXPECT_THAT(refused.status().message(), HasSubstr("1-D array of shape [5]"));

  const std::string three_d =
      Write("three.npz",
            StoredZip({{"x.npy", Npy("<i2", "(2, 3, 4)", Raw(std::vector<int16_t>(24, 7)))}}));
  refused = LoadAudioQuery(three_d, "", 0, 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("[N, T]"));
  EXPECT_THAT(refused.status().message(), HasSubstr("3-D array of shape [2, 3, 4]"));

  const std::string bytes = Write("u8.npy", Npy("|u1", "(2, 2)", std::string(4, '\x80')));
  refused = LoadAudioQuery(bytes, "", 0, 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("int16 PCM"));

  const std::string csv = Write("table.csv", "a,b,label\n0.1,0.2,0\n");
  EXPECT_EQ(LoadAudioQuery(csv, "", 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AudioArraysTest, AFolderTakesNoLabelsFileAndArraysNeedTheTask) {
  fs::create_directories(dir_ / "speech" / "yes");
  auto refused = LoadAudioQuery((dir_ / "speech").string(), Write("l.npy", "x"), 0, 0);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("class folders"));
  // An NPZ is audio when the task says so; by its form alone it is an image/tabular array.
  EXPECT_TRUE(IsAudioDataset("clips.npz", "audio"));
  EXPECT_FALSE(IsAudioDataset("clips.npz", ""));
  EXPECT_FALSE(IsAudioDataset("clips.npz", "tabular"));
}

}  // namespace
}  // namespace modeldock::client
