#include "server/authorization.h"

#include "absl/strings/str_cat.h"
#include "server/service.h"

namespace modeldock::server {
namespace {

using dock::ApiKeyRole;

constexpr char kDock[] = "/modeldock.v1.ModelDockService/";
constexpr char kKServe[] = "/inference.GRPCInferenceService/";

// The table. A new RPC needs a row here (MethodRolesTest fails otherwise).
const MethodRule kRules[] = {
    // modeldock.v1.ModelDockService
    {"/modeldock.v1.ModelDockService/RegisterModel", false, ApiKeyRole::kProvider,
     "registering a model"},
    {"/modeldock.v1.ModelDockService/RegisterRemoteModel", false, ApiKeyRole::kProvider,
     "registering a remote model"},
    {"/modeldock.v1.ModelDockService/GetModel", false, ApiKeyRole::kConsumer, "GetModel"},
    {"/modeldock.v1.ModelDockService/ListModels", false, ApiKeyRole::kConsumer, "ListModels"},
    {"/modeldock.v1.ModelDockService/ListNearestModels", false, ApiKeyRole::kConsumer,
     "ListNearestModels"},
    // Providers delete and update only their own models (the handlers check ownership).
    {"/modeldock.v1.ModelDockService/DeleteModel", false, ApiKeyRole::kProvider,
     "deleting a model"},
    {"/modeldock.v1.ModelDockService/UpdateModel", false, ApiKeyRole::kProvider,
     "updating a model"},
    {"/modeldock.v1.ModelDockService/ListAuditLog", false, ApiKeyRole::kAdmin,
     "reading the audit log"},
    {"/modeldock.v1.ModelDockService/WatchModel", false, ApiKeyRole::kConsumer, "WatchModel"},
    {"/modeldock.v1.ModelDockService/Recommend", false, ApiKeyRole::kConsumer, "Recommend"},
    {"/modeldock.v1.ModelDockService/CreateApiKey", false, ApiKeyRole::kAdmin,
     "managing API keys"},
    {"/modeldock.v1.ModelDockService/ListApiKeys", false, ApiKeyRole::kAdmin,
     "managing API keys"},
    {"/modeldock.v1.ModelDockService/RevokeApiKey", false, ApiKeyRole::kAdmin,
     "managing API keys"},
    {"/modeldock.v1.ModelDockService/ReportOutcome", false, ApiKeyRole::kConsumer,
     "ReportOutcome"},
    {"/modeldock.v1.ModelDockService/ListRecords", false, ApiKeyRole::kConsumer, "ListRecords"},
    // Tune writes outcome records, as ReportOutcome does.
    {"/modeldock.v1.ModelDockService/Tune", false, ApiKeyRole::kConsumer, "Tune"},
    {"/modeldock.v1.ModelDockService/TrainAlignment", false, ApiKeyRole::kAdmin,
     "training the ranker"},
    {"/modeldock.v1.ModelDockService/ListAlignments", false, ApiKeyRole::kConsumer,
     "ListAlignments"},
    {"/modeldock.v1.ModelDockService/UseAlignment", false, ApiKeyRole::kAdmin,
     "choosing the serving ranker"},
    {"/modeldock.v1.ModelDockService/Scrub", false, ApiKeyRole::kAdmin, "scrubbing the store"},
    // inference.GRPCInferenceService (KServe v2): probes and server metadata stay open.
    {"/inference.GRPCInferenceService/ServerLive", true, ApiKeyRole::kConsumer, "ServerLive"},
    {"/inference.GRPCInferenceService/ServerReady", true, ApiKeyRole::kConsumer, "ServerReady"},
    {"/inference.GRPCInferenceService/ServerMetadata", true, ApiKeyRole::kConsumer,
     "ServerMetadata"},
    {"/inference.GRPCInferenceService/ModelReady", false, ApiKeyRole::kConsumer, "ModelReady"},
    {"/inference.GRPCInferenceService/ModelMetadata", false, ApiKeyRole::kConsumer,
     "ModelMetadata"},
    {"/inference.GRPCInferenceService/ModelInfer", false, ApiKeyRole::kConsumer, "ModelInfer"},
};

bool IsGuardedService(std::string_view method) {
  return method.rfind(kDock, 0) == 0 || method.rfind(kKServe, 0) == 0;
}

// Decides about each call of the two services when its metadata has arrived; forgets the
// decision when the call ends (the interceptor lives as long as the call).
class AuthorizationInterceptor : public grpc::experimental::Interceptor {
 public:
  AuthorizationInterceptor(grpc::experimental::ServerRpcInfo* info, Authorizer* authorizer)
      : info_(info), authorizer_(authorizer) {}
  ~AuthorizationInterceptor() override {
    if (decided_) authorizer_->Forget(info_->server_context());
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      authorizer_->Decide(info_->server_context(), info_->method());
      decided_ = true;
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  Authorizer* authorizer_;
  bool decided_ = false;
};

class AuthorizationInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit AuthorizationInterceptorFactory(Authorizer* authorizer) : authorizer_(authorizer) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    // Health checks and reflection are not ours to guard.
    if (!IsGuardedService(info->method())) return nullptr;
    return new AuthorizationInterceptor(info, authorizer_);
  }

 private:
  Authorizer* authorizer_;
};

}  // namespace

absl::Span<const MethodRule> MethodRules() { return kRules; }

const MethodRule* FindMethodRule(std::string_view method) {
  for (const MethodRule& rule : kRules) {
    if (method == rule.method) return &rule;
  }
  return nullptr;
}

grpc::Status CheckApiKey(dock::Dock* dock, bool require_api_keys,
                         const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
                         dock::ApiKeyRole needed, const char* what, dock::ApiKeyInfo* caller) {
  if (!require_api_keys) {
    caller->role = dock::ApiKeyRole::kAdmin;
    return grpc::Status::OK;
  }
  auto header = metadata.find("authorization");
  if (header == metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "this server requires an API key: send 'authorization: Bearer <key>' "
                        "(CLI: $MODELDOCK_API_KEY or --api-key-file)");
  }
  const std::string value(header->second.data(), header->second.size());
  if (value.rfind("Bearer ", 0) != 0) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the authorization header must be 'Bearer <key>'");
  }
  auto key = dock->Authenticate(value.substr(7));
  if (!key.ok()) return ToGrpcStatus(key.status());
  if (static_cast<int>(key->role) < static_cast<int>(needed)) {
    return grpc::Status(
        grpc::StatusCode::PERMISSION_DENIED,
        absl::StrCat(what, " needs the ", dock::ApiKeyRoleName(needed), " role",
                     needed == dock::ApiKeyRole::kAdmin ? "" : " (or admin)", "; key ", key->id,
                     " ('", key->name, "') is a ", dock::ApiKeyRoleName(key->role), " key"));
  }
  *caller = *key;
  return grpc::Status::OK;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Authorizer::InterceptorFactory() {
  return std::make_unique<AuthorizationInterceptorFactory>(this);
}

void Authorizer::Decide(grpc::ServerContextBase* context, const char* method) {
  const MethodRule* rule = FindMethodRule(method);
  if (rule != nullptr && rule->open) return;  // no key, no request id
  Decision decision;
  decision.request_id = ChooseRequestId(context->client_metadata());
  context->AddTrailingMetadata(kRequestIdHeader, decision.request_id);
  if (rule == nullptr) {
    decision.status = grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                                   absl::StrCat(method, " has no role in the server's table"));
  } else {
    decision.status = CheckApiKey(dock_, require_api_keys_, context->client_metadata(),
                                  rule->role, rule->what, &decision.caller);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  decisions_[context] = std::move(decision);
}

void Authorizer::Forget(const grpc::ServerContextBase* context) {
  std::lock_guard<std::mutex> lock(mutex_);
  decisions_.erase(context);
}

Authorizer::Decision Authorizer::DecisionFor(const grpc::ServerContextBase* context) const {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = decisions_.find(context);
  if (it != decisions_.end()) return it->second;
  Decision none;
  none.status = grpc::Status(grpc::StatusCode::INTERNAL,
                             "no authorization decision for this call (server misconfigured)");
  return none;
}

}  // namespace modeldock::server
