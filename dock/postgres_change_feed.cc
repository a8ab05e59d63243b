// PostgresMetadataStore's change feed: LISTEN on a connection of its own.
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "dock/postgres_connection.h"
#include "dock/postgres_store.h"
#include "spdlog/spdlog.h"

namespace modeldock::dock {
namespace {

using postgres_internal::Exec;
using postgres_internal::LogNotice;
using postgres_internal::NotifyChange;
using postgres_internal::OpenConnection;
using postgres_internal::Trimmed;

// "<change> <id>" (NotifyChange's payload); false for anything else.
bool ParseChange(const std::string& payload, ModelChangeEvent* event) {
  const size_t space = payload.find(' ');
  if (space == std::string::npos || space + 1 >= payload.size()) return false;
  const std::string name = payload.substr(0, space);
  for (ModelChange change : {ModelChange::kReady, ModelChange::kVectorChanged,
                             ModelChange::kDeleted, ModelChange::kRecordChanged}) {
    if (name == ModelChangeName(change)) {
      event->change = change;
      event->model_id = payload.substr(space + 1);
      return true;
    }
  }
  return false;
}

// LISTEN on a connection of its own; Wait polls its socket. A broken connection is dropped and
// opened again by the next Wait.
class PostgresChangeFeed : public ChangeFeed {
 public:
  PostgresChangeFeed(std::string conninfo, std::string url)
      : conninfo_(std::move(conninfo)), url_(std::move(url)) {}
  ~PostgresChangeFeed() override { Drop(); }

  absl::Status Connect() {
    Drop();
    conn_ = OpenConnection(conninfo_);
    if (conn_ == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
    if (PQstatus(conn_) != CONNECTION_OK) {
      const std::string message = Trimmed(PQerrorMessage(conn_));
      Drop();
      return absl::UnavailableError(
          absl::StrCat("change feed: cannot connect to PostgreSQL at ", url_, ": ", message));
    }
    PQsetNoticeProcessor(conn_, LogNotice, nullptr);
    if (absl::Status s =
            Exec(conn_, "listen",
                 absl::StrCat("LISTEN ", PostgresMetadataStore::kChangeChannel).c_str());
        !s.ok()) {
      Drop();
      return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<ModelChangeEvent>> Wait(absl::Duration timeout) override {
    if (conn_ == nullptr) {
      if (absl::Status s = Connect(); !s.ok()) return s;
      spdlog::info("change feed: listening on PostgreSQL at {} again", url_);
    }
    std::vector<ModelChangeEvent> events = Drain();
    if (!events.empty()) return events;
    pollfd pfd{PQsocket(conn_), POLLIN, 0};
    const int rc = ::poll(&pfd, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
    if (rc < 0 && errno != EINTR) {
      const std::string message = std::strerror(errno);
      Drop();
      return absl::UnavailableError(absl::StrCat("change feed: poll: ", message));
    }
    if (rc > 0 && (PQconsumeInput(conn_) == 0 || PQstatus(conn_) != CONNECTION_OK)) {
      const std::string message = Trimmed(PQerrorMessage(conn_));
      Drop();
      return absl::UnavailableError(
          absl::StrCat("change feed: lost the connection to PostgreSQL at ", url_, ": ", message));
    }
    return Drain();
  }

 private:
  std::vector<ModelChangeEvent> Drain() {
    std::vector<ModelChangeEvent> events;
    while (PGnotify* notify = PQnotifies(conn_)) {
      ModelChangeEvent event;
      const std::string payload = notify->extra != nullptr ? notify->extra : "";
      if (ParseChange(payload, &event)) {
        events.push_back(std::move(event));
      } else {
        spdlog::warn("change feed: ignoring notification '{}'", payload);
      }
      PQfreemem(notify);
    }
    return events;
  }
  void Drop() {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = nullptr;
  }

  std::string conninfo_;
  std::string url_;  // redacted
  PGconn* conn_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ChangeFeed>> PostgresMetadataStore::OpenChangeFeed() {
  auto feed = std::make_unique<PostgresChangeFeed>(conninfo_, url_);
  if (absl::Status s = feed->Connect(); !s.ok()) return s;
  return std::unique_ptr<ChangeFeed>(std::move(feed));
}
}  // namespace modeldock::dock
