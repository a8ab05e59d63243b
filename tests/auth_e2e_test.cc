// API keys and roles over a real gRPC server started with keys required: every cell of the
// role x RPC matrix, ownership of models, revocation taking effect at once, health staying open.
#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <grpcpp/generic/generic_stub.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/client.h"
#include "common/datasets.h"
#include "kserve/inference.grpc.pb.h"
#include "server/authorization.h"
#include "tests/test_server.h"

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kTops[] = "demo/fmnist-tops-cnn";

v1::ModelSpec TopsSpec(const std::string& name) {
  v1::ModelSpec spec = SpecFromSidecar(AssetPath(std::string(kTops) + ".json"));
  spec.set_name(name);
  return spec;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    server_ = std::make_unique<InProcessServer>((fs::path(temp_.path()) / "data").string());
    server_->set_require_api_keys(true);
    ASSERT_TRUE(server_->Start());
    dock::Dock* dock = server_->dock();
    for (auto [who, role] : {std::pair{"admin", dock::ApiKeyRole::kAdmin},
                             {"provider", dock::ApiKeyRole::kProvider},
                             {"other_provider", dock::ApiKeyRole::kProvider},
                             {"consumer", dock::ApiKeyRole::kConsumer},
                             {"revoked", dock::ApiKeyRole::kConsumer}}) {
      auto key = dock->CreateApiKey(role, who);
      ASSERT_TRUE(key.ok()) << key.status();
      secrets_[who] = key->secret;
      ids_[who] = key->info.id;
    }
    ASSERT_TRUE(dock->RevokeApiKey(ids_["revoked"]).ok());
    secrets_["none"] = "";
    secrets_["garbage"] = "mdk_000000000000_" + std::string(64, 'a');
    // A model owned by "provider".
    ASSERT_TRUE(As("provider").Register(AssetPath(std::string(kTops) + ".pt"),
                                        TopsSpec("owned")).ok());
    ASSERT_TRUE(As("provider").Watch("owned").ok());
    datasets::LoadOptions load;
    load.labels_path = AssetPath("demo/query_tops/query-labels-idx1-ubyte");
    auto query = datasets::LoadIdx(AssetPath("demo/query_tops/query-images-idx3-ubyte"), load);
    ASSERT_TRUE(query.ok()) << query.status();
    query_ = std::move(*query);
  }

  client::Client As(const std::string& who) {
    client::ClientOptions options;
    options.address = server_->address();
    options.timeout = absl::Seconds(120);
    options.api_key = secrets_.at(who);
    return client::Client(options);
  }

  // The status code of each call as `who`.
  std::map<std::string, absl::StatusCode> Calls(const std::string& who) {
    client::Client c = As(who);
    std::map<std::string, absl::StatusCode> codes;
    codes["GetModel"] = c.Get("owned").status().code();
    codes["ListModels"] = c.List(v1::ListModelsRequest()).status().code();
    codes["ListNearestModels"] = c.Nearest("owned", 5).status().code();
    codes["WatchModel"] = c.Watch("owned").status().code();
    v1::RecommendHeader options;
    options.set_metric(v1::METRIC_NONE);  // stage 1 only: fast
    codes["Recommend"] = c.Recommend(query_, options).status().code();
    codes["RegisterModel"] =
        c.Register(AssetPath(std::string(kTops) + ".pt"), TopsSpec("by-" + who)).status().code();
    // Past the key check, an unreachable remote server is UNAVAILABLE (nothing listens on :1).
    v1::ModelSpec remote = TopsSpec("remote-by-" + who);
    remote.mutable_remote()->set_endpoint("127.0.0.1:1");
    remote.mutable_remote()->set_model("tops");
    codes["RegisterRemoteModel"] = c.RegisterRemote(remote).status().code();
    codes["ListApiKeys"] = c.ListApiKeys().status().code();
    codes["CreateApiKey"] = c.CreateApiKey(v1::API_KEY_ROLE_CONSUMER, "x").status().code();
    codes["RevokeApiKey"] = c.RevokeApiKey("no-such-key").code();
    v1::Outcome outcome;
    outcome.set_model("owned");
    outcome.set_accuracy(0.8);
    codes["ReportOutcome"] = c.ReportOutcome(query_, v1::TASK_KIND_IMAGE_CLASSIFICATION, {outcome},
                                             v1::OUTCOME_SOURCE_FINETUNE)
                                 .status()
                                 .code();
    codes["ListRecords"] = c.ListRecords("", 10).status().code();
    codes["TrainAlignment"] = c.TrainAlignment(/*wait=*/false).status().code();
    codes["ListAlignments"] = c.ListAlignments().status().code();
    codes["UseAlignment"] = c.UseAlignment(0).code();
    v1::UpdateModelRequest update;
    update.set_model("owned");
    update.set_description("by " + who);
    codes["UpdateModel"] = c.Update(update).status().code();
    codes["ListAuditLog"] = c.AuditLog(10).status().code();
    codes["Scrub"] = c.Scrub(/*wait=*/false).status().code();
    return codes;
  }

  TempDir temp_;
  std::unique_ptr<InProcessServer> server_;
  std::map<std::string, std::string> secrets_, ids_;
  Dataset query_;
};

TEST_F(AuthTest, EveryRoleGetsExactlyItsCalls) {
  using C = absl::StatusCode;
  const C ok = C::kOk, denied = C::kPermissionDenied, unauth = C::kUnauthenticated;
  // Keys managed by an admin; RevokeApiKey of an unknown id is NOT_FOUND once allowed.
  const std::map<std::string, std::map<std::string, C>> expected = {
      {"admin", {{"GetModel", ok}, {"ListModels", ok}, {"ListNearestModels", ok},
                 {"WatchModel", ok}, {"Recommend", ok},
                 {"RegisterModel", ok}, {"RegisterRemoteModel", C::kUnavailable},
                 {"ListApiKeys", ok}, {"CreateApiKey", ok},
                 {"RevokeApiKey", C::kNotFound}, {"ReportOutcome", ok}, {"ListRecords", ok},
                 {"TrainAlignment", ok}, {"ListAlignments", ok}, {"UseAlignment", ok},
                 {"UpdateModel", ok}, {"ListAuditLog", ok}, {"Scrub", ok}}},
      {"provider", {{"GetModel", ok}, {"ListModels", ok}, {"ListNearestModels", ok},
                    {"WatchModel", ok}, {"Recommend", ok},
                    {"RegisterModel", ok}, {"RegisterRemoteModel", C::kUnavailable},
                    {"ListApiKeys", denied}, {"CreateApiKey", denied},
                    {"RevokeApiKey", denied}, {"ReportOutcome", ok}, {"ListRecords", ok},
                    {"TrainAlignment", denied}, {"ListAlignments", ok},
                    {"UseAlignment", denied}, {"UpdateModel", ok}, {"ListAuditLog", denied},
                    {"Scrub", denied}}},
      {"consumer", {{"GetModel", ok}, {"ListModels", ok}, {"ListNearestModels", ok},
                    {"WatchModel", ok}, {"Recommend", ok},
                    {"RegisterModel", denied}, {"RegisterRemoteModel", denied},
                    {"ListApiKeys", denied},
                    {"CreateApiKey", denied}, {"RevokeApiKey", denied}, {"ReportOutcome", ok},
                    {"ListRecords", ok}, {"TrainAlignment", denied}, {"ListAlignments", ok},
                    {"UseAlignment", denied}, {"UpdateModel", denied},
                    {"ListAuditLog", denied}, {"Scrub", denied}}},
  };
  for (const auto& [who, calls] : expected) {
    std::map<std::string, C> got = Calls(who);
    for (const auto& [call, code] : calls) EXPECT_EQ(got[call], code) << who << " " << call;
  }
  for (const char* who : {"none", "garbage", "revoked"}) {
    for (const auto& [call, code] : Calls(who)) EXPECT_EQ(code, unauth) << who << " " << call;
  }
  // Messages say what is missing.
  auto consumer_register =
      As("consumer").Register(AssetPath(std::string(kTops) + ".pt"), TopsSpec("nope"));
  EXPECT_THAT(consumer_register.status().message(), HasSubstr("needs the provider role"));
  EXPECT_THAT(As("none").Get("owned").status().message(), HasSubstr("requires an API key"));
  // Health stays open.
  auto health = As("none").Health();
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
}

TEST_F(AuthTest, ProvidersDeleteOnlyTheirOwnModelsAndAdminsAny) {
  auto owned = As("consumer").Get("owned");
  ASSERT_TRUE(owned.ok());
  EXPECT_EQ(owned->owner_key_id(), ids_["provider"]);
  EXPECT_EQ(As("consumer").Delete("owned").status().code(), absl::StatusCode::kPermissionDenied);
  auto other = As("other_provider").Delete("owned");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(other.status().message(), HasSubstr("deletes only its own"));
  EXPECT_TRUE(As("provider").Delete("owned").ok());
  ASSERT_TRUE(As("other_provider").Register(AssetPath(std::string(kTops) + ".pt"),
                                            TopsSpec("theirs")).ok());
  EXPECT_TRUE(As("admin").Delete("theirs").ok());
  // Updates follow the same rule, and the audit log names who did what.
  ASSERT_TRUE(As("other_provider").Register(AssetPath(std::string(kTops) + ".pt"),
                                            TopsSpec("mine")).ok());
  ASSERT_TRUE(As("other_provider").Watch("mine").ok());  // updates wait for READY
  v1::UpdateModelRequest update;
  update.set_model("mine");
  update.set_license("MIT");
  EXPECT_EQ(As("provider").Update(update).status().code(), absl::StatusCode::kPermissionDenied);
  auto updated = As("other_provider").Update(update);
  ASSERT_TRUE(updated.ok()) << updated.status();
  EXPECT_EQ(updated->spec().license(), "MIT");
  auto log = As("admin").AuditLog(100);
  ASSERT_TRUE(log.ok()) << log.status();
  bool saw_update = false, saw_delete = false;
  for (const v1::AuditEntry& e : log->entries()) {
    if (e.action() == "update" && e.actor() == ids_["other_provider"]) saw_update = true;
    if (e.action() == "delete" && e.actor() == ids_["provider"]) saw_delete = true;
  }
  EXPECT_TRUE(saw_update);
  EXPECT_TRUE(saw_delete);
}

TEST_F(AuthTest, RevocationTakesEffectAtOnce) {
  auto created = As("admin").CreateApiKey(v1::API_KEY_ROLE_CONSUMER, "temp");
  ASSERT_TRUE(created.ok()) << created.status();
  secrets_["temp"] = created->secret();
  EXPECT_TRUE(As("temp").Get("owned").ok());
  auto listed = As("admin").ListApiKeys();
  ASSERT_TRUE(listed.ok());
  bool found = false;
  for (const v1::ApiKey& key : listed->keys()) {
    found |= key.id() == created->key().id() && key.role() == v1::API_KEY_ROLE_CONSUMER;
    EXPECT_EQ(key.ByteSizeLong() > 0, true);
  }
  EXPECT_TRUE(found);
  EXPECT_TRUE(As("admin").RevokeApiKey(created->key().id()).ok());
  EXPECT_EQ(As("temp").Get("owned").status().code(), absl::StatusCode::kUnauthenticated);
  // The secret's last character changed: the same id with a wrong secret is refused.
  std::string forged = secrets_["consumer"];
  forged.back() = forged.back() == 'a' ? 'b' : 'a';
  secrets_["forged"] = forged;
  EXPECT_EQ(As("forged").Get("owned").status().code(), absl::StatusCode::kUnauthenticated);
}

// The method -> role table names every RPC of both services, and nothing else: a new RPC
// cannot be added without deciding who may call it.
TEST(MethodRulesTest, NameEveryMethodOfBothServicesAndNothingElse) {
  std::set<std::string> methods;
  for (const char* name : {v1::ModelDockService::service_full_name(),
                           inference::GRPCInferenceService::service_full_name()}) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string method = "/" + service->full_name() + "/" + service->method(i)->name();
      methods.insert(method);
      const server::MethodRule* rule = server::FindMethodRule(method);
      ASSERT_NE(rule, nullptr) << method << " has no row in server/authorization.cc";
      EXPECT_EQ(rule->method, method);
    }
  }
  EXPECT_EQ(methods.size(), 26u);  // 20 modeldock.v1 + 6 KServe v2
  EXPECT_EQ(server::MethodRules().size(), methods.size());
  for (const server::MethodRule& rule : server::MethodRules()) {
    EXPECT_EQ(methods.count(rule.method), 1u) << rule.method << " is no method of either service";
  }
  EXPECT_EQ(server::FindMethodRule("/modeldock.v1.ModelDockService/NoSuchCall"), nullptr);
}

// One call of `method` with an empty message (valid for every request type) and the given key.
grpc::Status CallEmpty(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                       const std::string& key) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, 30);
  if (!key.empty()) context.AddMetadata("authorization", "Bearer " + key);
  grpc::Slice nothing("");
  grpc::ByteBuffer request(&nothing, 1);
  grpc::CompletionQueue queue;
  auto call = stub.PrepareUnaryCall(&context, method, request, &queue);
  call->StartCall();
  grpc::ByteBuffer reply;
  grpc::Status status;
  call->Finish(&reply, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  EXPECT_TRUE(queue.Next(&tag, &ok));
  queue.Shutdown();
  while (queue.Next(&tag, &ok)) {
  }
  return status;
}

// Every row of the table, called on a server with both services: the guarded ones refuse a
// caller without a key (with a request id in the message) and a consumer key only where the
// row asks for more; the open ones answer anybody.
TEST_F(AuthTest, EveryMethodOfTheTableIsGuardedByItsRow) {
  auto both = server::GrpcServer::Start(server_->dock(), "127.0.0.1:0",
                                        server::kDefaultMaxRpcThreads, {}, nullptr,
                                        /*require_api_keys=*/true, "", /*serve_kserve=*/true);
  ASSERT_TRUE(both.ok()) << both.status();
  auto channel = grpc::CreateChannel((*both)->address(), grpc::InsecureChannelCredentials());
  for (const server::MethodRule& rule : server::MethodRules()) {
    const grpc::Status anonymous = CallEmpty(channel, rule.method, "");
    if (rule.open) {
      EXPECT_TRUE(anonymous.ok()) << rule.method << ": " << anonymous.error_message();
      continue;
    }
    EXPECT_EQ(anonymous.error_code(), grpc::StatusCode::UNAUTHENTICATED) << rule.method;
    EXPECT_THAT(anonymous.error_message(), HasSubstr("(request r-")) << rule.method;
    if (rule.role == dock::ApiKeyRole::kConsumer) continue;
    const grpc::Status consumer = CallEmpty(channel, rule.method, secrets_["consumer"]);
    EXPECT_EQ(consumer.error_code(), grpc::StatusCode::PERMISSION_DENIED) << rule.method;
    EXPECT_THAT(consumer.error_message(),
                HasSubstr(std::string(rule.what) + " needs the " +
                          dock::ApiKeyRoleName(rule.role) + " role"));
  }
  (*both)->Shutdown(absl::Seconds(5));
}

}  // namespace
}  // namespace modeldock::testing
