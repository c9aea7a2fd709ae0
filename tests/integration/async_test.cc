// Asynchronous FL end to end in the embedded runtime (ALGORITHMS.md §4,
// docs/async.md): synchronous FedAvg on the clock equals synchronous FedAvg
// bit for bit; the events.jsonl record of every step follows the §4.4
// schedule; same seed, same files (any thread count); on heterogeneous
// least squares `weight` reaches the p-weighted optimum and `identical`
// the speed-biased surrogate optimum.
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/embedded.h"
#include "server/clock/time_model.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace async_test {
namespace {

using test::ReadFile;

using ::testing::HasSubstr;

// metrics.csv as column name -> cells.
std::map<std::string, std::vector<std::string>> ReadMetrics(const std::string& dir) {
  std::istringstream csv(ReadFile(dir + "/metrics.csv"));
  std::string line;
  std::getline(csv, line);
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  std::map<std::string, std::vector<std::string>> cols;
  while (std::getline(csv, line)) {
    const std::vector<std::string> cells = absl::StrSplit(line, ',');
    for (std::size_t i = 0; i < header.size() && i < cells.size(); ++i) {
      cols[header[i]].push_back(cells[i]);
    }
  }
  return cols;
}

std::vector<nlohmann::json> ReadEvents(const std::string& dir) {
  std::istringstream in(ReadFile(dir + "/events.jsonl"));
  std::vector<nlohmann::json> events;
  std::string line;
  while (std::getline(in, line)) events.push_back(nlohmann::json::parse(line));
  return events;
}

// Runs `yaml` embedded into a fresh directory; returns the directory.
std::string RunYaml(const std::string& yaml, const std::string& name,
                    CoordinatorRun* keep = nullptr) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  const std::string dir = ::testing::TempDir() + "/async_" + name;
  absl::StatusOr<CoordinatorRun> run = PrepareRun(*config, dir, "embedded");
  EXPECT_TRUE(run.ok()) << run.status();
  absl::StatusOr<RunSummary> summary = RunEmbedded(*run);
  EXPECT_TRUE(summary.ok()) << summary.status();
  if (keep != nullptr) *keep = *std::move(run);
  return dir;
}

std::string LeastSquares(const std::string& algorithm, const std::string& extra) {
  return absl::StrCat(R"(
seed: 9
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 30, dim: 4, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
)", algorithm, "\n", extra);
}

TEST(AsyncRuntimeTest, ClockFedAvgEqualsSynchronousFedAvgBitForBit) {
  // Mini-batches with shuffling and uneven client sizes (ratio importance
  // is FedAvg's n_k / m_t): the clock version must draw the same batches
  // and sum the same way.
  const std::string common = R"(
seed: 4
rounds: 6
data:
  source: fedprox_synthetic
  fedprox_synthetic: {alpha: 0.5, beta: 0.5}
clients: {count: 6}
model: {objective: softmax}
participation: {client_fraction: 1}
local: {epochs: 2, batch_size: 7, lr: 0.05}
runtime: {threads: 2}
)";
  const std::string sync_dir =
      RunYaml(common + "algorithm: {name: fedavg}\n", "sync_fedavg");
  const std::string clock_dir = RunYaml(
      common + "algorithm: {name: clock_fedavg, importance: ratio}\n"
               "async: {fx_percent: 80}\n",
      "clock_fedavg");
  auto sync = ReadMetrics(sync_dir);
  auto clock = ReadMetrics(clock_dir);
  ASSERT_EQ(sync["model_hash"].size(), 6u);
  for (const char* col : {"round", "model_hash", "train_loss", "test_loss",
                          "test_accuracy", "client_loss", "participants",
                          "bytes_up", "bytes_down"}) {
    EXPECT_EQ(sync[col], clock[col]) << col;
  }
  // The clock run also says when each step happened: every max tau = 1.
  EXPECT_THAT(clock["virtual_time"],
              ::testing::ElementsAre("1", "2", "3", "4", "5", "6"));
  EXPECT_THAT(sync["virtual_time"], ::testing::Each(""));
}

// The §4.4 setting end to end: 3 clients, F-80 (tau = 1, 0.6, 0.2),
// FedFix-0.5, T = 3: one async_step event per window with the contributors,
// their base versions, staleness and weights d = (2/3, 2/3, 1/3).
TEST(AsyncRuntimeTest, FedFixEventsFollowTheWorkedSchedule) {
  const std::string dir = RunYaml(
      absl::StrCat(R"(
seed: 9
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 30, dim: 4}
clients: {count: 3, partition: natural}
model: {objective: least_squares}
algorithm: {name: fedfix, window: 0.5}
local: {max_steps: 3, batch_size: 8, lr: 0.05, fresh_batches: true, momentum: 0.9}
async: {fx_percent: 80, horizon: 3}
participation: {client_fraction: 1}
)"),
      "fedfix_events");
  std::vector<nlohmann::json> steps;
  nlohmann::json start, end;
  for (const nlohmann::json& e : ReadEvents(dir)) {
    if (e["event"] == "async_step") steps.push_back(e);
    if (e["event"] == "run_start") start = e;
    if (e["event"] == "run_end") end = e;
  }
  EXPECT_EQ(start["algorithm"], "FedFix");
  EXPECT_EQ(start["async"]["weights"], "weight");
  // base versions per step, -1 = not aggregated (ALGORITHMS.md §4.4).
  const std::vector<std::vector<int>> table = {{-1, -1, 0}, {0, 0, 1}, {-1, -1, 2},
                                               {2, 2, 3},   {-1, -1, 4}, {4, 4, 5}};
  const std::vector<double> d = {2.0 / 3, 2.0 / 3, 1.0 / 3};
  ASSERT_EQ(steps.size(), table.size());
  for (std::size_t n = 0; n < steps.size(); ++n) {
    EXPECT_EQ(steps[n]["step"], n);
    EXPECT_DOUBLE_EQ(steps[n]["virtual_time"].get<double>(), 0.5 * (n + 1));
    std::vector<int> row = {-1, -1, -1};
    for (const nlohmann::json& c : steps[n]["contributors"]) {
      const int k = c["client"];
      row[k] = c["base_version"];
      EXPECT_EQ(c["staleness"].get<int>(), static_cast<int>(n) - row[k]);
      EXPECT_NEAR(c["weight"].get<double>(), d[k], 1e-15);
    }
    EXPECT_EQ(row, table[n]) << "step " << n;
  }
  // 3 initial tasks + 12 restarts; 12 aggregated; 3 still computing.
  EXPECT_EQ(end["tasks_issued"], 15);
  EXPECT_EQ(end["tasks_aggregated"], 12);
  EXPECT_EQ(end["tasks_in_flight"], 3);
  auto metrics = ReadMetrics(dir);
  EXPECT_THAT(metrics["participants"],
              ::testing::ElementsAre("1", "3", "1", "3", "1", "3"));
  EXPECT_THAT(metrics["virtual_time"],
              ::testing::ElementsAre("0.5", "1", "1.5", "2", "2.5", "3"));
}

// Drops the wall-clock fields, the only ones allowed to differ.
std::string WithoutWallTime(const std::string& dir) {
  std::string out;
  for (nlohmann::json e : ReadEvents(dir)) {
    e.erase("wall_time_s");
    out += e.dump() + "\n";
  }
  auto metrics = ReadMetrics(dir);
  metrics.erase("wall_time_s");
  for (const auto& [name, cells] : metrics) {
    out += name + ":" + absl::StrJoin(cells, ",") + "\n";
  }
  return out;
}

TEST(AsyncRuntimeTest, SameSeedSameFilesForAnyThreadCount) {
  const std::string yaml = LeastSquares(
      "algorithm: {name: fedbuff, buffer_size: 2, async_weights: weight}",
      R"(local: {max_steps: 2, batch_size: 5, lr: 0.05, fresh_batches: true}
async:
  compute_time: log_normal
  fx_percent: 50
  horizon: 20
  network_delay: {kind: exponential, mean: 0.05}
eval: {every: 3}
)");
  const std::string a = RunYaml(yaml + "runtime: {threads: 1}\n", "repeat_a");
  const std::string b = RunYaml(yaml + "runtime: {threads: 1}\n", "repeat_b");
  const std::string c = RunYaml(yaml + "runtime: {threads: 3}\n", "repeat_c");
  const std::string text = WithoutWallTime(a);
  EXPECT_GT(ReadMetrics(a)["round"].size(), 20u);
  EXPECT_EQ(text, WithoutWallTime(b));
  EXPECT_EQ(text, WithoutWallTime(c));
  // A different seed draws different times.
  const std::string d = RunYaml(
      absl::StrReplaceAll(yaml, {{"seed: 9", "seed: 10"}}) + "runtime: {threads: 1}\n",
      "repeat_d");
  EXPECT_NE(ReadMetrics(a)["virtual_time"], ReadMetrics(d)["virtual_time"]);
}

// Full-batch local GD, one step per task, on heterogeneous least squares
// L_i(w) = |X_i w - y_i|^2 / (2 n_i): the process settles at the minimiser
// of sum_i q_i L_i, w_q = (sum q_i H_i)^{-1} sum q_i g_i with
// H_i = X_i^T X_i / n_i, g_i = X_i^T y_i / n_i. `weight`: q_i = p_i = 1/4
// (the pooled optimum, equal n_i); async `identical`: q_i ∝ 1/tau_i.
TEST(AsyncRuntimeTest, WeightFindsTheTrueOptimumIdenticalTheSurrogate) {
  const std::vector<double> tau = FxTimes(4, 80.0);
  for (const bool weight : {true, false}) {
    CoordinatorRun run;
    RunYaml(LeastSquares(absl::StrCat("algorithm: {name: async_fedavg, async_weights: ",
                                      weight ? "weight" : "identical", "}"),
                         R"(local: {max_steps: 1, batch_size: 0, lr: 0.005}
async: {fx_percent: 80, horizon: 2000}
eval: {every: 100000}
)"),
            weight ? "ls_weight" : "ls_identical", &run);
    const FederatedData& data = run.experiment->data;
    Eigen::MatrixXd h = Eigen::MatrixXd::Zero(4, 4);
    Eigen::VectorXd g = Eigen::VectorXd::Zero(4);
    Eigen::MatrixXd h_p = h;
    Eigen::VectorXd g_p = g;
    for (std::size_t k = 0; k < 4; ++k) {
      Eigen::MatrixXd x(data.client_rows[k].size(), 4);
      Eigen::VectorXd y(data.client_rows[k].size());
      for (std::size_t r = 0; r < data.client_rows[k].size(); ++r) {
        x.row(r) = data.train.features.row(data.client_rows[k][r]).cast<double>();
        y[r] = data.train.labels[data.client_rows[k][r]];
      }
      const double n = static_cast<double>(x.rows());
      const double q = weight ? 0.25 : 1.0 / tau[k];
      h += q * x.transpose() * x / n;
      g += q * x.transpose() * y / n;
      h_p += 0.25 * x.transpose() * x / n;
      g_p += 0.25 * x.transpose() * y / n;
    }
    const Eigen::VectorXd target = h.ldlt().solve(g);
    const Eigen::VectorXd p_optimum = h_p.ldlt().solve(g_p);
    const FlatVector& w = run.engine->model();
    SCOPED_TRACE(weight ? "weight" : "identical");
    EXPECT_LT((w - target).norm(), 0.02 * (1.0 + target.norm()))
        << "w " << w.transpose() << "\ntarget " << target.transpose();
    if (!weight) {
      // The speed bias is much larger than the tolerance.
      EXPECT_GT((target - p_optimum).norm(), 0.1 * (1.0 + target.norm()));
      EXPECT_GT((w - p_optimum).norm(), 0.05 * (1.0 + target.norm()));
    }
  }
}

}  // namespace
}  // namespace async_test
}  // namespace fedsim
