// The memory-limit helpers: resident memory read from /proc, the backstop, and the cgroup v2
// detection and set-up against fake cgroup trees (this host has no cgroup v2 memory controller;
// the pool's fallback, resident-memory polling, is tested with real workers in sandbox_test).
#include "sandbox/memory_limit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace modeldock::sandbox {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteAll(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

TEST(MemoryLimitTest, ResidentBytesFollowTouchedMemoryOnly) {
  const int64_t before = ResidentBytes(getpid());
  ASSERT_GT(before, 0);
  constexpr size_t kBytes = 96u << 20;
  std::unique_ptr<char[]> reserved(new char[kBytes]);  // reserved, not touched: not resident
  EXPECT_LT(ResidentBytes(getpid()) - before, int64_t{16} << 20);
  std::memset(reserved.get(), 1, kBytes);
  asm volatile("" : : "r"(reserved.get()) : "memory");  // the stores are not dead
  EXPECT_GE(ResidentBytes(getpid()) - before, int64_t{90} << 20);
  EXPECT_EQ(reserved[kBytes - 1], 1);
}

TEST(MemoryLimitTest, ResidentBytesOfAGoneProcessIsMinusOne) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_EQ(ResidentBytes(child), -1);
}

TEST(MemoryLimitTest, BytesAreFormattedInMiB) {
  EXPECT_EQ(FormatMiB(int64_t{4} << 30), "4096 MiB");
  EXPECT_EQ(FormatMiB((int64_t{1536} << 20) + (int64_t{2} << 20) / 5), "1536.4 MiB");
  EXPECT_EQ(FormatMiB(512 * 1024), "0.5 MiB");
}

TEST(MemoryLimitTest, TheAddressSpaceBackstopIsGenerous) {
  EXPECT_EQ(AddressSpaceBackstop(0), 0);
  EXPECT_EQ(AddressSpaceBackstop(int64_t{4} << 30), int64_t{16} << 30);      // 4 x
  EXPECT_EQ(AddressSpaceBackstop(int64_t{512} << 20), int64_t{4608} << 20);  // + 4 GiB
}

class FakeCgroupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("modeldock-cgroup-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "mnt" / "server.slice");
    mountinfo_ = root_ / "mountinfo";
    self_cgroup_ = root_ / "cgroup";
    WriteAll(mountinfo_, "");
    WriteAll(self_cgroup_, "0::/server.slice\n");
  }
  void TearDown() override { fs::remove_all(root_); }

  void MountCgroup2() {
    WriteAll(mountinfo_,
             "25 1 0:22 / / rw - ext4 /dev/sda1 rw\n40 30 0:37 / " + (root_ / "mnt").string() +
                 " rw,relatime shared:9 - cgroup2 cgroup2 rw\n");
  }
  fs::path Dir() const { return root_ / "mnt" / "server.slice"; }

  fs::path root_;
  fs::path mountinfo_;
  fs::path self_cgroup_;
};

TEST_F(FakeCgroupTest, NoCgroup2MountIsSaid) {
  WriteAll(mountinfo_, "25 1 0:22 / / rw - ext4 /dev/sda1 rw\n"
                       "30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n");
  auto cgroups = WorkerCgroups::Detect(mountinfo_.string(), self_cgroup_.string());
  EXPECT_EQ(cgroups.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(cgroups.status().message(), HasSubstr("cgroup v2 is not mounted"));
}

TEST_F(FakeCgroupTest, NoMemoryControllerIsSaid) {
  MountCgroup2();
  WriteAll(Dir() / "cgroup.controllers", "hugetlb\n");  // what this build host offers
  auto cgroups = WorkerCgroups::Detect(mountinfo_.string(), self_cgroup_.string());
  EXPECT_EQ(cgroups.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(cgroups.status().message(),
              HasSubstr("no memory controller in " + Dir().string() + " (controllers: hugetlb)"));
}

TEST_F(FakeCgroupTest, AWorkerGetsAChildCgroupWithMemoryMax) {
  MountCgroup2();
  WriteAll(Dir() / "cgroup.controllers", "cpuset cpu io memory pids\n");
  WriteAll(Dir() / "cgroup.subtree_control", "");  // enabled by Detect
  auto cgroups = WorkerCgroups::Detect(mountinfo_.string(), self_cgroup_.string());
  ASSERT_TRUE(cgroups.ok()) << cgroups.status();
  EXPECT_EQ((*cgroups)->parent(), Dir().string());
  EXPECT_EQ(ReadAll(Dir() / "cgroup.subtree_control"), "+memory");

  auto worker = (*cgroups)->Add(4242, int64_t{1536} << 20);
  ASSERT_TRUE(worker.ok()) << worker.status();
  EXPECT_EQ(*worker, (Dir() / "modeldock-worker-4242").string());
  EXPECT_EQ(ReadAll(*worker + "/memory.max"), "1610612736");
  EXPECT_EQ(ReadAll(*worker + "/cgroup.procs"), "4242");
  EXPECT_FALSE(fs::exists(*worker + "/memory.swap.max"));  // no swap accounting here
  EXPECT_FALSE(WorkerCgroups::OomKilled(*worker));
  WriteAll(*worker + "/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n");
  EXPECT_TRUE(WorkerCgroups::OomKilled(*worker));
}

TEST_F(FakeCgroupTest, AnExplicitParentMustBeACgroup) {
  auto cgroups = WorkerCgroups::Open((root_ / "nothing").string());
  EXPECT_EQ(cgroups.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(cgroups.status().message(), HasSubstr("is not a cgroup v2 directory"));
}

}  // namespace
}  // namespace modeldock::sandbox
