// The /v1 REST API: each route decodes its query string or body, makes the modeldock.v1 call
// the CLI would make, and answers with the CLI's --json document.
#include <exception>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/query_datasets.h"
#include "common/datasets.h"
#include "http/routes.h"
#include "http/spool.h"

namespace modeldock::http {
namespace {

absl::Status BadRequest(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

// A JSON body or form field; INVALID_ARGUMENT naming `what` when it is not a JSON object.
absl::StatusOr<json> ParseObject(const std::string& text, const std::string& what) {
  try {
    json value = json::parse(text);
    if (value.is_object()) return value;
  } catch (const std::exception& e) {
    return BadRequest(absl::StrCat(what, " is not valid JSON: ", e.what()));
  }
  return BadRequest(absl::StrCat(what, " must be a JSON object"));
}

bool ParseBool(const std::string& text) { return text == "true" || text == "1"; }

absl::StatusOr<v1::ListModelsRequest> ListRequestOf(const httplib::Request& request) {
  v1::ListModelsRequest out;
  for (const auto& [key, value] : request.params) {
    if (key == "name_contains") {
      out.set_name_contains(value);
    } else if (key == "tag") {
      out.set_tag(value);
    } else if (key == "page_token") {
      out.set_page_token(value);
    } else if (key == "task") {
      auto task = client::ParseTask(value);
      if (!task) return BadRequest("task must be image, tabular, text or audio");
      out.set_task(*task);
    } else if (key == "state") {
      auto state = client::ParseState(value);
      if (!state) return BadRequest("state must be PENDING, PROBING, READY or FAILED");
      out.set_state(*state);
    } else if (key == "input_shape") {
      auto shape = client::ParseShape(value);
      if (!shape) return BadRequest("input_shape must look like 1,28,28");
      for (int64_t d : *shape) out.add_input_shape(d);
    } else if (key == "page_size") {
      int size = 0;
      if (!absl::SimpleAtoi(value, &size)) return BadRequest("page_size must be an integer");
      out.set_page_size(size);
    } else {
      return BadRequest(absl::StrCat("unknown query parameter '", key, "'"));
    }
  }
  return out;
}

absl::Status ListModels(Call& call, const httplib::Request& request,
                        httplib::Response& response) {
  auto list_request = ListRequestOf(request);
  if (!list_request.ok()) return list_request.status();
  auto page = call.client->List(*list_request);
  if (!page.ok()) return page.status();
  json models = json::array();
  for (const v1::Model& model : page->models()) models.push_back(client::ModelToJson(model));
  SendJson(response, 200,
           json{{"models", models},
                {"total_size", page->total_size()},
                {"next_page_token", page->next_page_token()}});
  return absl::OkStatus();
}

absl::Status GetModel(Call& call, const httplib::Request& request, httplib::Response& response) {
  auto model = call.client->Get(request.matches[1].str());
  if (!model.ok()) return model.status();
  SendJson(response, 200, json{{"model", client::ModelToJson(*model)}});
  return absl::OkStatus();
}

// ?k=N (1..100; default 5): the model's nearest models in its knowledge space.
absl::Status NearestModels(Call& call, const httplib::Request& request,
                           httplib::Response& response) {
  int k = 0;
  for (const auto& [key, value] : request.params) {
    if (key != "k") return BadRequest(absl::StrCat("unknown query parameter '", key, "'"));
    if (!absl::SimpleAtoi(value, &k) || k < 1 || k > 100) {
      return BadRequest("k must be an integer from 1 to 100");
    }
  }
  const std::string model = request.matches[1].str();
  auto nearest = call.client->Nearest(model, k);
  if (!nearest.ok()) return nearest.status();
  SendJson(response, 200, client::NearestToJson(model, *nearest));
  return absl::OkStatus();
}

absl::Status DeleteModel(Call& call, const httplib::Request& request,
                         httplib::Response& response) {
  auto ids = call.client->Delete(request.matches[1].str(),
                                 ParseBool(request.get_param_value("all_versions")));
  if (!ids.ok()) return ids.status();
  SendJson(response, 200, json{{"id", ids->front()}, {"ids", *ids}});
  return absl::OkStatus();
}

// Body: {"description": ..., "license": ..., "tags": [...]} (absent keys stay as they are).
absl::Status UpdateModel(Call& call, const httplib::Request& request,
                         httplib::Response& response) {
  auto body = ParseObject(request.body, "the body");
  if (!body.ok()) return body.status();
  v1::UpdateModelRequest update;
  update.set_model(request.matches[1].str());
  try {
    for (const auto& [key, value] : body->items()) {
      if (key == "description") {
        update.set_description(value.get<std::string>());
      } else if (key == "license") {
        update.set_license(value.get<std::string>());
      } else if (key == "tags") {
        update.set_replace_tags(true);
        for (const auto& tag : value.get<std::vector<std::string>>()) update.add_tags(tag);
      } else {
        return BadRequest(absl::StrCat("unknown key '", key,
                                       "' (description, license and tags can change)"));
      }
    }
  } catch (const std::exception& e) {
    return BadRequest(absl::StrCat("the body: ", e.what()));
  }
  auto model = call.client->Update(update);
  if (!model.ok()) return model.status();
  SendJson(response, 200, json{{"model", client::ModelToJson(*model)}});
  return absl::OkStatus();
}

// A model that stays on a KServe v2 server: `spec` (from the metadata) plus meta["remote"]
// ({"endpoint", "model", "version"}, as the CLI's --remote, --remote-model, --remote-version).
absl::Status RegisterRemote(const json& meta, v1::ModelSpec spec, Call& call,
                            httplib::Response& response) {
  if (!meta.contains("remote") || !meta["remote"].is_object()) {
    return BadRequest("\"remote\" must be an object {\"endpoint\": \"HOST:PORT\", \"model\": NAME, "
                      "\"version\": V}");
  }
  try {
    const json& remote = meta["remote"];
    for (const auto& [key, value] : remote.items()) {
      if (key != "endpoint" && key != "model" && key != "version") {
        return BadRequest(absl::StrCat("unknown key 'remote.", key,
                                       "' (endpoint, model and version are read)"));
      }
    }
    spec.mutable_remote()->set_endpoint(remote.value("endpoint", ""));
    spec.mutable_remote()->set_model(remote.value("model", ""));
    spec.mutable_remote()->set_version(remote.value("version", ""));
  } catch (const std::exception& e) {
    return BadRequest(absl::StrCat("remote: ", e.what()));
  }
  auto model = call.client->RegisterRemote(spec);
  if (!model.ok()) return model.status();
  SendJson(response, 200, json{{"model", client::ModelToJson(*model)}, {"deduplicated", false}});
  return absl::OkStatus();
}

// JSON: the metadata the CLI's --metadata reads plus "remote" (the CLI's `register --remote`).
absl::Status RegisterRemoteModel(Call& call, const httplib::Request& request,
                                 httplib::Response& response) {
  auto meta = ParseObject(request.body, "the body");
  if (!meta.ok()) return meta.status();
  v1::ModelSpec spec;
  if (absl::Status s = client::SpecFromMetadata(*meta, "the body", &spec); !s.ok()) return s;
  return RegisterRemote(*meta, std::move(spec), call, response);
}

// Multipart: "metadata" (the JSON of the CLI's --metadata) and "model" (the TorchScript file),
// spooled to disk and uploaded in chunks; or "metadata" alone with a "remote" object
// ({"endpoint", "model", "version"}) for a model that stays on a KServe v2 server.
absl::Status RegisterModel(const RouteContext& context, Call& call,
                           const httplib::Request& request, httplib::Response& response,
                           const httplib::ContentReader& reader) {
  Spool spool(context.options.spool_dir, {"model"});
  if (absl::Status s = spool.Read(request, reader); !s.ok()) return s;
  if (!spool.Has("metadata")) return BadRequest("the part 'metadata' (JSON) is required");
  auto meta = ParseObject(spool.Text("metadata"), "the part 'metadata'");
  if (!meta.ok()) return meta.status();
  v1::ModelSpec spec;
  if (absl::Status s = client::SpecFromMetadata(*meta, "metadata", &spec); !s.ok()) return s;
  if (meta->contains("remote")) {
    if (spool.Has("model")) return BadRequest("send a 'model' part or a remote model, not both");
    return RegisterRemote(*meta, std::move(spec), call, response);
  }
  if (!spool.Has("model")) return BadRequest("the part 'model' (a TorchScript file) is required");
  auto registered = call.client->Register(spool.Path("model"), spec);
  if (!registered.ok()) return registered.status();
  SendJson(response, 200,
           json{{"model", client::ModelToJson(registered->model())},
                {"deduplicated", registered->deduplicated()}});
  return absl::OkStatus();
}

// The "options" part of a recommendation: the CLI's recommend flags as JSON keys.
absl::Status ApplyRecommendOptions(const json& options, datasets::LoadOptions* load,
                                   v1::RecommendHeader* header) {
  try {
    for (const auto& [key, value] : options.items()) {
      if (key == "top") {
        header->set_top_k(value.get<int>());
      } else if (key == "candidates") {
        header->set_num_candidates(value.get<int>());
      } else if (key == "metric") {
        auto metric = client::ParseMetric(value.get<std::string>());
        if (!metric) return BadRequest("options.metric: unknown metric (see modeldock recommend --help)");
        header->set_metric(*metric);
      } else if (key == "brute_force") {
        header->set_brute_force(value.get<bool>());
      } else if (key == "all_versions") {
        header->set_all_versions(value.get<bool>());
      } else if (key == "budget_ms") {
        header->set_latency_budget_ms(value.get<double>());
      } else if (key == "task") {
        auto task = client::ParseTask(value.get<std::string>());
        if (!task) return BadRequest("options.task must be image, tabular, text or audio");
        header->set_task(*task);
      } else if (key == "max_samples") {
        load->max_samples = value.get<int64_t>();
      } else if (key == "image_size") {
        auto size = value.get<std::vector<int64_t>>();
        if (size.size() != 2 || size[0] <= 0 || size[1] <= 0) {
          return BadRequest("options.image_size must be [H, W]");
        }
        load->image_height = size[0];
        load->image_width = size[1];
      } else {
        return BadRequest(absl::StrCat("unknown option '", key, "'"));
      }
    }
  } catch (const std::exception& e) {
    return BadRequest(absl::StrCat("the part 'options': ", e.what()));
  }
  return absl::OkStatus();
}

// A query dataset as the CLI's recommend loads it: text by options.task or by its form (CSV/TSV
// with a text column, JSON Lines); audio by options.task "audio" (NPY [N, T] with a labels part,
// or NPZ: 16 kHz mono clips); else an image or tabular file.
absl::StatusOr<Dataset> LoadQuery(const std::string& path, const datasets::LoadOptions& load,
                                  v1::TaskKind task) {
  if (task == v1::TASK_KIND_AUDIO_CLASSIFICATION) {
    return client::LoadAudioQuery(path, load.labels_path, 0, load.max_samples);
  }
  const bool text = client::IsTextDataset(
      path, task == v1::TASK_KIND_UNSPECIFIED
                ? ""
                : (task == v1::TASK_KIND_TEXT_CLASSIFICATION ? "text" : "image"));
  if (text) return client::LoadTextQuery(path, load.labels_path, load.max_samples);
  return datasets::LoadDataset(path, load);
}

// The multipart parts of a dataset call ("dataset", optional "labels", JSON parts) spooled to
// disk; INVALID_ARGUMENT without a "dataset" part.
absl::Status SpoolDatasetCall(const httplib::Request& request,
                              const httplib::ContentReader& reader, Spool* spool) {
  if (absl::Status s = spool->Read(request, reader); !s.ok()) return s;
  if (!spool->Has("dataset")) return BadRequest("the part 'dataset' (a dataset file) is required");
  return absl::OkStatus();
}

// The spooled "dataset" part loaded as a query (INVALID_ARGUMENT saying why it cannot be).
absl::StatusOr<Dataset> LoadSpooledQuery(const Spool& spool, const datasets::LoadOptions& load,
                                         v1::TaskKind task) {
  auto dataset = LoadQuery(spool.Path("dataset"), load, task);
  if (!dataset.ok()) {
    return BadRequest(absl::StrCat("cannot load dataset: ", dataset.status().message()));
  }
  return dataset;
}

// Multipart: "dataset" (any file the CLI's recommend reads), optional "labels" (a labels file
// as --labels) and "options" (JSON such as {"top": 5, "metric": "fusion"}).
absl::Status Recommend(const RouteContext& context, Call& call, const httplib::Request& request,
                       httplib::Response& response, const httplib::ContentReader& reader) {
  Spool spool(context.options.spool_dir, {"dataset", "labels"});
  if (absl::Status s = SpoolDatasetCall(request, reader, &spool); !s.ok()) return s;
  datasets::LoadOptions load;
  load.labels_path = spool.Path("labels");
  v1::RecommendHeader header;
  header.set_top_k(5);
  header.set_metric(v1::METRIC_FUSION);
  if (spool.Has("options")) {
    auto options = ParseObject(spool.Text("options"), "the part 'options'");
    if (!options.ok()) return options.status();
    if (absl::Status s = ApplyRecommendOptions(*options, &load, &header); !s.ok()) return s;
  }
  auto dataset = LoadSpooledQuery(spool, load, header.task());
  if (!dataset.ok()) return dataset.status();
  auto result = call.client->Recommend(*dataset, header);
  if (!result.ok()) return result.status();
  SendJson(response, 200, client::RecommendToJson(*result, dataset->notes));
  return absl::OkStatus();
}

// Multipart: "dataset" and "labels" as for a recommendation, and optional "options": JSON with
// the CLI's tune flags ({"top": 2, "budget_s": 120, "seed": 0, "max_epochs", "patience",
// "learning_rate"}) and the dataset's ("task", "max_samples", "image_size"). Answers when the tune
// ends (no progress over REST: the gRPC call and `modeldock tune` stream it) with the CLI's
// --json document plus the winner's tuned TorchScript file as "model_base64".
absl::Status Tune(const RouteContext& context, Call& call, const httplib::Request& request,
                  httplib::Response& response, const httplib::ContentReader& reader) {
  Spool spool(context.options.spool_dir, {"dataset", "labels"});
  if (absl::Status s = SpoolDatasetCall(request, reader, &spool); !s.ok()) return s;
  datasets::LoadOptions load;
  load.labels_path = spool.Path("labels");
  v1::TuneHeader header;
  header.set_top_k(2);
  if (spool.Has("options")) {
    auto options = ParseObject(spool.Text("options"), "the part 'options'");
    if (!options.ok()) return options.status();
    json dataset_options = json::object();
    try {
      for (const auto& [key, value] : options->items()) {
        if (key == "top") {
          header.set_top_k(value.get<int>());
        } else if (key == "budget_s") {
          header.set_budget_seconds(value.get<double>());
        } else if (key == "seed") {
          header.set_seed(value.get<uint64_t>());
        } else if (key == "max_epochs") {
          header.set_max_epochs(value.get<int>());
        } else if (key == "patience") {
          header.set_patience(value.get<int>());
        } else if (key == "learning_rate") {
          header.set_learning_rate(value.get<double>());
        } else {
          dataset_options[key] = value;  // task, max_samples, image_size; others refused there
        }
      }
    } catch (const std::exception& e) {
      return BadRequest(absl::StrCat("the part 'options': ", e.what()));
    }
    if (absl::Status s = ApplyRecommendOptions(dataset_options, &load, header.mutable_dataset());
        !s.ok()) {
      return s;
    }
  }
  auto dataset = LoadSpooledQuery(spool, load, header.dataset().task());
  if (!dataset.ok()) return dataset.status();
  auto tuned = call.client->Tune(*dataset, header, nullptr);
  if (!tuned.ok()) return tuned.status();
  json document = client::TuneToJson(tuned->result);
  document["model_base64"] = absl::Base64Escape(tuned->model);
  SendJson(response, 200, document);
  return absl::OkStatus();
}

// Multipart: "dataset" and optional "labels" as for a recommendation, and "outcomes": JSON
// {"outcomes": [{"model", "accuracy"}], "source": "finetune"|"import", "task", "max_samples"}.
absl::Status Report(const RouteContext& context, Call& call, const httplib::Request& request,
                    httplib::Response& response, const httplib::ContentReader& reader) {
  Spool spool(context.options.spool_dir, {"dataset", "labels"});
  if (absl::Status s = SpoolDatasetCall(request, reader, &spool); !s.ok()) return s;
  auto body = ParseObject(spool.Text("outcomes"), "the part 'outcomes'");
  if (!body.ok()) return body.status();
  datasets::LoadOptions load;
  load.labels_path = spool.Path("labels");
  std::vector<v1::Outcome> outcomes;
  v1::TaskKind task = v1::TASK_KIND_UNSPECIFIED;  // the server infers it from the shape
  v1::OutcomeSource source = v1::OUTCOME_SOURCE_FINETUNE;
  try {
    for (const json& item : body->value("outcomes", json::array())) {
      v1::Outcome outcome;
      outcome.set_model(item.at("model").get<std::string>());
      outcome.set_accuracy(item.at("accuracy").get<double>());
      outcomes.push_back(std::move(outcome));
    }
    const std::string source_name = body->value("source", "finetune");
    if (source_name != "finetune" && source_name != "import") {
      return BadRequest("outcomes.source must be finetune or import");
    }
    if (source_name == "import") source = v1::OUTCOME_SOURCE_IMPORT;
    if (body->contains("task")) {
      auto parsed = client::ParseTask((*body)["task"].get<std::string>());
      if (!parsed) return BadRequest("outcomes.task must be image, tabular, text or audio");
      task = *parsed;
    }
    load.max_samples = body->value("max_samples", int64_t{0});
  } catch (const std::exception& e) {
    return BadRequest(absl::StrCat("the part 'outcomes': ", e.what()));
  }
  if (outcomes.empty()) return BadRequest("outcomes.outcomes lists no {model, accuracy}");
  auto dataset = LoadSpooledQuery(spool, load, task);
  if (!dataset.ok()) return dataset.status();
  auto result = call.client->ReportOutcome(*dataset, task, outcomes, source);
  if (!result.ok()) return result.status();
  SendJson(response, 200, client::ReportToJson(*result, dataset->notes));
  return absl::OkStatus();
}

// Server-sent events: one "state" event per state change of the model until READY or FAILED.
absl::Status WatchModel(Call& call, const httplib::Request& request,
                        httplib::Response& response) {
  const std::string model = request.matches[1].str();
  auto first = call.client->Get(model);  // an unknown model is a 404, not an empty stream
  if (!first.ok()) return first.status();
  std::shared_ptr<client::Client> watcher = std::move(call.client);
  const std::string request_id = call.request_id;
  response.set_header("Cache-Control", "no-cache");
  response.set_chunked_content_provider(
      "text/event-stream", [watcher, model, request_id](size_t, httplib::DataSink& sink) {
        auto send = [&sink](const std::string& event, const json& data) {
          const std::string text = absl::StrCat("event: ", event, "\ndata: ", data.dump(), "\n\n");
          return sink.write(text.data(), text.size());
        };
        auto last = watcher->Watch(model, [&](const v1::Model& update) {
          send("state", json{{"model", client::ModelToJson(update)}});
        });
        if (!last.ok()) {
          send("error", json{{"code", absl::StatusCodeToString(last.status().code())},
                             {"message", std::string(last.status().message())},
                             {"request_id", request_id}});
        }
        sink.done();
        return true;
      });
  return absl::OkStatus();
}

// API keys (admin): list, create ({"role", "name"}; the secret is in this answer only), revoke.
absl::Status ListKeys(Call& call, const httplib::Request&, httplib::Response& response) {
  auto keys = call.client->ListApiKeys();
  if (!keys.ok()) return keys.status();
  json all = json::array();
  for (const v1::ApiKey& key : keys->keys()) all.push_back(client::ApiKeyToJson(key));
  SendJson(response, 200, json{{"keys", all}});
  return absl::OkStatus();
}

absl::Status CreateKey(Call& call, const httplib::Request& request, httplib::Response& response) {
  auto body = ParseObject(request.body, "the body");
  if (!body.ok()) return body.status();
  std::string role_name, name;
  try {
    role_name = body->value("role", "");
    name = body->value("name", "");
  } catch (const std::exception& e) {
    return BadRequest(absl::StrCat("the body: ", e.what()));
  }
  auto role = client::ParseRole(role_name);
  if (!role) return BadRequest("role must be consumer, provider or admin");
  auto created = call.client->CreateApiKey(*role, name);
  if (!created.ok()) return created.status();
  json out = client::ApiKeyToJson(created->key());
  out["secret"] = created->secret();
  SendJson(response, 200, out);
  return absl::OkStatus();
}

absl::Status RevokeKey(Call& call, const httplib::Request& request, httplib::Response& response) {
  const std::string id = request.matches[1].str();
  if (absl::Status s = call.client->RevokeApiKey(id); !s.ok()) return s;
  SendJson(response, 200, json{{"revoked", id}});
  return absl::OkStatus();
}

}  // namespace

void AddRestRoutes(httplib::Server& server, std::shared_ptr<const RouteContext> context) {
  const std::string model_path = R"(/v1/models/([^/]+))";
  server.Get("/v1/models", Route(context, ListModels));
  server.Get(model_path, Route(context, GetModel));
  server.Delete(model_path, Route(context, DeleteModel));
  server.Patch(model_path, Route(context, UpdateModel));
  server.Get(model_path + "/events", Route(context, WatchModel));
  server.Get(model_path + "/nearest", Route(context, NearestModels));
  server.Post("/v1/models:remote", Route(context, RegisterRemoteModel));
  server.Get("/v1/keys", Route(context, ListKeys));
  server.Post("/v1/keys", Route(context, CreateKey));
  server.Delete(R"(/v1/keys/([^/]+))", Route(context, RevokeKey));
  const RouteContext* raw = context.get();
  server.Post("/v1/models", UploadRoute(context, [raw](Call& call, const httplib::Request& request,
                                                       httplib::Response& response,
                                                       const httplib::ContentReader& reader) {
                return RegisterModel(*raw, call, request, response, reader);
              }));
  server.Post("/v1/report", UploadRoute(context, [raw](Call& call, const httplib::Request& request,
                                                       httplib::Response& response,
                                                       const httplib::ContentReader& reader) {
                return Report(*raw, call, request, response, reader);
              }));
  server.Post("/v1/recommend",
              UploadRoute(context, [raw](Call& call, const httplib::Request& request,
                                         httplib::Response& response,
                                         const httplib::ContentReader& reader) {
                return Recommend(*raw, call, request, response, reader);
              }));
  server.Post("/v1/tune", UploadRoute(context, [raw](Call& call, const httplib::Request& request,
                                                     httplib::Response& response,
                                                     const httplib::ContentReader& reader) {
                return Tune(*raw, call, request, response, reader);
              }));
}

}  // namespace modeldock::http
