#include "common/text_datasets.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modeldock {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TextDatasetsTest, CsvWithQuotesAndColumnsInAnyOrder) {
  const std::string csv =
      "\xEF\xBB\xBFid,label,text\r\n"
      "1,pos,\"good, \"\"really\"\" good\"\r\n"
      "2,neg,\"two\nlines\"\n"
      "3,pos,caf\xC3\xA9\n";
  auto d = DecodeTextTable("a.csv", csv, ',');
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->texts, ElementsAre("good, \"really\" good", "two\nlines", "caf\xC3\xA9"));
  EXPECT_THAT(d->label_names, ElementsAre("neg", "pos"));
  EXPECT_THAT(d->labels, ElementsAre(1, 0, 1));
}

TEST(TextDatasetsTest, TsvAndUnlabelled) {
  auto d = DecodeTextTable("a.tsv", "text\nfirst, with a comma\nsecond\n", '\t');
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->texts, ElementsAre("first, with a comma", "second"));
  EXPECT_TRUE(d->labels.empty());
}

TEST(TextDatasetsTest, TableErrorsNameTheProblem) {
  auto no_text = DecodeTextTable("a.csv", "body,label\nx,y\n", ',');
  EXPECT_THAT(no_text.status().message(), HasSubstr("a.csv: the header has no 'text' column"));
  auto ragged = DecodeTextTable("a.csv", "text,label\nx,y\nz\n", ',');
  EXPECT_THAT(ragged.status().message(), HasSubstr("row 3 has 1 fields; the header has 2"));
  auto latin1 = DecodeTextTable("a.csv", "text,label\ncaf\xE9,y\n", ',');
  EXPECT_THAT(latin1.status().message(), HasSubstr("the text of row 2 is not valid UTF-8 at its byte 3"));
  auto open = DecodeTextTable("a.csv", "text\n\"never closed\n", ',');
  EXPECT_THAT(open.status().message(), HasSubstr("a quoted field is not closed"));
}

TEST(TextDatasetsTest, Jsonl) {
  auto d = DecodeTextJsonl("a.jsonl",
                           "{\"text\": \"hello\", \"label\": 3}\n\n"
                           "{\"text\": \"caf\\u00e9\", \"label\": 10}\n");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->texts, ElementsAre("hello", "caf\xC3\xA9"));
  EXPECT_THAT(d->label_names, ElementsAre("10", "3"));  // byte order
  EXPECT_THAT(d->labels, ElementsAre(1, 0));
  auto mixed = DecodeTextJsonl("a.jsonl", "{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n");
  EXPECT_THAT(mixed.status().message(), HasSubstr("line 2 has no \"label\", unlike line 1"));
  auto bad = DecodeTextJsonl("a.jsonl", "{\"text\": 5}\n");
  EXPECT_THAT(bad.status().message(), HasSubstr("line 1 is not a JSON object with a string \"text\""));
}

TEST(TextDatasetsTest, FolderOfTxtFilesPerClass) {
  const fs::path dir = fs::temp_directory_path() / ("text_folder_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "sport");
  fs::create_directories(dir / "art");
  fs::create_directories(dir / "empty");
  std::ofstream(dir / "sport" / "b.txt") << "goal";
  std::ofstream(dir / "sport" / "a.txt") << "match";
  std::ofstream(dir / "sport" / "notes.md") << "ignored";
  std::ofstream(dir / "art" / "x.txt") << "paint";
  auto d = LoadTextDataset(dir.string());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(d->label_names, ElementsAre("art", "sport"));
  EXPECT_THAT(d->texts, ElementsAre("paint", "match", "goal"));
  EXPECT_THAT(d->labels, ElementsAre(0, 1, 1));
  std::ofstream(dir / "art" / "bad.txt") << "caf\xE9";
  auto bad = LoadTextDataset(dir.string());
  EXPECT_THAT(bad.status().message(), HasSubstr("bad.txt: the file is not valid UTF-8 at its byte 3"));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace modeldock
