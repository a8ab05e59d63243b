// Internal: runs remote models on their KServe v2 servers (remote/kserve_client.h), one client
// per endpoint with the credentials the options name. Owns the clients; `mutex_` guards the map
// of clients (each client is thread-safe itself).
#ifndef MODELDOCK_DOCK_KSERVE_RUNNER_H_
#define MODELDOCK_DOCK_KSERVE_RUNNER_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "dock/model_runner.h"
#include "dock/types.h"
#include "remote/credentials.h"
#include "remote/kserve_client.h"

namespace modeldock::dock {

class KServeRunner : public ModelRunner {
 public:
  // Reads the remote TLS files and the credentials file of the options (INVALID_ARGUMENT naming
  // an unreadable one). Connects to no server yet.
  static absl::StatusOr<std::unique_ptr<KServeRunner>> Create(const DockOptions& options);

  // The model's declared input shape is what the server sees (images are adapted first); its
  // outputs must have the admitted width and be finite (FAILED_PRECONDITION otherwise). A
  // remote model exports no embed(x) or layers: features and layers stay empty.
  absl::StatusOr<RunOutputs> Run(const ModelRecord& record, const Tensor& samples,
                                 const RunRequest& request) override;
  bool IsLoaded(const ModelRecord&) override { return false; }  // unknown: the server decides
  void Forget(const ModelRecord&) override {}                    // nothing is kept here

  // The client of `endpoint` (created on first use), for admission of a remote registration.
  remote::KServeClient* Client(const std::string& endpoint);

 private:
  explicit KServeRunner(remote::RemoteCredentials credentials)
      : credentials_(std::move(credentials)) {}

  const remote::RemoteCredentials credentials_;
  std::mutex mutex_;  // guards clients_
  std::map<std::string, std::unique_ptr<remote::KServeClient>> clients_;  // by endpoint
};

}  // namespace modeldock::dock

#endif  // MODELDOCK_DOCK_KSERVE_RUNNER_H_
