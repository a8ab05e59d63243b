#include "dock/background_queue.h"

#include <atomic>
#include <future>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace modeldock::dock {
namespace {

// Jobs run one at a time in submission order; WaitIdle returns once all have run.
TEST(BackgroundQueueTest, RunsJobsInOrder) {
  BackgroundQueue queue("test", 16);
  std::vector<int> ran;
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(queue.Submit("job", [&ran, i](const std::function<bool()>&) { ran.push_back(i); }));
  }
  queue.WaitIdle();
  EXPECT_EQ(ran, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(queue.dropped(), 0u);
}

// With one job running and `capacity` waiting, the next is refused and counted, never queued.
TEST(BackgroundQueueTest, RefusesWhenFull) {
  BackgroundQueue queue("test", 2);
  std::promise<void> started, release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> ran{0};
  ASSERT_TRUE(queue.Submit("blocker", [&](const std::function<bool()>&) {
    started.set_value();
    released.wait();
    ++ran;
  }));
  started.get_future().wait();  // the blocker runs: the two slots are free
  EXPECT_TRUE(queue.Submit("a", [&](const std::function<bool()>&) { ++ran; }));
  EXPECT_TRUE(queue.Submit("b", [&](const std::function<bool()>&) { ++ran; }));
  EXPECT_FALSE(queue.Submit("c", [&](const std::function<bool()>&) { ++ran; }));
  EXPECT_EQ(queue.dropped(), 1u);
  release.set_value();
  queue.WaitIdle();
  EXPECT_EQ(ran.load(), 3);
}

// Shutdown tells the running job to stop, drops the waiting ones, and refuses new ones.
TEST(BackgroundQueueTest, ShutdownStopsTheRunningJobAndDropsTheRest) {
  BackgroundQueue queue("test", 4);
  std::promise<void> started;
  std::atomic<bool> saw_stop{false};
  std::atomic<int> others{0};
  ASSERT_TRUE(queue.Submit("long", [&](const std::function<bool()>& stopping) {
    started.set_value();
    while (!stopping()) std::this_thread::yield();
    saw_stop = true;
  }));
  ASSERT_TRUE(queue.Submit("waiting", [&](const std::function<bool()>&) { ++others; }));
  started.get_future().wait();
  queue.Shutdown();
  EXPECT_TRUE(saw_stop.load());
  EXPECT_EQ(others.load(), 0);
  EXPECT_FALSE(queue.Submit("late", [&](const std::function<bool()>&) { ++others; }));
  queue.WaitIdle();  // returns at once after shutdown
  EXPECT_EQ(others.load(), 0);
}

}  // namespace
}  // namespace modeldock::dock
