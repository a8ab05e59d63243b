// A zipped image folder loads exactly as the folder does; archives that break the limits, or
// whose paths leave the folder, are refused from the central directory, before any inflating.
#include <unistd.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <stb/stb_image_write.h>

#include "common/datasets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock::datasets {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Member {
  std::string name;
  std::string data;
  bool deflate = true;
  int64_t declared_size = -1;  // the directory's uncompressed size; -1 = data.size()
};

std::string Le(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

std::string RawDeflate(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A zip archive as `zip` writes one: local headers, then the central directory.
std::string Zip(const std::vector<Member>& members) {
  std::string zip, directory;
  for (const Member& m : members) {
    const uint64_t offset = zip.size();
    const uLong crc = crc32(0, reinterpret_cast<const Bytef*>(m.data.data()), m.data.size());
    const std::string packed = m.deflate ? RawDeflate(m.data) : m.data;
    const uint64_t size = m.declared_size < 0 ? m.data.size() : m.declared_size;
    const int method = m.deflate ? 8 : 0;
    zip += Le(0x04034b50, 4) + Le(20, 2) + Le(0, 2) + Le(method, 2) + Le(0, 4) + Le(crc, 4) +
           Le(packed.size(), 4) + Le(size, 4) + Le(m.name.size(), 2) + Le(0, 2) + m.name + packed;
    directory += Le(0x02014b50, 4) + Le(20, 2) + Le(20, 2) + Le(0, 2) + Le(method, 2) +
                 Le(0, 4) + Le(crc, 4) + Le(packed.size(), 4) + Le(size, 4) +
                 Le(m.name.size(), 2) + Le(0, 2) + Le(0, 2) + Le(0, 2) + Le(0, 2) + Le(0, 4) +
                 Le(offset, 4) + m.name;
  }
  const uint64_t cd_offset = zip.size();
  zip += directory + Le(0x06054b50, 4) + Le(0, 2) + Le(0, 2) + Le(members.size(), 2) +
         Le(members.size(), 2) + Le(directory.size(), 4) + Le(cd_offset, 4) + Le(0, 2);
  return zip;
}

std::string Png(int w, int h, int c, uint8_t seed) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * c);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(seed + 37 * i);
  std::string out;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
  };
  EXPECT_NE(stbi_write_png_to_func(append, &out, w, h, c, px.data(), w * c), 0);
  return out;
}

class ImageZipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("image_zip_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& bytes) const {
    const fs::path path = dir_ / name;
    fs::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary) << bytes;
    return path.string();
  }

  fs::path dir_;
};

// Three classes, mixed sizes (resized to the most common), grey and RGB, a non-image file.
std::vector<Member> FolderMembers() {
  return {{"zebra/b.png", Png(4, 3, 1, 1)},  {"zebra/a.png", Png(4, 3, 3, 2)},
          {"ant/x.png", Png(4, 3, 1, 3)},    {"ant/y.png", Png(6, 5, 1, 4)},
          {"bee/only.png", Png(4, 3, 3, 5)}, {"bee/notes.txt", "not an image"}};
}

TEST_F(ImageZipTest, LoadsAsTheFolderDoes) {
  std::vector<Member> members = FolderMembers();
  for (const Member& m : members) Write("folder/" + m.name, m.data);
  auto folder = LoadImageFolder((dir_ / "folder").string());
  ASSERT_TRUE(folder.ok()) << folder.status();
  // CLASS/IMAGE (zipped from inside the folder, with folder records and macOS litter), and
  // TOP/CLASS/IMAGE (`zip -r photos.zip photos`).
  std::vector<Member> inside = members;
  inside.push_back({"ant/", ""});
  inside.push_back({"__MACOSX/ant/._x.png", "resource fork"});
  inside.push_back({"ant/.DS_Store", "finder"});
  std::vector<Member> top = {{"photos/", ""}};
  for (Member m : members) {
    m.name = "photos/" + m.name;
    m.deflate = false;
    top.push_back(m);
  }
  for (const auto& [name, zip] : {std::pair{"inside.zip", Zip(inside)}, {"top.zip", Zip(top)}}) {
    SCOPED_TRACE(name);
    const std::string path = Write(name, zip);
    auto zipped = LoadImageFolderZip(path);
    ASSERT_TRUE(zipped.ok()) << zipped.status();
    EXPECT_EQ(zipped->samples.shape, folder->samples.shape);
    EXPECT_EQ(zipped->samples.values, folder->samples.values);
    EXPECT_EQ(zipped->labels, folder->labels);
    EXPECT_THAT(zipped->class_names, ElementsAre("ant", "bee", "zebra"));
    EXPECT_EQ(zipped->notes, folder->notes);
    // LoadDataset tells it from an .npz by its members.
    LoadOptions three;
    three.max_samples = 3;
    auto loaded = LoadDataset(path, three);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->labels, std::vector<int32_t>(folder->labels.begin(),
                                                   folder->labels.begin() + 3));
  }
  EXPECT_THAT(folder->labels, ElementsAre(0, 0, 1, 2, 2));
  EXPECT_EQ(folder->samples.shape, (std::vector<int64_t>{5, 3, 3, 4}));
}

TEST_F(ImageZipTest, DeclaredSizesOverTheLimitsAreRefusedBeforeInflating) {
  // The member's data is no deflate stream at all: inflating it would fail with another error.
  Member bomb{"cat/bomb.png", "\xff\xff not deflate", false, int64_t{3} << 30};
  bomb.deflate = false;
  std::vector<Member> members = {{"cat/a.png", Png(2, 2, 1, 1)}, bomb};
  auto status = LoadImageFolderZip(Write("bomb.zip", Zip(members))).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("member 'cat/bomb.png' would unpack to 3.0 GiB"));
  EXPECT_THAT(status.message(), HasSubstr("one image may be at most 64.0 MiB"));

  // Each member under the per-member cap, all of them over the total.
  std::vector<Member> many;
  for (int i = 0; i < 20; ++i) {
    many.push_back({"cat/" + std::to_string(i) + ".png", "junk", false, int64_t{60} << 20});
  }
  for (Member& m : many) m.deflate = false;
  status = LoadImageFolderZip(Write("many.zip", Zip(many))).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("would unpack to more than 1.0 GiB"));
  EXPECT_THAT(status.message(), HasSubstr("zip fewer or smaller images"));

  // Too many members for the limit.
  ImageZipLimits five;
  five.max_members = 5;
  status = LoadImageFolderZip(Write("count.zip", Zip(FolderMembers())), {}, five).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("holds 6 members; at most 5 are read"));
}

TEST_F(ImageZipTest, PathsOutsideTheFolderAreRefused) {
  const std::string png = Png(2, 2, 1, 1);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"../escape.png", "has '..' in its path"},
      {"cat/../../escape.png", "has '..' in its path"},
      {"cat\\..\\..\\escape.png", "has '..' in its path"},
      {"/etc/cat/x.png", "has an absolute path"},
      {"C:/cat/x.png", "has an absolute path"},
      {"ignored/.hidden/../../x.png", "has '..' in its path"},
  };
  for (const auto& [name, expected] : cases) {
    SCOPED_TRACE(name);
    const std::string path = Write("bad.zip", Zip({{"cat/a.png", png}, {name, png}}));
    auto status = LoadImageFolderZip(path).status();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr(expected));
    EXPECT_THAT(status.message(), HasSubstr(name));
  }
}

TEST_F(ImageZipTest, FoldersDeeperThanClassAndImageAreRefused) {
  const std::string png = Png(2, 2, 1, 1);
  auto status =
      LoadImageFolderZip(Write("deep.zip", Zip({{"cat/a.png", png}, {"dog/pups/b.png", png}})))
          .status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("image 'dog/pups/b.png' is nested deeper than "
                                          "CLASS/IMAGE"));
  // Images only beside the class folders: nothing to load, said how to fix.
  status = LoadImageFolderZip(Write("flat.zip", Zip({{"a.png", png}}))).status();
  EXPECT_THAT(status.message(), HasSubstr("holds no class folders"));
}

}  // namespace
}  // namespace modeldock::datasets
