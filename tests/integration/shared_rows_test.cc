// Processes of a host share the prepared rows through one mapped file
// (BuildExperiment's row_cache_dir, ShareRowsThroughCache, fedsim launch):
// the same data as a private build, bit for bit, one copy in all.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/config/experiment.h"
#include "gtest/gtest.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace {

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/shared_rows_" + name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

v1::ExperimentConfig Config(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

std::vector<std::string> CacheFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".rows") out.push_back(e.path().filename().string());
  }
  return out;
}

void ExpectSameData(const Experiment& a, const Experiment& b) {
  EXPECT_EQ(a.data.train.rows(), b.data.train.rows());
  EXPECT_EQ(a.data.train.labels, b.data.train.labels);
  EXPECT_EQ(a.data.test.rows(), b.data.test.rows());
  EXPECT_EQ(a.data.test.labels, b.data.test.labels);
  EXPECT_EQ(a.data.client_rows, b.data.client_rows);
  EXPECT_EQ(a.data.eval_rows, b.data.eval_rows);
  EXPECT_EQ(a.client_sizes, b.client_sizes);
  EXPECT_EQ(a.num_parameters(), b.num_parameters());
}

// Fashion-MNIST (the default data set), a Dirichlet split.
constexpr char kFashion[] =
    "seed: 3\nclients: {count: 30, partition: dirichlet}\neval: {train_rows: 2000}\n";

TEST(SharedRowsTest, FirstBuildWritesLaterBuildsMapTheSameData) {
  const v1::ExperimentConfig config = Config(kFashion);
  const std::string dir = Dir("build");
  absl::StatusOr<Experiment> own = BuildExperiment(config);
  ASSERT_TRUE(own.ok()) << own.status();
  absl::StatusOr<Experiment> first = BuildExperiment(config, "", false, dir);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->data_note.rfind("rows written to " + dir, 0), 0u) << first->data_note;
  absl::StatusOr<Experiment> second = BuildExperiment(config, "", false, dir);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->data_note.rfind("rows mapped from " + dir, 0), 0u) << second->data_note;
  ExpectSameData(*own, *first);
  ExpectSameData(*own, *second);
  // Both builds hold the rows in the file's mapping, not a copy.
  for (const Experiment* e : {&*first, &*second}) {
    EXPECT_NE(e->data.train.shared, nullptr);
    EXPECT_EQ(e->data.train.features.size(), 0);
  }
  EXPECT_EQ(CacheFiles(dir).size(), 1u);
  // Another seed is another partition: another file.
  const v1::ExperimentConfig other = Config(std::string(kFashion) + "seed: 4\n");
  ASSERT_TRUE(BuildExperiment(other, "", false, dir).ok());
  EXPECT_EQ(CacheFiles(dir).size(), 2u);
}

TEST(SharedRowsTest, ADamagedOrStaleCacheIsRebuiltAndAnUnwritableFolderIsNotFatal) {
  const v1::ExperimentConfig config = Config(kFashion);
  const std::string dir = Dir("damaged");
  ASSERT_TRUE(BuildExperiment(config, "", false, dir).ok());
  const std::vector<std::string> files = CacheFiles(dir);
  ASSERT_EQ(files.size(), 1u);
  const std::string path = dir + "/" + files[0];
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  absl::StatusOr<Experiment> rebuilt = BuildExperiment(config, "", false, dir);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_NE(rebuilt->data_note.find("its header needs"), std::string::npos)
      << rebuilt->data_note;
  EXPECT_NE(rebuilt->data_note.find("rows written to"), std::string::npos);
  absl::StatusOr<Experiment> own = BuildExperiment(config);
  ASSERT_TRUE(own.ok());
  ExpectSameData(*own, *rebuilt);

  // A folder that cannot be written: the rows are the process's own.
  absl::StatusOr<Experiment> alone =
      BuildExperiment(config, "", false, dir + "/no/such/folder");
  ASSERT_TRUE(alone.ok()) << alone.status();
  EXPECT_NE(alone->data_note.find("row cache not used"), std::string::npos)
      << alone->data_note;
  EXPECT_EQ(alone->data.train.shared, nullptr);
  ExpectSameData(*own, *alone);
}

// A data file rewritten under the same name (CSV: train_file) is other
// data: its cache file is another, and the new rows are what is mapped.
TEST(SharedRowsTest, ARewrittenDataFileGetsItsOwnCacheFile) {
  const std::string dir = Dir("csv");
  const std::string cache = dir + "/cache";
  std::filesystem::create_directories(cache);
  const auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
  };
  std::string rows;
  for (int i = 0; i < 40; ++i) {
    rows += std::to_string(i % 3) + "," + std::to_string(i) + "," + std::to_string(2 * i) + "\n";
  }
  write("train.csv", rows);
  write("test.csv", "0,1,2\n1,3,4\n");
  const v1::ExperimentConfig config = Config(
      "data: {source: csv, train_file: " + dir + "/train.csv, test_file: " + dir +
      "/test.csv, label_column: 0}\nclients: {count: 4}\nmodel: {objective: softmax}\n");
  absl::StatusOr<Experiment> first = BuildExperiment(config, "", false, cache);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->data_note.rfind("rows written to", 0), 0u) << first->data_note;
  // As many bytes again, one value changed. (The kernel stamps files with a
  // coarse clock, a few ms: a rewrite that fast could keep the time, so the
  // test moves it on by a second as a later edit would.)
  const auto before = std::filesystem::last_write_time(dir + "/train.csv");
  write("train.csv", "1" + rows.substr(1));
  std::filesystem::last_write_time(dir + "/train.csv", before + std::chrono::seconds(1));
  absl::StatusOr<Experiment> second = BuildExperiment(config, "", false, cache);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->data_note.rfind("rows written to", 0), 0u) << second->data_note;
  EXPECT_EQ(CacheFiles(cache).size(), 2u);
  absl::StatusOr<Experiment> own = BuildExperiment(config);
  ASSERT_TRUE(own.ok());
  ExpectSameData(*own, *second);
  EXPECT_NE(first->data.train.labels, second->data.train.labels);
}

TEST(SharedRowsTest, ShareRowsMovesABuiltExperimentOntoTheMapping) {
  const v1::ExperimentConfig config = Config(kFashion);
  const std::string dir = Dir("share");
  absl::StatusOr<Experiment> e = BuildExperiment(config);
  ASSERT_TRUE(e.ok());
  absl::StatusOr<Experiment> before = BuildExperiment(config);
  ASSERT_TRUE(before.ok());
  ASSERT_TRUE(ShareRowsThroughCache(*e, config, "", dir, /*durable=*/false).ok());
  EXPECT_NE(e->data.train.shared, nullptr);
  ExpectSameData(*before, *e);
  // A worker started afterwards maps what the coordinator wrote.
  absl::StatusOr<Experiment> worker = BuildExperiment(config, "", false, dir);
  ASSERT_TRUE(worker.ok());
  EXPECT_EQ(worker->data_note.rfind("rows mapped from", 0), 0u) << worker->data_note;
}

// fedsim launch: every worker maps the coordinator's file (what each
// loaded, from its log), and the run is the embedded run, bit for bit.
TEST(SharedRowsTest, LaunchedWorkersMapTheRowsAndMatchTheEmbeddedRun) {
  const std::string yaml = std::string(kFashion) +
                           "rounds: 3\nparticipation: {client_fraction: 0.2}\n"
                           "local: {batch_size: 64}\n";
  const v1::ExperimentConfig config = Config(yaml);
  const std::string launched = Dir("launch");
  const std::string embedded = Dir("embedded");
  {
    absl::StatusOr<CoordinatorRun> run = PrepareRun(config, launched, "distributed");
    ASSERT_TRUE(run.ok()) << run.status();
    LaunchOptions options;
    options.workers = 3;
    options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
    absl::StatusOr<RunSummary> summary = LaunchRun(*run, options);
    ASSERT_TRUE(summary.ok()) << summary.status();
  }
  {
    absl::StatusOr<CoordinatorRun> run = PrepareRun(config, embedded, "embedded");
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_TRUE(RunEmbedded(*run).ok());
  }
  for (int i = 0; i < 3; ++i) {
    const std::string log =
        test::ReadFile(launched + "/workers/worker-" + std::to_string(i) + ".log");
    EXPECT_NE(log.find("rows mapped from"), std::string::npos) << log;
    EXPECT_EQ(log.find("rows written"), std::string::npos) << log;
  }
  EXPECT_EQ(test::Hashes(launched), test::Hashes(embedded));
  EXPECT_EQ(test::Column(launched, "train_loss"), test::Column(embedded, "train_loss"));
}

}  // namespace
}  // namespace fedsim
