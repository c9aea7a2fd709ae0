// eval.train_rows: train_loss is the mean over a fixed sample of training
// rows, drawn from the seed alone, so every partition and algorithm of a
// seed is measured on the same rows, summed in the data files' order.
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "common/runlog/run_log.h"
#include "gtest/gtest.h"
#include "runtime/embedded.h"
#include "server/coordinator/evaluator.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace {

Experiment Build(const std::string& yaml, bool keep_row_order = false) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<Experiment> e = BuildExperiment(*config, "", keep_row_order);
  EXPECT_TRUE(e.ok()) << e.status();
  return *std::move(e);
}

// Fashion-MNIST's 60,000 training rows (the default data set).
TEST(TrainLossRowsTest, DefaultSampleIsFixedBySeedNotByPartition) {
  const Experiment kept = Build("seed: 4\nclients: {count: 10, partition: iid}\n",
                                /*keep_row_order=*/true);
  const Experiment iid = Build("seed: 4\nclients: {count: 10, partition: iid}\n");
  const Experiment skewed = Build(
      "seed: 4\nclients: {count: 50, partition: dirichlet, dirichlet_alpha: 0.5}\n");
  ASSERT_EQ(kept.data.train.size(), 60000);
  ASSERT_EQ(kept.data.eval_rows.size(), 10000u);
  // In the files' order: strictly increasing file row numbers.
  for (std::size_t i = 1; i < kept.data.eval_rows.size(); ++i) {
    ASSERT_LT(kept.data.eval_rows[i - 1], kept.data.eval_rows[i]) << i;
  }
  EXPECT_GE(kept.data.eval_rows.front(), 0);
  EXPECT_LT(kept.data.eval_rows.back(), 60000);
  // Reordered for other partitions, the sample is the same rows in the
  // same order.
  const Dataset want = SelectRows(kept.data.train, kept.data.eval_rows);
  for (const Experiment* e : {&iid, &skewed}) {
    ASSERT_EQ(e->data.eval_rows.size(), 10000u);
    const Dataset got = SelectRows(e->data.train, e->data.eval_rows);
    EXPECT_EQ(got.features, want.features);
    EXPECT_EQ(got.labels, want.labels);
  }
  EXPECT_NE(iid.data.eval_rows, kept.data.eval_rows);  // the rows did move
  // Another seed, another sample.
  const Experiment other = Build("seed: 5\nclients: {count: 10, partition: iid}\n",
                                 /*keep_row_order=*/true);
  EXPECT_NE(other.data.eval_rows, kept.data.eval_rows);
}

TEST(TrainLossRowsTest, ZeroOrAtLeastTheTrainingSetMeansEveryRow) {
  for (const char* rows : {"0", "60000", "1000000"}) {
    const Experiment e =
        Build(absl::StrCat("clients: {count: 10, partition: iid}\neval: {train_rows: ", rows,
                           "}\n"));
    EXPECT_TRUE(e.data.eval_rows.empty()) << rows;
  }
  const Experiment one = Build("clients: {count: 10}\neval: {train_rows: 59999}\n");
  EXPECT_EQ(one.data.eval_rows.size(), 59999u);
}

TEST(TrainLossRowsTest, RejectsNegativeRowCount) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText("eval: {train_rows: -1}\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("eval.train_rows"), std::string::npos)
      << config.status();
}

// The logged train_loss is exactly the mean loss of the final model over
// the sampled rows taken from the files in their order, whatever the row
// layout the run trained on; run_start says how many rows.
TEST(TrainLossRowsTest, LoggedTrainLossIsTheSampleMean) {
  const std::string yaml =
      "seed: 2\nrounds: 2\nclients: {count: 20, partition: dirichlet}\n"
      "participation: {client_fraction: 0.25}\nlocal: {batch_size: 64}\n"
      "eval: {train_rows: 3000}\nruntime: {threads: 2}\n";
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string dir = ::testing::TempDir() + "/train_loss_rows";
  absl::StatusOr<CoordinatorRun> run = PrepareRun(*config, dir, "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  absl::StatusOr<RunSummary> summary = RunEmbedded(*run);
  ASSERT_TRUE(summary.ok()) << summary.status();

  const std::vector<nlohmann::json> start = test::Events(dir, "run_start");
  ASSERT_EQ(start.size(), 1u);
  EXPECT_EQ(start[0]["train_loss_rows"], 3000);
  EXPECT_EQ(start[0]["train_rows"], 60000);

  const Experiment kept = Build(yaml, /*keep_row_order=*/true);
  ASSERT_EQ(kept.data.eval_rows.size(), 3000u);
  absl::StatusOr<FlatVector> model = ReadModelFile(dir + "/model.bin");
  ASSERT_TRUE(model.ok()) << model.status();
  const Evaluation want =
      EvaluateModel(*kept.objective, SelectRows(kept.data.train, kept.data.eval_rows), *model,
                    /*num_threads=*/1);
  const std::vector<std::string> logged = test::Column(dir, "train_loss");
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_EQ(std::strtod(logged.back().c_str(), nullptr), want.loss);
  // Not the mean over every row: the sample is what was measured.
  const Evaluation all = EvaluateModel(*kept.objective, kept.data.train, *model, 1);
  EXPECT_NE(want.loss, all.loss);
  EXPECT_NEAR(want.loss, all.loss, 0.05 * all.loss);
}

}  // namespace
}  // namespace fedsim
