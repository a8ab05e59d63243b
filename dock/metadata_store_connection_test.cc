// Opening a metadata store: which backend a URL chooses, passwords kept out of messages, and
// what a client sees of a PostgreSQL server that is unreachable, silent, restarted, or shared
// with another client (its change feed). Part of metadata_store_test (the suite of both
// backends is in metadata_store_test.cc).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dock/metadata_store.h"
#include "dock/postgres_store.h"
#include "dock/testing/metadata_store_fixture.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/model_records.h"
#include "tests/postgres_env.h"

namespace modeldock::dock {
namespace {

using ::modeldock::testing::TestSchema;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

using test::MakeTensor;
using test::Record;

TEST(OpenMetadataStoreTest, UrlsChooseTheBackend) {
  EXPECT_TRUE(IsPostgresUrl("postgresql://u@h:5432/db"));
  EXPECT_TRUE(IsPostgresUrl("postgres://h/db"));
  EXPECT_FALSE(IsPostgresUrl("/var/lib/modeldock/modeldock.db"));
  EXPECT_FALSE(IsPostgresUrl("postgresql.db"));
}

TEST(OpenMetadataStoreTest, RedactsPasswords) {
  EXPECT_EQ(RedactUrl("postgresql://user:s3cret@db.example:5432/dock"),
            "postgresql://user:***@db.example:5432/dock");
  EXPECT_EQ(RedactUrl("postgresql://user@db.example/dock?password=s3cret&sslmode=require"),
            "postgresql://user@db.example/dock?password=***&sslmode=require");
  EXPECT_EQ(RedactUrl("postgres://u:p@[::1]:5432/d?sslmode=disable&password=x"),
            "postgres://u:***@[::1]:5432/d?sslmode=disable&password=***");
  EXPECT_EQ(RedactUrl("postgresql://db.example:5432/dock"), "postgresql://db.example:5432/dock");
  EXPECT_EQ(RedactUrl("/data/a:b@c.db"), "/data/a:b@c.db");
}

// No server needed: nothing listens on port 1; the password never reaches the message.
TEST(OpenMetadataStoreTest, UnreachableServerIsUnavailableAndBadUrlInvalid) {
  auto store =
      OpenMetadataStore("postgresql://modeldock:s3cret@127.0.0.1:1/dock?connect_timeout=5");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(),
              HasSubstr("cannot connect to PostgreSQL at postgresql://modeldock:***@127.0.0.1:1/"));
  EXPECT_EQ(store.status().message().find("s3cret"), std::string::npos);

  auto bad = OpenMetadataStore("postgresql://[::1/dock");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("bad PostgreSQL URL"));
}

// A host that accepts TCP connections and never answers, as a blackholed server behind a proxy
// would: libpq without connect_timeout waits for it forever. Open gives up after the default
// timeout, or after the URL's or $PGCONNECT_TIMEOUT's when set. About 10 s (the cases overlap).
TEST(OpenMetadataStoreTest, SilentServerTimesOutAfterTheDefaultOrTheGivenConnectTimeout) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 16), 0);  // the kernel completes handshakes; nothing accepts
  socklen_t size = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &size), 0);
  const std::string url = absl::StrCat("postgresql://modeldock@127.0.0.1:", ntohs(addr.sin_port),
                                       "/dock?sslmode=disable");
  ASSERT_EQ(unsetenv("PGCONNECT_TIMEOUT"), 0);

  // Seconds until Open failed, or -1 if it had not after `limit` (then it is unblocked by
  // closing the listener, which resets the pending connection).
  using Clock = std::chrono::steady_clock;
  auto open = [](const std::string& url) {
    return std::async(std::launch::async, [url] {
      const Clock::time_point start = Clock::now();
      absl::Status status = OpenMetadataStore(url).status();
      return std::make_pair(status, std::chrono::duration<double>(Clock::now() - start).count());
    });
  };
  const int timeout = PostgresMetadataStore::kDefaultConnectTimeoutSeconds;
  auto by_default = open(url);
  auto by_url = open(url + "&connect_timeout=2");
  const bool finished =
      by_default.wait_for(std::chrono::seconds(timeout + 20)) == std::future_status::ready;
  if (!finished) close(listener);
  ASSERT_TRUE(finished) << "Open still connecting after " << timeout + 20 << " s";
  const auto [default_status, default_seconds] = by_default.get();
  const auto [url_status, url_seconds] = by_url.get();
  EXPECT_EQ(default_status.code(), absl::StatusCode::kUnavailable) << default_status;
  EXPECT_THAT(default_status.message(), HasSubstr("timeout expired"));
  // libpq counts whole seconds: a timeout of n ends after n - 1 to n s.
  EXPECT_GE(default_seconds, timeout - 1.5);
  EXPECT_LT(default_seconds, timeout + 5);
  EXPECT_EQ(url_status.code(), absl::StatusCode::kUnavailable) << url_status;
  EXPECT_THAT(url_status.message(), HasSubstr("timeout expired"));
  EXPECT_GE(url_seconds, 0.5);
  EXPECT_LT(url_seconds, 5);  // the URL's 2 s, not the default

  ASSERT_EQ(setenv("PGCONNECT_TIMEOUT", "2", 1), 0);
  auto by_env = open(url);
  const bool env_finished =
      by_env.wait_for(std::chrono::seconds(timeout + 20)) == std::future_status::ready;
  unsetenv("PGCONNECT_TIMEOUT");
  if (!env_finished) close(listener);
  ASSERT_TRUE(env_finished);
  const auto [env_status, env_seconds] = by_env.get();
  EXPECT_THAT(env_status.message(), HasSubstr("timeout expired"));
  EXPECT_LT(env_seconds, 5);  // $PGCONNECT_TIMEOUT's 2 s, not the default
  close(listener);
}

// A connection killed by the server: the call that finds it broken is UNAVAILABLE, the next one
// reconnects, and nothing committed is lost.
TEST(PostgresMetadataStoreTest, ReconnectsAfterTheServerDropsTheConnection) {
  MODELDOCK_REQUIRE_POSTGRES();
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  const std::string app = schema.name();
  auto store = OpenMetadataStore(schema.url() + "&application_name=" + app);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Insert(Record("m", "alpha", "1.0", 1)).ok());

  const std::string backends =
      "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '" + app + "'";
  ASSERT_EQ(schema.Exec(backends), "1");
  ASSERT_EQ(schema.Exec("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = '" +
                        app + "'"),
            "1");
  for (int i = 0; i < 200 && schema.Exec(backends) != "0"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(schema.Exec(backends), "0");

  auto broken = (*store)->Get("m");
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable) << broken.status();
  EXPECT_THAT(broken.status().message(), HasSubstr("PostgreSQL connection lost during get"));
  auto again = (*store)->Get("m");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->spec.name, "alpha");
  EXPECT_EQ(schema.Exec(backends), "1");
}

// Waits (up to 10 s) for the feed to bring `change` of `id`; other tests on the same database
// announce their own ids on the same channel, which are skipped.
bool Announced(ChangeFeed* feed, ModelChange change, const std::string& id) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    auto events = feed->Wait(absl::Milliseconds(200));
    if (!events.ok()) return false;
    for (const ModelChangeEvent& e : *events) {
      if (e.model_id == id && e.change == change) return true;
    }
  }
  return false;
}

// Every change another server must apply is announced when, and only when, it commits; a feed
// whose connection is killed reports UNAVAILABLE once, then listens again.
TEST(PostgresMetadataStoreTest, ChangeFeedAnnouncesCommittedChanges) {
  MODELDOCK_REQUIRE_POSTGRES();
  TestSchema schema;
  ASSERT_EQ(schema.error(), "");
  const std::string app = schema.name();
  auto store = OpenMetadataStore(schema.url() + "&application_name=" + app);
  ASSERT_TRUE(store.ok()) << store.status();
  auto opened = (*store)->OpenChangeFeed();
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_NE(*opened, nullptr);
  ChangeFeed* feed = opened->get();

  const std::string id = app + "-m";  // unique on the database's one channel
  ASSERT_TRUE((*store)->Insert(Record(id, "alpha", "1", 1)).ok());
  // Row-only changes (the replicas' registries in memory follow them).
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  ModelRecord r = *(*store)->Get(id);
  r.state = ModelState::kProbing;
  ++r.revision;
  ASSERT_TRUE((*store)->UpdateState(r).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  r.spec.description = "updated";
  ++r.revision;
  ASSERT_TRUE((*store)->UpdateSpec(r).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  ApiKeyRow key;
  key.id = app + "-k";
  key.name = "k";
  key.role = 2;
  ASSERT_TRUE((*store)->InsertKey(key).ok());
  ASSERT_TRUE((*store)->SetOwner(id, key.id).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kRecordChanged, id));
  r.state = ModelState::kReady;
  ASSERT_TRUE(
      (*store)->CommitProbe(r, "p", MakeTensor(1, 2, {1, 2}), Tensor(), "s", {1.0f, 2.0f}).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kReady, id));
  ASSERT_TRUE((*store)->PutVector(id, "s", {3.0f, 4.0f}).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kVectorChanged, id));
  EXPECT_THAT(*(*store)->GetVector(id, "s"), ElementsAre(3.0f, 4.0f));
  EXPECT_EQ((*store)->GetVector(id, "other").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE((*store)->Delete(id).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kDeleted, id));
  // A probe, a state or a spec of a deleted model rolls back: nothing is announced.
  EXPECT_EQ((*store)->CommitProbe(r, "p", MakeTensor(1, 2, {1, 2}), Tensor(), "s", {1.0f}).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->UpdateState(r).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*store)->UpdateSpec(r).code(), absl::StatusCode::kNotFound);
  auto quiet = feed->Wait(absl::Milliseconds(500));
  ASSERT_TRUE(quiet.ok()) << quiet.status();
  for (const ModelChangeEvent& e : *quiet) EXPECT_NE(e.model_id, id);

  // The server drops the feed's connection: UNAVAILABLE (changes may be lost: catch up), then
  // the next Wait listens again.
  ASSERT_EQ(schema.Exec("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                        "application_name = '" + app + "' AND query LIKE 'LISTEN%'"),
            "1");
  absl::Status lost;
  for (int i = 0; i < 50 && lost.ok(); ++i) lost = feed->Wait(absl::Milliseconds(200)).status();
  EXPECT_EQ(lost.code(), absl::StatusCode::kUnavailable) << lost;
  auto again = feed->Wait(absl::Milliseconds(10));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*store)->Insert(Record(id, "alpha", "1", 1)).ok());
  ASSERT_TRUE((*store)->PutVector(id, "s", {5.0f}).ok());
  EXPECT_TRUE(Announced(feed, ModelChange::kVectorChanged, id));
}

}  // namespace
}  // namespace modeldock::dock
