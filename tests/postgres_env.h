// PostgreSQL for the tests: the server scripts/test.sh starts (scripts/postgres_test_server.sh)
// is at $MODELDOCK_TEST_PG_URL. Each test works in a schema of its own, created and dropped
// here, so that tests run in parallel on one database.
//
// Without MODELDOCK_TEST_PG_URL the PostgreSQL tests fail (RequirePostgres), so that a run that
// was meant to cover PostgreSQL cannot pass without it; MODELDOCK_SKIP_PG=1 skips them instead.
#ifndef MODELDOCK_TESTS_POSTGRES_ENV_H_
#define MODELDOCK_TESTS_POSTGRES_ENV_H_

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace modeldock::testing {

inline std::string PostgresTestUrl() {
  const char* url = std::getenv("MODELDOCK_TEST_PG_URL");
  return url == nullptr ? "" : url;
}

inline bool SkipPostgres() {
  const char* skip = std::getenv("MODELDOCK_SKIP_PG");
  return skip != nullptr && std::string(skip) == "1";
}

// In SetUp: GTEST_SKIP() if MODELDOCK_SKIP_PG=1, else FAIL() without MODELDOCK_TEST_PG_URL.
#define MODELDOCK_REQUIRE_POSTGRES()                                                        \
  do {                                                                                      \
    if (::modeldock::testing::SkipPostgres()) GTEST_SKIP() << "MODELDOCK_SKIP_PG=1";        \
    if (::modeldock::testing::PostgresTestUrl().empty()) {                                  \
      FAIL() << "MODELDOCK_TEST_PG_URL is not set: run scripts/test.sh, which starts a "    \
                "PostgreSQL for the tests (scripts/postgres_test_server.sh start DIR), or " \
                "set MODELDOCK_SKIP_PG=1 to skip the PostgreSQL tests";                     \
    }                                                                                       \
  } while (0)

// A fresh schema in the test database, dropped by the destructor; url() connects with it as
// the search path, so everything a store creates lands in it.
class TestSchema {
 public:
  TestSchema() {
    static std::atomic<int> counter{0};
    name_ = "modeldock_test_" + std::to_string(getpid()) + "_" + std::to_string(counter++);
    const std::string base = PostgresTestUrl();
    url_ = base + (base.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
           name_;
    error_ = Exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE; CREATE SCHEMA " + name_);
  }
  ~TestSchema() { Exec("DROP SCHEMA IF EXISTS " + name_ + " CASCADE"); }

  const std::string& url() const { return url_; }
  const std::string& name() const { return name_; }
  // "" if the schema was created, else the server's message.
  const std::string& error() const { return error_; }

  // Runs SQL on a connection of its own (in the schema); returns the first value of the last
  // result ("" if none), or "error: ..." on failure.
  std::string Exec(const std::string& sql) const {
    PGconn* conn = PQconnectdb(url_.c_str());
    std::string out;
    if (PQstatus(conn) != CONNECTION_OK) {
      out = std::string("error: ") + PQerrorMessage(conn);
    } else {
      PQclear(PQexec(conn, "SET client_min_messages = warning"));  // no "drop cascades to"
      PGresult* result = PQexec(conn, sql.c_str());
      const ExecStatusType status = PQresultStatus(result);
      if (status == PGRES_TUPLES_OK && PQntuples(result) > 0) {
        out = PQgetvalue(result, 0, 0);
      } else if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        out = std::string("error: ") + PQresultErrorMessage(result);
      }
      PQclear(result);
    }
    PQfinish(conn);
    return out;
  }

 private:
  std::string name_;
  std::string url_;
  std::string error_;
};

}  // namespace modeldock::testing

#endif  // MODELDOCK_TESTS_POSTGRES_ENV_H_
