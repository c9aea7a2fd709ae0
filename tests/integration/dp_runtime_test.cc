// Local DP end to end (ALGORITHMS.md §5, Decision 5): a DiceSGD run is bit
// for bit the same embedded (1 and 2 threads) and as coordinator + worker
// processes over gRPC (`fedsim launch`, clients pinned because DiceSGD's
// error buffer is client state); metrics.csv carries each round's epsilon,
// equal to the accountant's value for the steps the clients ran; an epsilon
// budget ends the run cleanly before any client could exceed it.
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "common/config/experiment.h"
#include "common/dp/rdp_accountant.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_config.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace dp_runtime_test {
namespace {

using test::ReadFile;
using test::Events;

// metrics.csv as columns by header name.
std::map<std::string, std::vector<std::string>> Columns(const std::string& dir) {
  std::map<std::string, std::vector<std::string>> out;
  std::vector<std::string> header;
  for (absl::string_view line :
       absl::StrSplit(ReadFile(dir + "/metrics.csv"), '\n', absl::SkipEmpty())) {
    std::vector<std::string> cells = absl::StrSplit(line, ',');
    if (header.empty()) {
      header = cells;
      continue;
    }
    EXPECT_EQ(cells.size(), header.size()) << line;
    for (std::size_t i = 0; i < header.size() && i < cells.size(); ++i) {
      out[header[i]].push_back(cells[i]);
    }
  }
  return out;
}

enum class Mode { kEmbedded, kLaunch };

std::string RunIt(const std::string& yaml, Mode mode, const std::string& name) {
  return test::RunConfig(yaml, ::testing::TempDir() + "/dp_" + name,
                         mode == Mode::kEmbedded ? 0 : 2);
}

// 6 clients of 40 rows; L = 10 (q = 1/4), 4 DiceSGD steps per task. Both
// workers must join before round 0, so both host pinned clients (and none
// joins after a run that is already over).
constexpr char kDice[] = R"(
seed: 5
rounds: 5
data: {source: synthetic_least_squares,
       least_squares: {examples_per_client: 40, dim: 6, heterogeneity: 1}}
clients: {count: 6}
participation: {client_fraction: 0.5}
local: {epochs: 1, batch_size: 10, lr: 0.05,
        dp: {mode: dicesgd, clip: 0.5, error_clip: 1.0, noise_multiplier: 0.8}}
distributed: {min_workers: 2}
)";

TEST(DpRuntimeTest, DiceSgdIsBitIdenticalAcrossRuntimes) {
  const std::string one =
      RunIt(absl::StrCat(kDice, "runtime: {threads: 1}\n"), Mode::kEmbedded, "one");
  const std::string two =
      RunIt(absl::StrCat(kDice, "runtime: {threads: 2}\n"), Mode::kEmbedded, "two");
  const std::string dist = RunIt(kDice, Mode::kLaunch, "dist");
  const auto a = Columns(one), b = Columns(two), c = Columns(dist);
  ASSERT_EQ(a.at("model_hash").size(), 5u);
  EXPECT_EQ(a.at("model_hash"), b.at("model_hash"));
  EXPECT_EQ(a.at("model_hash"), c.at("model_hash"));
  EXPECT_EQ(a.at("epsilon_max"), c.at("epsilon_max"));
  EXPECT_EQ(a.at("epsilon_mean"), c.at("epsilon_mean"));
  EXPECT_EQ(ReadFile(one + "/model.bin"), ReadFile(dist + "/model.bin"));
  // The error buffer matters: the same run as clipped DP-SGD differs.
  std::string clip = kDice;
  clip.replace(clip.find("dicesgd"), 7, "clip");
  const std::string clipped = RunIt(clip, Mode::kEmbedded, "clip");
  EXPECT_NE(Columns(clipped).at("model_hash").back(), a.at("model_hash").back());
}

TEST(DpRuntimeTest, MetricsCarryTheAccountantsEpsilon) {
  // Full participation: after round t every client ran 4 (t + 1) steps at
  // q = 1/4, z = 0.8.
  std::string yaml = kDice;
  yaml.replace(yaml.find("client_fraction: 0.5"), 20, "client_fraction: 1.0");
  const std::string dir = RunIt(yaml, Mode::kEmbedded, "full");
  const auto cols = Columns(dir);
  ASSERT_EQ(cols.at("epsilon_max").size(), 5u);
  for (int t = 0; t < 5; ++t) {
    RdpAccountant accountant(RdpOrders(256, true));
    accountant.Compose(0.25, 0.8, 4 * (t + 1));
    const double expected = accountant.Spent(1e-5, RdpConversion::kTight).epsilon;
    EXPECT_EQ(std::stod(cols.at("epsilon_max")[t]), expected) << t;
    EXPECT_DOUBLE_EQ(std::stod(cols.at("epsilon_mean")[t]), expected) << t;
  }
  const std::vector<nlohmann::json> end = Events(dir, "run_end");
  ASSERT_EQ(end.size(), 1u);
  EXPECT_EQ(end[0]["dp"]["steps_per_client"],
            nlohmann::json(std::vector<int>(6, 20)));
  EXPECT_FALSE(end[0]["dp"]["stopped_by_budget"].get<bool>());
  const std::vector<nlohmann::json> start = Events(dir, "run_start");
  EXPECT_EQ(start[0]["dp"]["noise_multiplier"], 0.8);
  EXPECT_EQ(start[0]["dp"]["mode"], "dicesgd");
}

TEST(DpRuntimeTest, BudgetEndsTheRunBeforeAnyClientExceedsIt) {
  // Full participation, budget between the epsilon of 3 and 4 rounds:
  // the run must stop after round 2 (3 rounds), cleanly.
  std::string yaml = kDice;
  yaml.replace(yaml.find("client_fraction: 0.5"), 20, "client_fraction: 1.0");
  RdpAccountant three(RdpOrders(256, true)), four(RdpOrders(256, true));
  three.Compose(0.25, 0.8, 12);
  four.Compose(0.25, 0.8, 16);
  const double e3 = three.Spent(1e-5, RdpConversion::kTight).epsilon;
  const double e4 = four.Spent(1e-5, RdpConversion::kTight).epsilon;
  const double budget = 0.5 * (e3 + e4);
  yaml = absl::StrCat(yaml, "rounds: 50\n");
  yaml.replace(yaml.find("rounds: 5\n"), 10, "");
  yaml.replace(yaml.find("noise_multiplier: 0.8"), 21,
               absl::StrCat("noise_multiplier: 0.8, epsilon_budget: ", budget));
  const std::string dir = RunIt(yaml, Mode::kEmbedded, "budget");
  const auto cols = Columns(dir);
  ASSERT_EQ(cols.at("round").size(), 3u);
  EXPECT_EQ(std::stod(cols.at("epsilon_max").back()), e3);
  EXPECT_LE(std::stod(cols.at("epsilon_max").back()), budget);
  // The last round is evaluated like a regular last round.
  EXPECT_NE(cols.at("test_loss").back(), "");
  const std::vector<nlohmann::json> spent = Events(dir, "privacy_budget_spent");
  ASSERT_EQ(spent.size(), 1u);
  EXPECT_EQ(spent[0]["round"], 2);
  const std::vector<nlohmann::json> end = Events(dir, "run_end");
  ASSERT_EQ(end.size(), 1u);
  EXPECT_EQ(end[0]["rounds"], 3);
  EXPECT_TRUE(end[0]["dp"]["stopped_by_budget"].get<bool>());
}

TEST(DpRuntimeTest, CalibratedNoiseMeetsTheTargetForEveryClient) {
  std::string yaml = kDice;
  yaml.replace(yaml.find("noise_multiplier: 0.8"), 21, "target_epsilon: 2");
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<Experiment> exp = BuildExperiment(*config);
  ASSERT_TRUE(exp.ok()) << exp.status();
  ASSERT_TRUE(exp->dp.has_value());
  EXPECT_TRUE(exp->dp->calibrated);
  // Every client could take part in all 5 rounds: 20 steps at q = 1/4.
  absl::StatusOr<double> z = CalibrateNoiseMultiplier(
      0.25, 20, 1e-5, 2.0, RdpOrders(256, true), RdpConversion::kTight);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(exp->dp->spec.noise_multiplier, *z);
  // The resolved config (target, no z) reloads to the same calibration.
  absl::StatusOr<v1::ExperimentConfig> again = LoadConfigText(ConfigToJson(*config));
  ASSERT_TRUE(again.ok()) << again.status();
  absl::StatusOr<Experiment> exp2 = BuildExperiment(*again);
  ASSERT_TRUE(exp2.ok()) << exp2.status();
  EXPECT_EQ(exp2->dp->spec.noise_multiplier, *z);
  // The run's final epsilon stays within the target.
  const std::string dir = RunIt(yaml, Mode::kEmbedded, "target");
  EXPECT_LE(std::stod(Columns(dir).at("epsilon_max").back()), 2.0);
}

}  // namespace
}  // namespace dp_runtime_test
}  // namespace fedsim
