// The metadata store suite's fixture, shared by its files (metadata_store_test.cc: models, keys,
// probe data, jobs; metadata_store_learning_test.cc: outcomes, versions, audit, meta): the test
// parameter picks the backend, SQLite on a temporary file or PostgreSQL on a fresh schema of the
// test server (tests/postgres_env.h), and helpers that compare stored values bit for bit.
#ifndef MODELDOCK_DOCK_TESTING_METADATA_STORE_FIXTURE_H_
#define MODELDOCK_DOCK_TESTING_METADATA_STORE_FIXTURE_H_

#include <sqlite3.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "dock/metadata_store.h"
#include "gtest/gtest.h"
#include "tests/model_records.h"
#include "tests/postgres_env.h"

namespace modeldock::dock::test {

// Floats from bit patterns, so that a round trip is checked on bytes (NaN payloads, -0, subnormal).
inline std::vector<float> FloatsFromBits(const std::vector<uint32_t>& bits) {
  std::vector<float> out(bits.size());
  std::memcpy(out.data(), bits.data(), bits.size() * sizeof(float));
  return out;
}
inline std::vector<uint32_t> Bits(const std::vector<float>& values) {
  std::vector<uint32_t> out(values.size());
  std::memcpy(out.data(), values.data(), values.size() * sizeof(float));
  return out;
}

// 0.1f, -0, the smallest subnormal, the largest float, a NaN with a payload, -inf, 1, -2.5.
inline const std::vector<uint32_t> kOddBits = {0x3dcccccd, 0x80000000, 0x00000001, 0x7f7fffff,
                                        0x7fc00123, 0xff800000, 0x3f800000, 0xc0200000};

inline ModelRecord Record(const std::string& id, const std::string& name, const std::string& version,
                   int64_t created) {
  return ::modeldock::testing::TestRecord(id, name, version, created);
}

inline void ExpectSameRecord(const ModelRecord& got, const ModelRecord& want) {
  EXPECT_EQ(::modeldock::testing::DescribeRecord(got), ::modeldock::testing::DescribeRecord(want));
}

inline std::vector<std::string> Ids(const std::vector<ModelRecord>& records) {
  std::vector<std::string> ids;
  for (const ModelRecord& r : records) ids.push_back(r.id);
  return ids;
}

inline Tensor MakeTensor(int64_t rows, int64_t cols, std::vector<float> values) {
  Tensor t;
  t.shape = {rows, cols};
  t.values = std::move(values);
  return t;
}

class MetadataStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") {
      MODELDOCK_REQUIRE_POSTGRES();
      schema_ = std::make_unique<::modeldock::testing::TestSchema>();
      ASSERT_EQ(schema_->error(), "");
      url_ = schema_->url();
    } else {
      std::string pattern = (std::filesystem::temp_directory_path() / "modeldock-store-XXXXXX").string();
      ASSERT_NE(mkdtemp(pattern.data()), nullptr);
      dir_ = pattern;
      url_ = (dir_ / "modeldock.db").string();
    }
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    schema_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto store = OpenMetadataStore(url_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  // Runs SQL on the backend's database beside the store (a connection of its own); "" or the
  // error.
  std::string ExecSql(const std::string& sql) {
    if (schema_ != nullptr) {
      const std::string out = schema_->Exec(sql);
      return out.rfind("error: ", 0) == 0 ? out : "";
    }
    sqlite3* db = nullptr;
    std::string out;
    char* err = nullptr;
    if (sqlite3_open(url_.c_str(), &db) != SQLITE_OK) {
      out = sqlite3_errmsg(db);
    } else if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      out = err != nullptr ? err : "error";
    }
    sqlite3_free(err);
    sqlite3_close(db);
    return out;
  }

  std::unique_ptr<::modeldock::testing::TestSchema> schema_;
  std::filesystem::path dir_;
  std::string url_;
  std::unique_ptr<MetadataStore> store_;
};

}  // namespace modeldock::dock::test

#endif  // MODELDOCK_DOCK_TESTING_METADATA_STORE_FIXTURE_H_
