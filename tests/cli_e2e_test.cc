// The modeldock CLI run as a process against an in-process server: the contract of docs/CLI.md
// (commands, --json shapes, exit codes, messages naming the gRPC status code).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/subprocess.h"
#include "tests/test_server.h"

#ifndef MODELDOCK_CLI_PATH
#error "MODELDOCK_CLI_PATH must name the modeldock binary"
#endif

namespace modeldock::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;

constexpr char kTops[] = "demo/fmnist-tops-cnn";

class CliE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(AssetDir().empty()) << "MODELDOCK_ASSET_DIR is not set";
    ASSERT_TRUE(fs::exists(AssetPath(std::string(kTops) + ".pt")))
        << "missing demo models; build the assets with scripts/make_assets.py";
    server_ = std::make_unique<InProcessServer>((fs::path(temp_.path()) / "data").string());
    ASSERT_TRUE(server_->Start());
  }

  // Runs `modeldock --server ADDR --timeout 120 ARGS...`.
  ProcessResult Cli(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {MODELDOCK_CLI_PATH, "--server", server_->address(),
                                     "--timeout", "120"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProcess(argv, temp_.path());
  }

  static json ParseJson(const ProcessResult& r) {
    json parsed = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(parsed.is_discarded()) << "stdout is not JSON:\n" << r.out;
    return parsed;
  }

  std::string WriteTemp(const std::string& name, const std::string& content) {
    const std::string path = (fs::path(temp_.path()) / name).string();
    std::ofstream(path) << content;
    return path;
  }

  TempDir temp_;
  std::unique_ptr<InProcessServer> server_;
};

TEST_F(CliE2eTest, RegisterWithMetadataThenListShowRemove) {
  const std::string model = AssetPath(std::string(kTops) + ".pt");
  const json sidecar = json::parse(ReadFile(AssetPath(std::string(kTops) + ".json")));
  const std::string name = sidecar["name"];

  ProcessResult r = Cli({"--json", "register", model, "--metadata",
                         AssetPath(std::string(kTops) + ".json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json registered = ParseJson(r);
  EXPECT_EQ(registered["deduplicated"], false);
  const json& m = registered["model"];
  EXPECT_EQ(m["name"], name);
  EXPECT_EQ(m["state"], "READY") << m.dump();
  EXPECT_EQ(m["task"], "image_classification");
  EXPECT_EQ(m["input_shape"], json::array({1, 28, 28}));
  EXPECT_EQ(m["class_labels"], sidecar["class_labels"]);
  EXPECT_EQ(m["tags"], sidecar["tags"]);
  EXPECT_EQ(m["version"], sidecar["version"]);
  EXPECT_EQ(m["license"], sidecar["license"]);
  EXPECT_EQ(m["size_bytes"], static_cast<int64_t>(fs::file_size(model)));
  EXPECT_EQ(m["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(m["has_embed"], true);
  for (const char* key : {"id", "description", "state_reason", "feature_dim", "created_unix_ms",
                          "probe_millis"}) {
    EXPECT_TRUE(m.contains(key)) << key;
  }
  // stderr is not a terminal here: no progress bar, one final line.
  EXPECT_THAT(r.err, HasSubstr("uploaded"));
  EXPECT_THAT(r.err, Not(HasSubstr("\r")));
  const std::string id = m["id"];

  r = Cli({"--json", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json list = ParseJson(r);
  EXPECT_EQ(list["total_size"], 1);
  ASSERT_EQ(list["models"].size(), 1u);
  EXPECT_EQ(list["models"][0]["id"], id);
  EXPECT_EQ(list["models"][0]["name"], name);

  r = Cli({"list", "--state", "ready"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("NAME"));
  EXPECT_THAT(r.out, HasSubstr(name));
  EXPECT_THAT(r.out, HasSubstr("READY"));
  r = Cli({"--json", "list", "--state", "failed"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["total_size"], 0);

  r = Cli({"show", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(id));
  EXPECT_THAT(r.out, HasSubstr(m["sha256"].get<std::string>()));
  r = Cli({"show", id, "--json"});  // global flags may follow the command
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["model"]["name"], name);

  r = Cli({"--json", "watch", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["model"]["state"], "READY");

  r = Cli({"--json", "rm", name});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["id"], id);
  r = Cli({"--json", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["total_size"], 0);
}

TEST_F(CliE2eTest, FlagsOverrideMetadataAndLabelsComeFromFiles) {
  const std::string model = AssetPath(std::string(kTops) + ".pt");
  const json sidecar = json::parse(ReadFile(AssetPath(std::string(kTops) + ".json")));
  std::string labels_text;
  for (const std::string label : sidecar["class_labels"]) labels_text += label + "\n";
  const std::string labels = WriteTemp("labels.txt", labels_text);

  ProcessResult r = Cli({"--json", "register", model, "--metadata",
                         AssetPath(std::string(kTops) + ".json"), "--name", "renamed",
                         "--tag", "x", "--tag", "y", "--version", "9.9", "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json m = ParseJson(r)["model"];
  EXPECT_EQ(m["name"], "renamed");
  EXPECT_EQ(m["tags"], json::array({"x", "y"}));
  EXPECT_EQ(m["version"], "9.9");
  EXPECT_EQ(m["description"], sidecar["description"]);

  // No sidecar: everything from flags, labels from a file; the same bytes are deduplicated.
  r = Cli({"--json", "register", model, "--name", "from-flags", "--input-shape", "1,28,28",
           "--labels", "@" + labels});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json second = ParseJson(r);
  EXPECT_EQ(second["deduplicated"], true);
  EXPECT_EQ(second["model"]["class_labels"], sidecar["class_labels"]);
  EXPECT_EQ(second["model"]["state"], "READY");

  // Labels as a comma list, human output.
  std::string comma;
  for (const std::string label : sidecar["class_labels"]) comma += (comma.empty() ? "" : ",") + label;
  r = Cli({"register", model, "--name", "comma-labels", "--input-shape", "1,28,28", "--labels",
           comma});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("comma-labels"));
  EXPECT_THAT(r.out, HasSubstr("READY"));
}

// Photos as users have them: mixed sizes, a broken file. The CLI resizes, skips, and says so.
TEST_F(CliE2eTest, VersionsAndLayersFromTheCommandLine) {
  const std::string tops = AssetPath(std::string(kTops) + ".pt");
  const std::string meta = AssetPath(std::string(kTops) + ".json");
  for (const char* version : {"1.0", "2.0"}) {
    ProcessResult r = Cli({"register", tops, "--metadata", meta, "--name", "tops", "--version",
                           version});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // A model that exports embed_layers (sandbox/crafted_models.py: pixels, corners, hidden).
  ProcessResult r = Cli({"register", std::string(MODELDOCK_CRAFTED_DIR) + "/layers.pt", "--name",
                         "layered", "--input-shape", "1,28,28", "--labels",
                         "c0,c1,c2,c3,c4,c5,c6,c7,c8,c9"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("3 layers: pixels (49-d), corners (4-d), hidden (16-d)"));
  r = Cli({"show", "layered"});
  EXPECT_THAT(r.out, HasSubstr("layers:"));
  EXPECT_THAT(r.out, HasSubstr("3: pixels (49-d), corners (4-d), hidden (16-d)"));

  r = Cli({"--json", "show", "tops@1.0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["model"]["version"], "1.0");
  EXPECT_EQ(ParseJson(Cli({"--json", "show", "tops"}))["model"]["version"], "2.0");

  const std::string images = AssetPath("demo/query_tops/query-images-idx3-ubyte");
  const std::string labels = AssetPath("demo/query_tops/query-labels-idx1-ubyte");
  r = Cli({"--json", "recommend", images, "--labels", labels, "--brute-force", "--top", "10"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = ParseJson(r);
  ASSERT_EQ(out["results"].size(), 2u) << out.dump();  // tops once (its best version), layered
  for (const json& result : out["results"]) {
    if (result["name"] == "layered") {
      EXPECT_FALSE(result["layer"].get<std::string>().empty());
      EXPECT_EQ(result["layer_scores"].size(), 3u);
    } else {
      EXPECT_EQ(result["layer"], "");
      EXPECT_THAT(result["reason"].get<std::string>(), HasSubstr("the best ranked of its 2 versions"));
    }
  }
  r = Cli({"--json", "recommend", images, "--labels", labels, "--brute-force", "--all-versions"});
  EXPECT_EQ(ParseJson(r)["results"].size(), 3u);
  r = Cli({"recommend", images, "--labels", labels, "--brute-force"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("LAYER"));
  EXPECT_THAT(r.out, HasSubstr("VERSION"));

  r = Cli({"rm", "tops"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("2 versions (1.0, 2.0)"));
  r = Cli({"rm", "tops", "--all-versions"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("deleted 2 versions of tops"));
  EXPECT_NE(Cli({"show", "tops"}).exit_code, 0);
}

TEST_F(CliE2eTest, RecommendOnAnImageFolderOfMixedSizesSaysWhatWasDone) {
  ProcessResult r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--metadata",
                         AssetPath(std::string(kTops) + ".json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Binary PGM images (grey), 28x28 mostly and two of 20x24; a file that is not an image.
  auto pgm = [&](const std::string& name, int w, int h, int seed) {
    std::string pixels;
    for (int i = 0; i < w * h; ++i) pixels.push_back(static_cast<char>((i * 7 + seed * 31) % 256));
    fs::create_directories(fs::path(temp_.path()) / "photos" / fs::path(name).parent_path());
    std::ofstream(fs::path(temp_.path()) / "photos" / name, std::ios::binary)
        << "P5\n" << w << " " << h << "\n255\n" << pixels;
  };
  for (int i = 0; i < 6; ++i) pgm("a/" + std::to_string(i) + ".pgm", 28, 28, i);
  for (int i = 0; i < 6; ++i) pgm("b/" + std::to_string(i) + ".pgm", i < 2 ? 20 : 28, i < 2 ? 24 : 28, 10 + i);
  WriteTemp("photos/b/broken.png", "not a png");
  const std::string folder = (fs::path(temp_.path()) / "photos").string();

  r = Cli({"--json", "recommend", folder});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = ParseJson(r);
  ASSERT_EQ(out["dataset_notes"].size(), 2u) << out.dump();
  EXPECT_THAT(out["dataset_notes"][0].get<std::string>(), HasSubstr("skipped 1 unreadable file"));
  EXPECT_THAT(out["dataset_notes"][1].get<std::string>(),
              HasSubstr("resized 2 of 12 images to 28x28 (the most common size"));
  EXPECT_EQ(out["results"][0]["name"], "fmnist-tops-cnn");

  r = Cli({"recommend", folder, "--image-size", "32,32"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("dataset: resized 12 of 12 images to 32x32 (--image-size)"));
  EXPECT_THAT(r.out, HasSubstr("12 samples of 1x32x32"));

  r = Cli({"recommend", folder, "--image-size", "32"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--image-size must be H,W"));
}

TEST_F(CliE2eTest, ReportRecordsTrainAndServeAVersion) {
  for (const char* model : {"demo/fmnist-tops-cnn", "demo/fmnist-footwear-cnn",
                            "demo/fmnist-shuffled-cnn"}) {
    ProcessResult r = Cli({"register", AssetPath(std::string(model) + ".pt"), "--metadata",
                           AssetPath(std::string(model) + ".json")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  const std::string images = AssetPath("demo/query_tops/query-images-idx3-ubyte");
  const std::string labels = AssetPath("demo/query_tops/query-labels-idx1-ubyte");
  const std::string outcomes = WriteTemp(
      "outcomes.csv", "# model,accuracy\nfmnist-tops-cnn,0.91\nfmnist-footwear-cnn,0.62\n"
                      "fmnist-shuffled-cnn,0.30\n");
  // Bad reports: the status code is named, exit 1; usage errors exit 2; nothing is stored.
  ProcessResult bad = Cli({"report", images, "--labels", labels, "--model", "fmnist-tops-cnn",
                           "--accuracy", "93"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(bad.err, HasSubstr("0.93, not 93"));
  bad = Cli({"report", images, "--labels", labels, "--model", "nope", "--accuracy", "0.5"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(Cli({"report", images, "--labels", labels}).exit_code, 2);
  ProcessResult records = Cli({"--json", "records"});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  EXPECT_EQ(ParseJson(records)["total_records"], 0);

  // Three queries (different samples): one single report and two bulk ones.
  ProcessResult single = Cli({"--json", "report", images, "--labels", labels, "--max-samples",
                              "60", "--model", "fmnist-footwear-cnn", "--accuracy", "0.6"});
  ASSERT_EQ(single.exit_code, 0) << single.err;
  EXPECT_EQ(ParseJson(single)["num_stored"], 1);
  for (const char* n : {"60", "120", "0"}) {
    ProcessResult r = Cli({"--json", "report", images, "--labels", labels, "--max-samples", n,
                           "--outcomes", outcomes, "--source", "import"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json j = ParseJson(r);
    EXPECT_EQ(j["num_stored"], 3);
    EXPECT_EQ(j["num_stage1_scores"], 3);
  }
  // Each bulk report also leaves, in the background, the three models' stage-2 standings on its
  // samples (source stage2, the server's default --report-standings): 9 in all, once scored.
  auto count_by_source = [&](const json& listing) {
    std::map<std::string, int> counts;
    for (const json& r : listing["records"]) ++counts[r["source"].get<std::string>()];
    return counts;
  };
  json all;
  for (int attempt = 0; attempt < 600; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    all = ParseJson(Cli({"--json", "records"}));
    if (count_by_source(all)["stage2"] >= 9) break;
  }
  // Footwear was reported twice on the first query (finetune and import): both kept.
  EXPECT_EQ(count_by_source(all), (std::map<std::string, int>{
                                      {"finetune", 1}, {"import", 9}, {"stage2", 9}}));
  EXPECT_EQ(all["total_records"], 19);
  records = Cli({"--json", "records", "--model", "fmnist-tops-cnn"});
  ASSERT_EQ(records.exit_code, 0) << records.err;
  json listed = ParseJson(records);
  EXPECT_EQ(listed["total_records"], 6);
  EXPECT_EQ(count_by_source(listed),
            (std::map<std::string, int>{{"import", 3}, {"stage2", 3}}));

  ProcessResult train = Cli({"--json", "train", "--wait"});
  ASSERT_EQ(train.exit_code, 0) << train.err << train.out;
  json job = ParseJson(train);
  EXPECT_EQ(job["state"], "done") << job.dump();
  EXPECT_EQ(job["version"], 1);
  EXPECT_EQ(job["result"]["num_queries"], 3);
  ProcessResult human = Cli({"alignments"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_THAT(human.out, HasSubstr("HELD-OUT TAU_W"));

  // Serve version 1, then roll back to the untrained ranker.
  ASSERT_EQ(Cli({"alignments", "use", "1"}).exit_code, 0);
  json listed_versions = ParseJson(Cli({"--json", "alignments"}));
  EXPECT_EQ(listed_versions["serving_version"], 1);
  ProcessResult rec = Cli({"--json", "recommend", images, "--labels", labels, "--metric", "none"});
  ASSERT_EQ(rec.exit_code, 0) << rec.err;
  json trained = ParseJson(rec);
  EXPECT_EQ(trained["alignment_version"], 1);
  EXPECT_TRUE(trained["results"][0]["prior"].is_number());
  EXPECT_THAT(trained["results"][0]["reason"].get<std::string>(), HasSubstr("outcome prior"));
  ProcessResult missing = Cli({"alignments", "use", "7"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  ASSERT_EQ(Cli({"alignments", "use", "0"}).exit_code, 0);
  json untrained = ParseJson(
      Cli({"--json", "recommend", images, "--labels", labels, "--metric", "none"}));
  EXPECT_EQ(untrained["alignment_version"], 0);
  EXPECT_TRUE(untrained["results"][0]["prior"].is_null());
}

TEST_F(CliE2eTest, RegistersAFeatureExtractorWithoutLabels) {
  const std::string headless = (fs::path(temp_.path()) / "headless.pt").string();
  ProcessResult cut = RunProcess({MODELDOCK_PYTHON, MODELDOCK_HEADLESS_SCRIPT,
                                  AssetPath(std::string(kTops) + ".pt"), headless},
                                 temp_.path());
  ASSERT_EQ(cut.exit_code, 0) << cut.err;
  EXPECT_EQ(Cli({"register", headless, "--name", "h", "--input-shape", "1,28,28",
                 "--feature-extractor", "--labels", "a,b"})
                .exit_code,
            2);
  ProcessResult no_labels = Cli({"register", headless, "--name", "h", "--input-shape", "1,28,28"});
  EXPECT_EQ(no_labels.exit_code, 2);
  EXPECT_THAT(no_labels.err, HasSubstr("--feature-extractor"));
  ProcessResult r = Cli({"--json", "register", headless, "--name", "tops-headless",
                         "--input-shape", "1,28,28", "--feature-extractor"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json model = ParseJson(r)["model"];
  EXPECT_EQ(model["kind"], "feature_extractor");
  EXPECT_EQ(model["state"], "READY") << model.dump();
  EXPECT_EQ(model["feature_dim"], 64);
  ProcessResult show = Cli({"show", "tops-headless"});
  EXPECT_THAT(show.out, HasSubstr("feature extractor"));
  ProcessResult rec = Cli({"--json", "recommend", AssetPath("demo/query_tops/query-images-idx3-ubyte"),
                           "--labels", AssetPath("demo/query_tops/query-labels-idx1-ubyte")});
  ASSERT_EQ(rec.exit_code, 0) << rec.err;
  EXPECT_EQ(ParseJson(rec)["results"][0]["name"], "tops-headless");
}

TEST_F(CliE2eTest, NearestListsTheOtherModelsOfTheSpaceBestFirst) {
  const std::vector<std::string> names = {"fmnist-tops-cnn", "fmnist-footwear-cnn",
                                          "fmnist-all-mlp"};
  for (const std::string& name : names) {
    ProcessResult r = Cli({"register", AssetPath("demo/" + name + ".pt"), "--metadata",
                           AssetPath("demo/" + name + ".json")});
    ASSERT_EQ(r.exit_code, 0) << name << ": " << r.err;
  }
  ProcessResult r = Cli({"--json", "nearest", "fmnist-tops-cnn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json all = ParseJson(r);
  EXPECT_EQ(all["model"], "fmnist-tops-cnn");
  ASSERT_EQ(all["nearest"].size(), 2u) << all.dump();
  std::vector<std::string> found;
  for (const json& n : all["nearest"]) {
    found.push_back(n["model"]["name"]);
    EXPECT_EQ(n["model"]["state"], "READY");
  }
  EXPECT_THAT(found, ::testing::UnorderedElementsAre("fmnist-footwear-cnn", "fmnist-all-mlp"));
  EXPECT_GE(all["nearest"][0]["similarity"].get<double>(),
            all["nearest"][1]["similarity"].get<double>());
  // --k 1: the first of the same order.
  r = Cli({"--json", "nearest", "fmnist-tops-cnn", "--k", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json one = ParseJson(r);
  ASSERT_EQ(one["nearest"].size(), 1u);
  EXPECT_EQ(one["nearest"][0]["model"]["id"], all["nearest"][0]["model"]["id"]);
  EXPECT_EQ(one["nearest"][0]["similarity"], all["nearest"][0]["similarity"]);
  // The table.
  r = Cli({"nearest", "fmnist-tops-cnn"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("SIMILARITY"));
  EXPECT_THAT(r.out, HasSubstr(found[0]));
  EXPECT_THAT(r.out, Not(HasSubstr("fmnist-tops-cnn")));
  // Errors.
  r = Cli({"nearest", "no-such-model"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_EQ(Cli({"nearest", "fmnist-tops-cnn", "--k", "0"}).exit_code, 2);
}

TEST_F(CliE2eTest, UpdateEditsMetadataAndAuditListsIt) {
  ProcessResult r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--metadata",
                         AssetPath(std::string(kTops) + ".json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string name = json::parse(ReadFile(AssetPath(std::string(kTops) + ".json")))["name"];
  EXPECT_EQ(Cli({"update", name}).exit_code, 2);  // nothing to change
  ProcessResult updated = Cli({"--json", "update", name, "--license", "MIT", "--tag", "a",
                               "--tag", "b"});
  ASSERT_EQ(updated.exit_code, 0) << updated.err;
  json model = ParseJson(updated)["model"];
  EXPECT_EQ(model["license"], "MIT");
  EXPECT_EQ(model["tags"], json::array({"a", "b"}));
  ASSERT_EQ(Cli({"update", name, "--clear-tags"}).exit_code, 0);
  EXPECT_EQ(ParseJson(Cli({"--json", "show", name}))["model"]["tags"], json::array());
  ProcessResult missing = Cli({"update", "nope", "--license", "x"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
  json audit = ParseJson(Cli({"--json", "audit"}));
  ASSERT_GE(audit["entries"].size(), 3u);
  EXPECT_EQ(audit["entries"][0]["action"], "update");
  EXPECT_THAT(audit["entries"][0]["detail"].get<std::string>(), HasSubstr("tags=[]"));
  EXPECT_EQ(audit["entries"][2]["action"], "register");
}

TEST_F(CliE2eTest, Health) {
  ProcessResult r = Cli({"health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "SERVING\n");
  r = Cli({"--json", "health"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r), (json{{"status", "SERVING"}}));
}

TEST_F(CliE2eTest, ErrorsExitNonZeroWithTheStatusCodeName) {
  ProcessResult r = Cli({"show", "no-such-model"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(r.err, HasSubstr("no-such-model"));
  EXPECT_TRUE(r.out.empty());

  r = Cli({"--json", "rm", "no-such-model"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_TRUE(r.out.empty());

  r = Cli({"register", AssetPath("fixtures/not_torchscript.pt"), "--metadata",
           AssetPath("fixtures/not_torchscript.json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));

  r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--metadata",
           AssetPath(std::string(kTops) + ".json"), "--no-wait"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--metadata",
           AssetPath(std::string(kTops) + ".json")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ALREADY_EXISTS"));

  // A server that is not there.
  r = RunProcess({MODELDOCK_CLI_PATH, "--server", "127.0.0.1:1", "--timeout", "5", "list"},
                 temp_.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("UNAVAILABLE"));
  // $MODELDOCK_SERVER is the default address.
  r = RunProcess({MODELDOCK_CLI_PATH, "health"}, temp_.path(),
                 {"MODELDOCK_SERVER=" + server_->address()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

// Issue 22: a comma list longer than a file name may be (255 bytes) made the CLI abort with an
// uncaught filesystem_error ("File name too long") while it asked whether the list was a path.
TEST_F(CliE2eTest, AHundredLabelListIsALabelListNotAnAbort) {
  std::string labels;
  for (int i = 0; i < 100; ++i) labels += (i == 0 ? "" : ",") + std::string("class-") + std::to_string(i);
  ASSERT_GT(labels.size(), 255u);
  // The tops model has 4 classes: the server refuses 100 labels, and says so.
  ProcessResult r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--name", "many",
                         "--input-shape", "1,28,28", "--labels", labels});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("100 labels"));
  EXPECT_THAT(r.err, Not(HasSubstr("terminate")));
  // The same list as a model file path, or after '@': a usage error naming it.
  r = Cli({"register", labels, "--name", "many", "--input-shape", "1,28,28", "--labels", "a,b"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot read model file class-0,class-1,"));
  r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--name", "many", "--input-shape",
           "1,28,28", "--labels", "@" + labels});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("cannot read labels file class-0,class-1,"));
}

TEST_F(CliE2eTest, UsageErrorsExitTwo) {
  ProcessResult r = Cli({"list", "--bogus"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--bogus"));

  r = Cli({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);

  r = Cli({"list", "--state", "sleepy"});
  EXPECT_EQ(r.exit_code, 2);

  r = Cli({"register", (fs::path(temp_.path()) / "missing.pt").string(), "--name", "x",
           "--input-shape", "1,28,28", "--labels", "a,b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing.pt"));

  r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--input-shape", "1,28,28",
           "--labels", "a,b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--name"));

  r = Cli({"register", AssetPath(std::string(kTops) + ".pt"), "--name", "x", "--input-shape",
           "1,twenty,28", "--labels", "a,b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--input-shape"));

  r = Cli({"recommend", (fs::path(temp_.path()) / "no-dataset").string()});
  EXPECT_EQ(r.exit_code, 2);

  r = Cli({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("Examples:"));
  EXPECT_THAT(r.out, HasSubstr("recommend"));

  // Nothing reached the server.
  r = Cli({"--json", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ParseJson(r)["total_size"], 0);
}

}  // namespace
}  // namespace modeldock::testing
