#include "common/datasets.h"

#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>

#include <stb/stb_image_write.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::datasets {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::FloatEq;
using ::testing::FloatNear;
using ::testing::HasSubstr;

class DatasetsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("datasets_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (dir_ / name).string(); }

  std::string Write(const std::string& name, const std::string& bytes) const {
    const std::string path = Path(name);
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream out(path, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return path;
  }

  std::string WriteGz(const std::string& name, const std::string& bytes) const {
    const std::string path = Path(name);
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    gzclose(f);
    return path;
  }

  fs::path dir_;
};

std::string BigEndian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// IDX u8 file with the given dims and data.
std::string Idx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string out = {0, 0, 0x08, static_cast<char>(dims.size())};
  for (uint32_t d : dims) out += BigEndian32(d);
  out.append(data.begin(), data.end());
  return out;
}

// NPY v1 (or v2) file with a raw little-endian payload.
std::string Npy(const std::string& descr, const std::string& shape, const std::string& payload,
                int version = 1) {
  std::string dict =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t prefix = version == 1 ? 10 : 12;
  while ((prefix + dict.size() + 1) % 64 != 0) dict += ' ';
  dict += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(version);
  out += '\0';
  const uint32_t len = static_cast<uint32_t>(dict.size());
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  if (version != 1) {
    out += static_cast<char>((len >> 16) & 0xff);
    out += static_cast<char>(len >> 24);
  }
  return out + dict + payload;
}

template <typename T>
std::string Raw(const std::vector<T>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

std::vector<float> Scaled(const std::vector<uint8_t>& v) {
  std::vector<float> out;
  for (uint8_t x : v) out.push_back(x / 255.0f);
  return out;
}

// --- IDX ---

TEST_F(DatasetsTest, IdxPlainAndGz) {
  std::vector<uint8_t> pixels(3 * 2 * 3);
  std::iota(pixels.begin(), pixels.end(), 10);  // 10..27
  pixels[0] = 255;
  const std::string images = Idx({3, 2, 3}, pixels);
  const std::string labels = Idx({3}, {7, 0, 2});
  for (bool gz : {false, true}) {
    SCOPED_TRACE(gz ? "gz" : "plain");
    const std::string ip = gz ? WriteGz("images.gz", images) : Write("images", images);
    const std::string lp = gz ? WriteGz("labels.gz", labels) : Write("labels", labels);
    auto format = DetectFormat(ip);
    ASSERT_TRUE(format.ok()) << format.status();
    EXPECT_EQ(*format, Format::kIdx);
    LoadOptions options;
    options.labels_path = lp;
    auto ds = LoadDataset(ip, options);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_THAT(ds->samples.shape, ElementsAre(3, 1, 2, 3));
    EXPECT_THAT(ds->samples.values, ElementsAreArray(Scaled(pixels)));
    EXPECT_FLOAT_EQ(ds->samples.values[0], 1.0f);
    EXPECT_THAT(ds->labels, ElementsAre(7, 0, 2));
    EXPECT_EQ(ds->NumClasses(), 8);

    options.max_samples = 2;
    ds = LoadIdx(ip, options);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_THAT(ds->samples.shape, ElementsAre(2, 1, 2, 3));
    EXPECT_THAT(ds->samples.values,
                ElementsAreArray(Scaled({pixels.begin(), pixels.begin() + 12})));
    EXPECT_THAT(ds->labels, ElementsAre(7, 0));
  }
  // Unlabelled.
  auto ds = LoadIdx(Write("u", images));
  ASSERT_TRUE(ds.ok());
  EXPECT_FALSE(ds->labelled());
}

TEST_F(DatasetsTest, IdxErrors) {
  std::vector<uint8_t> pixels(2 * 4 * 4, 1);
  std::string images = Idx({2, 4, 4}, pixels);
  const std::string truncated = Write("truncated", images.substr(0, images.size() - 1));
  auto ds = LoadIdx(truncated);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr(truncated));
  EXPECT_THAT(ds.status().message(), HasSubstr("truncated"));

  // A gzip stream cut short.
  const std::string gz = WriteGz("full.gz", images);
  std::string gz_bytes;
  {
    std::ifstream in(gz, std::ios::binary);
    gz_bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string cut = Write("cut.gz", gz_bytes.substr(0, gz_bytes.size() / 2));
  EXPECT_EQ(LoadIdx(cut).status().code(), absl::StatusCode::kInvalidArgument);

  LoadOptions options;
  options.labels_path = Write("labels", Idx({3}, {0, 1, 2}));
  ds = LoadIdx(Write("images", images), options);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr("3 labels"));
  EXPECT_THAT(ds.status().message(), HasSubstr(options.labels_path));

  options.labels_path = Path("no-labels");
  EXPECT_EQ(LoadIdx(Path("images"), options).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadIdx(Path("missing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadDataset(Path("missing")).status().code(), absl::StatusCode::kNotFound);
  // A labels file is not a sample file.
  EXPECT_EQ(LoadIdx(Path("labels")).status().code(), absl::StatusCode::kInvalidArgument);
  // Trailing garbage.
  EXPECT_EQ(LoadIdx(Write("long", images + "xx")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetsTest, FashionMnistT10k) {
  const std::string images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  const std::string labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
  if (!fs::exists(images) || !fs::exists(labels)) GTEST_SKIP() << "dataset-fashion-mnist absent";
  auto format = DetectFormat(images);
  ASSERT_TRUE(format.ok());
  EXPECT_EQ(*format, Format::kIdx);
  LoadOptions options;
  options.labels_path = labels;
  options.max_samples = 100;
  auto ds = LoadDataset(images, options);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(100, 1, 28, 28));
  ASSERT_EQ(ds->labels.size(), 100u);
  // Values read with numpy from the same file.
  EXPECT_THAT(std::vector<int32_t>(ds->labels.begin(), ds->labels.begin() + 10),
              ElementsAre(9, 2, 1, 1, 6, 1, 4, 6, 5, 7));
  EXPECT_EQ(ds->labels[99], 2);
  const std::vector<uint8_t> row = {0, 0, 98, 136, 110, 109, 110, 162, 135, 144};
  for (int x = 0; x < 10; ++x) {
    EXPECT_FLOAT_EQ(ds->samples.values[14 * 28 + 10 + x], row[x] / 255.0f);
  }
  double sum = 0;
  for (float v : ds->samples.values) sum += v;
  EXPECT_NEAR(sum, 5854180.0 / 255.0, 1e-2);
}

// --- NPY ---

TEST_F(DatasetsTest, NpyUint8Images) {
  std::vector<uint8_t> data(2 * 2 * 3);
  std::iota(data.begin(), data.end(), 100);
  for (int version : {1, 2}) {
    const std::string path =
        Write("u8_v" + std::to_string(version) + ".npy", Npy("|u1", "(2, 2, 3)", Raw(data), version));
    auto format = DetectFormat(path);
    ASSERT_TRUE(format.ok());
    EXPECT_EQ(*format, Format::kNpy);
    auto ds = LoadDataset(path);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_THAT(ds->samples.shape, ElementsAre(2, 1, 2, 3));
    EXPECT_THAT(ds->samples.values, ElementsAreArray(Scaled(data)));
  }
}

TEST_F(DatasetsTest, NpyNhwcBecomesNchw) {
  // [N=2, H=2, W=2, C=3]; value encodes (n, y, x, c).
  std::vector<float> data;
  for (int n = 0; n < 2; ++n)
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 2; ++x)
        for (int c = 0; c < 3; ++c) data.push_back(1000 * n + 100 * y + 10 * x + c);
  auto ds = LoadNpy(Write("nhwc.npy", Npy("<f4", "(2, 2, 2, 3)", Raw(data))));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(2, 3, 2, 2));
  for (int n = 0; n < 2; ++n)
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 2; ++y)
        for (int x = 0; x < 2; ++x)
          EXPECT_EQ(ds->samples.values[((n * 3 + c) * 2 + y) * 2 + x],
                    1000 * n + 100 * y + 10 * x + c);
  // NHWC with one channel.
  std::vector<uint8_t> grey = {0, 51, 102, 255};
  ds = LoadNpy(Write("nhw1.npy", Npy("|u1", "(1, 2, 2, 1)", Raw(grey))));
  ASSERT_TRUE(ds.ok());
  EXPECT_THAT(ds->samples.shape, ElementsAre(1, 1, 2, 2));
  EXPECT_THAT(ds->samples.values, ElementsAre(0.0f, 0.2f, 0.4f, 1.0f));
}

TEST_F(DatasetsTest, NpyNchwFloat64KeptAndTabular) {
  std::vector<double> data(2 * 3 * 2 * 2);
  for (size_t i = 0; i < data.size(); ++i) data[i] = 0.5 * i - 3;
  auto ds = LoadNpy(Write("nchw.npy", Npy("<f8", "(2, 3, 2, 2)", Raw(data))));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(2, 3, 2, 2));
  for (size_t i = 0; i < data.size(); ++i) EXPECT_FLOAT_EQ(ds->samples.values[i], data[i]);

  std::vector<float> tab = {1.5f, -2, 3, 4, 5, 6.25f};
  LoadOptions options;
  options.labels_path = Write("labels.npy", Npy("<i8", "(3,)", Raw(std::vector<int64_t>{2, 0, 1})));
  ds = LoadNpy(Write("tab.npy", Npy("<f4", "(3, 2)", Raw(tab))), options);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 2));
  EXPECT_THAT(ds->samples.values, ElementsAreArray(tab));
  EXPECT_THAT(ds->labels, ElementsAre(2, 0, 1));

  options.labels_path = Write("labels4.npy", Npy("<i4", "(3,)", Raw(std::vector<int32_t>{5, 4, 3})));
  options.max_samples = 2;
  ds = LoadNpy(Path("tab.npy"), options);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(2, 2));
  EXPECT_THAT(ds->labels, ElementsAre(5, 4));

  // Big-endian floats are swapped.
  std::string be = Raw(std::vector<float>{1.0f, -2.5f});
  for (size_t i = 0; i < be.size(); i += 4) std::reverse(be.begin() + i, be.begin() + i + 4);
  ds = LoadNpy(Write("be.npy", Npy(">f4", "(2, 1)", be)));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.values, ElementsAre(1.0f, -2.5f));
}

TEST_F(DatasetsTest, NpyErrors) {
  LoadOptions options;
  options.labels_path = Write("labels.npy", Npy("<i8", "(4,)", Raw(std::vector<int64_t>{0, 1, 2, 3})));
  auto ds = LoadNpy(Write("x.npy", Npy("<f4", "(3, 2)", Raw(std::vector<float>(6)))), options);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr("4 labels"));
  options.labels_path = Write("flabels.npy", Npy("<f4", "(3,)", Raw(std::vector<float>(3))));
  EXPECT_EQ(LoadNpy(Path("x.npy"), options).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadNpy(Write("short.npy", Npy("<f4", "(3, 2)", Raw(std::vector<float>(5)))))
                .status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadNpy(Write("c8.npy", Npy("<c8", "(1, 1)", std::string(8, '\0')))).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A label at int64's maximum is out of range, said without converting it back from double
  // (npy_fuzzer found that conversion overflowing).
  auto big = DecodeLabels("big.npy", Npy("<i8", "(2,)", Raw(std::vector<int64_t>{
                                                             1, std::numeric_limits<int64_t>::max()})));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("label 9223372036854775808 at index 1 out of range"));
}

// The header alone: the shape, and a data size that does not match the file is refused before
// anything is loaded.
TEST_F(DatasetsTest, ReadNpyShapeReadsTheHeaderAndChecksTheFileSize) {
  auto shape = ReadNpyShape(Write("clips.npy", Npy("<f4", "(3, 4)", Raw(std::vector<float>(12)))));
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_THAT(*shape, ElementsAre(3, 4));
  shape = ReadNpyShape(Write("img.npy", Npy("|u1", "(2, 1, 2, 3)", std::string(12, '\x7f'), 2)));
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_THAT(*shape, ElementsAre(2, 1, 2, 3));
  // As LoadNpy shapes the samples: [N, H, W] -> [N, 1, H, W], NHWC -> NCHW.
  shape = ReadNpyShape(Write("hw.npy", Npy("|u1", "(2, 2, 3)", std::string(12, '\x7f'))));
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_THAT(*shape, ElementsAre(2, 1, 2, 3));
  EXPECT_EQ(*shape, LoadNpy(Path("hw.npy"))->samples.shape);
  shape = ReadNpyShape(Write("nhwc.npy", Npy("|u1", "(1, 2, 2, 3)", std::string(12, '\x7f'))));
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_THAT(*shape, ElementsAre(1, 3, 2, 2));
  shape = ReadNpyShape(Write("cut.npy", Npy("<f4", "(3, 4)", Raw(std::vector<float>(11)))));
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(shape.status().message(), HasSubstr("truncated"));
  shape = ReadNpyShape(Write("long.npy", Npy("<f4", "(3, 4)", Raw(std::vector<float>(13)))));
  EXPECT_EQ(shape.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadNpyShape(Write("text.npy", "not an array")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadNpyShape(Path("missing.npy")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DatasetsTest, WriteNpyRoundTrip) {
  Tensor t({2, 1, 2, 2}, {0, 0.2f, 0.4f, 1, -1, 2, 0.5f, 3.25f});
  const std::string fp = Path("f.npy");
  ASSERT_TRUE(WriteNpy(fp, t).ok());
  auto ds = LoadNpy(fp);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->samples.shape, t.shape);
  EXPECT_EQ(ds->samples.values, t.values);

  const std::string up = Path("u.npy");
  ASSERT_TRUE(WriteNpy(up, t, /*as_uint8=*/true).ok());
  ds = LoadNpy(up);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->samples.shape, t.shape);
  // Clamped to [0, 1] and quantised to 1/255.
  EXPECT_THAT(ds->samples.values,
              ElementsAre(0.0f, 51 / 255.0f, 102 / 255.0f, 1.0f, 0.0f, 1.0f, 128 / 255.0f, 1.0f));

  // The data starts on a 64-byte boundary, as numpy writes it.
  std::ifstream in(fp, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ((bytes.size() - 8 * sizeof(float)) % 64, 0u);

  Tensor one({3}, {1, 2, 3});
  ASSERT_TRUE(WriteNpy(Path("one.npy"), one).ok());
  ds = LoadNpy(Path("one.npy"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 1));

  Tensor bad({2, 2}, {1, 2, 3});
  EXPECT_EQ(WriteNpy(Path("bad.npy"), bad).code(), absl::StatusCode::kInvalidArgument);
}

// --- image folder ---

void WritePng(const std::string& path, int w, int h, int c, const std::vector<uint8_t>& px) {
  fs::create_directories(fs::path(path).parent_path());
  ASSERT_EQ(px.size(), static_cast<size_t>(w * h * c));
  ASSERT_NE(stbi_write_png(path.c_str(), w, h, c, px.data(), w * c), 0);
}

TEST_F(DatasetsTest, ImageFolderGrey) {
  const std::string root = Path("images");
  // Classes created out of order: labels follow sorted names.
  WritePng(root + "/zebra/b.png", 3, 2, 1, {0, 1, 2, 3, 4, 5});
  WritePng(root + "/zebra/a.png", 3, 2, 1, {10, 11, 12, 13, 14, 15});
  WritePng(root + "/ant/x.png", 3, 2, 1, {255, 0, 255, 0, 255, 0});
  Write("images/ant/notes.txt", "not an image");
  fs::create_directories(root + "/empty_class");

  auto format = DetectFormat(root);
  ASSERT_TRUE(format.ok());
  EXPECT_EQ(*format, Format::kImageFolder);
  auto ds = LoadDataset(root);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->class_names, ElementsAre("ant", "empty_class", "zebra"));
  EXPECT_THAT(ds->labels, ElementsAre(0, 2, 2));
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 1, 2, 3));
  std::vector<uint8_t> want = {255, 0, 255, 0, 255, 0, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5};
  EXPECT_THAT(ds->samples.values, ElementsAreArray(Scaled(want)));

  LoadOptions options;
  options.max_samples = 2;
  ds = LoadImageFolder(root, options);
  ASSERT_TRUE(ds.ok());
  EXPECT_THAT(ds->samples.shape, ElementsAre(2, 1, 2, 3));
  EXPECT_THAT(ds->labels, ElementsAre(0, 2));
}

TEST_F(DatasetsTest, ImageFolderRgbWhenAnyColour) {
  const std::string root = Path("images");
  WritePng(root + "/a/grey.png", 2, 1, 1, {7, 200});
  WritePng(root + "/b/rgb.png", 2, 1, 3, {1, 2, 3, 4, 5, 6});
  WritePng(root + "/b/rgba.png", 2, 1, 4, {9, 8, 7, 0, 6, 5, 4, 255});
  auto ds = LoadImageFolder(root);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 3, 1, 2));
  // grey replicated into R, G, B planes; RGB as planes; alpha dropped.
  std::vector<uint8_t> want = {7, 200, 7, 200, 7, 200,  //
                               1, 4, 2, 5, 3, 6,        //
                               9, 6, 8, 5, 7, 4};
  EXPECT_THAT(ds->samples.values, ElementsAreArray(Scaled(want)));
  EXPECT_THAT(ds->labels, ElementsAre(0, 1, 1));
}

TEST_F(DatasetsTest, ImageFolderJpeg) {
  const std::string root = Path("images");
  fs::create_directories(root + "/c");
  std::vector<uint8_t> px(8 * 8 * 3);
  for (size_t i = 0; i < px.size(); i += 3) {
    px[i] = 200;
    px[i + 1] = 100;
    px[i + 2] = 50;
  }
  ASSERT_NE(stbi_write_jpg((root + "/c/flat.jpg").c_str(), 8, 8, 3, px.data(), 95), 0);
  auto ds = LoadImageFolder(root);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(1, 3, 8, 8));
  // JPEG is lossy: a flat colour comes back within a few levels.
  EXPECT_NEAR(ds->samples.values[0], 200 / 255.0f, 4 / 255.0f);
  EXPECT_NEAR(ds->samples.values[64], 100 / 255.0f, 4 / 255.0f);
  EXPECT_NEAR(ds->samples.values[128], 50 / 255.0f, 4 / 255.0f);
}

TEST_F(DatasetsTest, ImageFolderErrors) {
  const std::string root = Path("images");
  Write("images/b/broken.png", "\x89PNG\r\n\x1a\n garbage");
  auto ds = LoadImageFolder(root);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr("no readable image"));
  EXPECT_THAT(ds.status().message(), HasSubstr("broken.png"));

  LoadOptions half_size;
  half_size.image_height = 4;  // width missing
  WritePng(root + "/a/1.png", 4, 4, 1, std::vector<uint8_t>(16, 3));
  EXPECT_EQ(LoadImageFolder(root, half_size).status().code(), absl::StatusCode::kInvalidArgument);

  fs::create_directories(Path("no_classes"));
  EXPECT_EQ(LoadImageFolder(Path("no_classes")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadImageFolder(Path("absent")).status().code(), absl::StatusCode::kNotFound);
}

// Hand-derived PIL BILINEAR coefficients (ImagingResample): upscaling 2 -> 4 gives
// [p0, .75 p0 + .25 p1, .25 p0 + .75 p1, p1]; shrinking 4 -> 2 widens the triangle to support 2:
// [(.75 v0 + .75 v1 + .25 v2) / 1.75, (.25 v1 + .75 v2 + .75 v3) / 1.75].
TEST(ResizePlaneTest, MatchesPilBilinearCoefficients) {
  std::vector<float> up = ResizePlane({0.2f, 0.6f}, 1, 2, 1, 4);
  EXPECT_THAT(up, ElementsAre(FloatEq(0.2f), FloatEq(0.3f), FloatEq(0.5f), FloatEq(0.6f)));
  std::vector<float> down = ResizePlane({0.0f, 0.4f, 0.8f, 1.0f}, 1, 4, 1, 2);
  EXPECT_THAT(down, ElementsAre(FloatNear((0.75 * 0.4 + 0.25 * 0.8) / 1.75, 1e-6),
                                FloatNear((0.25 * 0.4 + 0.75 * 0.8 + 0.75 * 1.0) / 1.75, 1e-6)));
  // Separable: 2x2 -> 4x4 is the 1-D rule on rows, then on columns.
  std::vector<float> square = ResizePlane({0.0f, 1.0f, 1.0f, 1.0f}, 2, 2, 4, 4);
  const float row0[] = {0.0f, 0.25f, 0.75f, 1.0f}, row1[] = {1, 1, 1, 1};
  const float mix[] = {1.0f, 0.75f, 0.25f, 0.0f};  // weight of row 0 in each output row
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      EXPECT_FLOAT_EQ(square[y * 4 + x], mix[y] * row0[x] + (1 - mix[y]) * row1[x]) << y << "," << x;
    }
  }
  EXPECT_EQ(ResizePlane({0.1f, 0.2f, 0.3f, 0.4f}, 2, 2, 2, 2),
            (std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}));
}

TEST_F(DatasetsTest, ImageFolderOfMixedSizesModesAndBrokenFiles) {
  const std::string root = Path("photos");
  WritePng(root + "/cat/1.png", 4, 4, 1, std::vector<uint8_t>(16, 51));
  WritePng(root + "/cat/2.png", 4, 4, 3, std::vector<uint8_t>(48, 102));
  WritePng(root + "/dog/3.png", 2, 2, 4, {0, 0, 0, 255, 255, 255, 255, 0, 255, 255, 255, 9,
                                          255, 255, 255, 255});
  Write("photos/dog/4.jpg", "not really a jpeg");
  auto ds = LoadImageFolder(root);
  ASSERT_TRUE(ds.ok()) << ds.status();
  // The most common size (4x4) and RGB (one image has colour); the broken file skipped.
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 3, 4, 4));
  EXPECT_THAT(ds->labels, ElementsAre(0, 0, 1));
  EXPECT_FLOAT_EQ(ds->samples.values[0], 51 / 255.0f);            // grey repeated into R
  EXPECT_FLOAT_EQ(ds->samples.values[2 * 16], 51 / 255.0f);       // ... and B
  EXPECT_FLOAT_EQ(ds->samples.values[3 * 16], 102 / 255.0f);      // RGB image, R plane
  // The 2x2 image upscaled: its first row [0, 1] becomes [0, .25, .75, 1] (R plane).
  const float* dog = ds->samples.values.data() + 2 * 3 * 16;
  EXPECT_FLOAT_EQ(dog[1], 0.25f);
  EXPECT_FLOAT_EQ(dog[2], 0.75f);
  ASSERT_EQ(ds->notes.size(), 4u);
  EXPECT_THAT(ds->notes[0], HasSubstr("skipped 1 unreadable file"));
  EXPECT_THAT(ds->notes[0], HasSubstr("4.jpg"));
  EXPECT_THAT(ds->notes[1], HasSubstr("resized 1 of 3 images to 4x4 (the most common size"));
  EXPECT_THAT(ds->notes[2], HasSubstr("converted 1 grey image to RGB"));
  EXPECT_THAT(ds->notes[3], HasSubstr("dropped the alpha channel of 1 image"));

  LoadOptions options;
  options.image_height = 2;
  options.image_width = 3;
  ds = LoadImageFolder(root, options);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 3, 2, 3));
  EXPECT_THAT(ds->notes[1], HasSubstr("resized 3 of 3 images to 2x3 (--image-size)"));
  for (float v : ds->samples.values) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LE(v, 1.0f);
  }
}

// --- NPZ ---

// A zip archive of stored members with a central directory, as np.savez writes (without the
// zip64 extras np.savez adds; the reader takes those too, checked against numpy by hand).
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

TEST_F(DatasetsTest, NpzWithSamplesAndLabels) {
  ASSERT_TRUE(WriteNpy(Path("x.npy"), Tensor({3, 1, 2, 2}, std::vector<float>(12, 0.5f))).ok());
  std::ifstream in(Path("x.npy"), std::ios::binary);
  const std::string x((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string y = Npy("<i8", "(3,)", Raw(std::vector<int64_t>{2, 0, 1}));
  Write("data.npz", StoredZip({{"x.npy", x}, {"y.npy", y}}));
  EXPECT_EQ(*DetectFormat(Path("data.npz")), Format::kNpz);
  auto ds = LoadDataset(Path("data.npz"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 1, 2, 2));
  EXPECT_THAT(ds->labels, ElementsAre(2, 0, 1));

  Write("only.npz", StoredZip({{"features.npy", x}}));  // one array: the samples, unlabelled
  ds = LoadDataset(Path("only.npz"));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE(ds->labels.empty());

  Write("two.npz", StoredZip({{"a.npy", x}, {"b.npy", y}}));
  EXPECT_THAT(LoadDataset(Path("two.npz")).status().message(), HasSubstr("expected the samples as x"));
  Write("short.npz", StoredZip({{"x.npy", x}, {"y.npy", y}}).substr(0, 60));
  EXPECT_EQ(LoadDataset(Path("short.npz")).status().code(), absl::StatusCode::kInvalidArgument);
}

// --- CSV ---

TEST_F(DatasetsTest, CsvWithHeaderAndStringLabels) {
  const std::string path = Write("iris.csv",
                                 "sepal,species,petal\n"
                                 "1.5,virginica,2\n"
                                 "-3,setosa,4e-1\n"
                                 "\n"
                                 "5,\"versi,color\",6\n");
  auto format = DetectFormat(path);
  ASSERT_TRUE(format.ok());
  EXPECT_EQ(*format, Format::kCsv);
  LoadOptions options;
  options.csv_label_column = "species";
  auto ds = LoadDataset(path, options);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 2));
  EXPECT_THAT(ds->samples.values, ElementsAre(1.5f, 2.0f, -3.0f, 0.4f, 5.0f, 6.0f));
  EXPECT_THAT(ds->class_names, ElementsAre("setosa", "versi,color", "virginica"));
  EXPECT_THAT(ds->labels, ElementsAre(2, 0, 1));

  // Default "label" is absent from this header: the last column is the label.
  ds = LoadCsv(path);
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);  // "virginica" as feature
  EXPECT_THAT(ds.status().message(), HasSubstr("line 2"));
}

TEST_F(DatasetsTest, CsvWithoutHeader) {
  const std::string path = Write("data.csv", "0.5,1,3\n2,3.5,0\n4,5,1\n");
  auto ds = LoadCsv(path);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 2));
  EXPECT_THAT(ds->samples.values, ElementsAre(0.5f, 1.0f, 2.0f, 3.5f, 4.0f, 5.0f));
  EXPECT_THAT(ds->labels, ElementsAre(3, 0, 1));
  EXPECT_TRUE(ds->class_names.empty());

  LoadOptions options;
  options.csv_label_column = "";
  ds = LoadCsv(path, options);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.shape, ElementsAre(3, 3));
  EXPECT_FALSE(ds->labelled());

  options.csv_label_column = "label";
  options.max_samples = 2;
  ds = LoadCsv(path, options);
  ASSERT_TRUE(ds.ok());
  EXPECT_THAT(ds->samples.shape, ElementsAre(2, 2));
  EXPECT_THAT(ds->labels, ElementsAre(3, 0));
}

TEST_F(DatasetsTest, CsvHeaderWithLabelColumn) {
  const std::string path = Write("h.csv", "label,a,b\ncat,1,2\ndog,3,4\ncat,5,6\n");
  auto ds = LoadCsv(path);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.values, ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(ds->labels, ElementsAre(0, 1, 0));
  EXPECT_THAT(ds->class_names, ElementsAre("cat", "dog"));
}

TEST_F(DatasetsTest, CsvErrors) {
  auto ds = LoadCsv(Write("ragged.csv", "1,2,0\n3,4\n"));
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr("line 2"));
  EXPECT_THAT(ds.status().message(), HasSubstr("ragged.csv"));
  EXPECT_EQ(LoadCsv(Write("empty.csv", "")).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadCsv(Write("header_only.csv", "a,b,label\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LoadCsv(Write("nan.csv", "1,nan,0\n2,3,1\n")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetsTest, DetectFormatByContent) {
  // Extensions lie; content decides.
  std::vector<uint8_t> px(4, 9);
  auto f = DetectFormat(Write("images.csv", Idx({1, 2, 2}, px)));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Format::kIdx);
  f = DetectFormat(WriteGz("arr.bin", Npy("<f4", "(1, 1)", Raw(std::vector<float>{1}))));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Format::kNpy);
  auto ds = LoadDataset(Path("arr.bin"));  // gzipped NPY loads too
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.values, ElementsAre(1.0f));
  f = DetectFormat(WriteGz("t.gz", "1,2\n3,4\n"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, Format::kCsv);
  EXPECT_EQ(DetectFormat(Write("blob", std::string("\x89PNG\r\n\x1a\n", 8))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DetectFormat(Path("nothing")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_STREQ(FormatName(Format::kImageFolder), "image_folder");
}

// --- Found by fuzzing (fuzz/; the inputs are in fuzz/corpus/<target>/crash-*) ---

// fuzz/idx_fuzzer, dataset_fuzzer: dimensions whose product overflows int64 (undefined
// behaviour; a wrapped product could then match the data size).
TEST_F(DatasetsTest, IdxShapeProductOverflowIsAnError) {
  const std::string bytes = Idx({0x4A, 0x4A4A0200, 0x701, 0xAE000300}, std::vector<uint8_t>(48));
  auto samples = DecodeIdx("crash.idx", bytes);
  EXPECT_EQ(samples.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(samples.status().message(), HasSubstr("truncated"));
  EXPECT_EQ(LoadIdx(Write("crash.idx", bytes)).status().code(), absl::StatusCode::kInvalidArgument);
  // fuzz/npy_fuzzer: the same through the labels reader (an int8 IDX array).
  std::string labels = Idx({0x7676, 0x76767676, 0x76767676, 0x76767676}, {});
  labels[2] = 0x09;
  EXPECT_EQ(DecodeLabels("crash", labels).status().code(), absl::StatusCode::kInvalidArgument);
  // NPY dimensions are int64: 2^62 x 4 float32 values would wrap to 0 bytes.
  auto npy = DecodeNpy("huge.npy", Npy("<f4", "(4611686018427387904, 4)", ""));
  EXPECT_EQ(npy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(npy.status().message(), HasSubstr("truncated"));
}

// A zero dimension made every other dimension free to be huge: their product overflowed in
// ToSamples, and an NHWC shape looped over N x H for no values.
TEST_F(DatasetsTest, ArrayWithZeroDimensionIsAnError) {
  for (const std::vector<uint32_t>& dims : std::vector<std::vector<uint32_t>>{
           {0, 28, 28}, {3, 0, 4}, {0xFFFFFFFF, 0xFFFFFFFF, 0, 1}, {0, 0xFFFFFFFF, 0xFFFFFFFF}}) {
    auto samples = DecodeIdx("empty.idx", Idx(dims, {}));
    EXPECT_EQ(samples.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(samples.status().message(), HasSubstr("is empty"));
  }
  EXPECT_EQ(DecodeNpy("empty.npy", Npy("|u1", "(0, 3)", "")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeLabels("empty.npy", Npy("<i8", "(0,)", "")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// fuzz/csv_fuzzer: 1e300 is a finite double but an infinite float32 sample.
TEST_F(DatasetsTest, CsvNumberBeyondFloat32IsAnError) {
  auto ds = DecodeCsv("crash.csv", "a,label\n1e300,1\n");
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ds.status().message(), HasSubstr("\"1e300\""));
  ds = DecodeCsv("ok.csv", "a,label\n-3e38,1\n");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->samples.values, ElementsAre(-3e38f));
}

// fuzz/image_fuzzer: stb_image decodes a PGM of height 0 (its digits are missing).
TEST_F(DatasetsTest, ImageWithoutPixelsIsAnError) {
  const std::string pgm = std::string("P5\n4 ") + std::string(8, '\0') + "4\n25\n" +
                          std::string(16, 'D');
  auto img = DecodeImage("crash.pgm", pgm);
  EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(img.status().message(), HasSubstr("4x0"));
}

// fuzz/image_fuzzer: 15 bytes of PPM header declared 1256125x551 pixels, which stb_image
// allocated (2 GB) and returned without the data to fill them.
TEST_F(DatasetsTest, ImageDeclaringTooManyPixelsIsAnError) {
  auto img = DecodeImage("crash.ppm", "P61256125\n551}P");
  EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(img.status().message(), HasSubstr("1256125x551"));
  EXPECT_THAT(img.status().message(), HasSubstr("exceeds the limit"));
}

// stb_image does not notice a PGM/PPM whose pixel data ends early and returns the missing
// pixels uninitialised.
// Found by fuzzing in CI: a PPM header whose width overflows stb's int parser (reported as a
// negative size; our size arithmetic then overflowed).
TEST_F(DatasetsTest, PnmWithOverflowingSizeIsAnError) {
  const std::string header =
      "P60627557222222222222222222222222222222222222222222222222225\n722222222222252}P";
  auto image = DecodeImage("huge.ppm", header);
  EXPECT_EQ(image.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DatasetsTest, TruncatedPnmIsAnError) {
  const std::string header = "P5\n# a comment\n4 4\n255\n";
  std::string pixels(16, '\0');
  std::iota(pixels.begin(), pixels.end(), 1);
  auto img = DecodeImage("full.pgm", header + pixels);
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->width, 4);
  EXPECT_EQ(img->height, 4);
  EXPECT_EQ(img->pixels, std::vector<unsigned char>(pixels.begin(), pixels.end()));
  img = DecodeImage("cut.pgm", header + pixels.substr(0, 15));
  EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(img.status().message(), HasSubstr("truncated"));
  img = DecodeImage("cut.ppm", "P6\n2 2\n65535\n" + std::string(23, 'x'));  // 16-bit RGB: 24 bytes
  EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(img.status().message(), HasSubstr("truncated"));
}

}  // namespace
}  // namespace modeldock::datasets
