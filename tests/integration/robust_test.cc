// Robust aggregation against Byzantine clients (RELIABILITY.md requirement
// 16; docs/robust.md): on a least-squares problem with 11 clients of which
// 2 send their update sign-flipped and scaled by 100, the robust rules reach
// the honest clients' optimum within a stated tolerance while the plain
// FedAvg mean diverges.
#include <cmath>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "Eigen/Dense"
#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"

namespace fedsim {
namespace robust_test {
namespace {

constexpr int kByzantine[] = {3, 8};

std::string Config(const std::string& aggregation) {
  return absl::StrCat(R"(
seed: 9
rounds: 60
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 40, dim: 6, noise_std: 0.3, heterogeneity: 0}
clients: {count: 11, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
algorithm: {name: fedavg, server_lr: 1}
local: {epochs: 1, batch_size: 0, lr: 0.2}
eval: {train_loss: false}
adversary: {clients: [3, 8], attack: sign_flip, scale: 100}
aggregation: )", aggregation, "\n");
}

struct Outcome {
  double dist_honest = 0.0;  // ||w - w_honest||, inf when not finite
  double honest_norm = 0.0;
  std::string dir;
};

Outcome RunRule(const std::string& aggregation, const std::string& name) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(Config(aggregation));
  EXPECT_TRUE(config.ok()) << config.status();
  Outcome out;
  out.dir = ::testing::TempDir() + "/robust_" + name;
  absl::StatusOr<CoordinatorRun> run = PrepareRun(*config, out.dir, "embedded");
  EXPECT_TRUE(run.ok()) << run.status();
  if (!run.ok()) return out;
  // The honest clients' optimum: least squares on their pooled rows.
  const FederatedData& data = run->experiment->data;
  std::vector<std::int64_t> rows;
  for (std::size_t k = 0; k < data.client_rows.size(); ++k) {
    const auto id = static_cast<int>(k);
    if (id == kByzantine[0] || id == kByzantine[1]) continue;
    rows.insert(rows.end(), data.client_rows[k].begin(), data.client_rows[k].end());
  }
  const auto m = static_cast<Eigen::Index>(rows.size());
  Eigen::MatrixXd x(m, data.train.dim());
  Eigen::VectorXd y(m);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    x.row(static_cast<Eigen::Index>(i)) = data.train.features.row(rows[i]).cast<double>();
    y[static_cast<Eigen::Index>(i)] = data.train.labels[rows[i]];
  }
  const Eigen::VectorXd honest = (x.transpose() * x).ldlt().solve(x.transpose() * y);
  absl::StatusOr<RunSummary> summary = RunEmbedded(*run);
  EXPECT_TRUE(summary.ok()) << summary.status();
  const FlatVector& w = run->engine->model();
  out.honest_norm = honest.norm();
  out.dist_honest = w.allFinite() ? (w - honest).norm() : INFINITY;
  return out;
}

// Measured on this problem (docs/robust.md lists the values): every robust
// rule ends within 0.06 of w_honest; the bound is 0.1. The mean is thrown
// past 1e40.
constexpr double kTolerance = 0.1;

TEST(RobustAggregationTest, MeanDivergesUnderSignFlipTimes100) {
  const Outcome mean = RunRule("{rule: mean}", "mean");
  EXPECT_GT(mean.dist_honest, 1e40);
}

class RobustRuleTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RobustRuleTest, ReachesTheHonestOptimum) {
  const std::string rule = GetParam();
  std::string agg = absl::StrCat("{rule: ", rule);
  if (rule == "trimmed_mean") agg += ", trim_fraction: 0.2";
  if (rule == "krum" || rule == "multi_krum" || rule == "bulyan") agg += ", byzantine: 2";
  agg += "}";
  const Outcome o = RunRule(agg, rule);
  std::printf("%s: ||w - w_honest|| = %.3g (||w_honest|| = %.3g)\n", rule.c_str(),
              o.dist_honest, o.honest_norm);
  EXPECT_LT(o.dist_honest, kTolerance) << rule;
}

INSTANTIATE_TEST_SUITE_P(Rules, RobustRuleTest,
                         ::testing::Values("coordinate_median", "trimmed_mean", "krum",
                                           "multi_krum", "bulyan"));

// A norm bound (reject, B = 5; honest updates start near 0.5, the x100 ones
// near 50) refuses the attacked updates: INVALID_ARGUMENT, one
// result_rejected line each, the task closed at once, the round goes on
// with the 9 honest clients. (Later, as honest updates shrink, some x100
// updates fall under B and get in: a norm bound alone is no robust rule.)
TEST(RobustAggregationTest, NormBoundRejectsTheByzantineUpdates) {
  const Outcome o = RunRule("{max_update_norm: 5, norm_bound_action: reject}", "reject");
  std::ifstream in(o.dir + "/events.jsonl");
  std::string line;
  int rejected = 0;
  std::vector<int> round0;
  while (std::getline(in, line)) {
    const nlohmann::json e = nlohmann::json::parse(line);
    if (e["event"] == "result_rejected") {
      ++rejected;
      EXPECT_EQ(e["code"], "INVALID_ARGUMENT");
      EXPECT_TRUE(e["client"] == 3 || e["client"] == 8) << line;
      if (e["round"] == 0) round0.push_back(e["client"].get<int>());
    }
    if (e["event"] == "round_end" && e["round"] == 0) {
      EXPECT_EQ(e["participants"].size(), 9u);  // the honest clients
    }
    if (e["event"] == "run_end") {
      EXPECT_EQ(e["pushes_rejected"], rejected);
      EXPECT_EQ(e["tasks_dropped"], rejected);
      EXPECT_EQ(e["tasks_timed_out"], 0);
    }
  }
  EXPECT_EQ(round0, (std::vector<int>{3, 8}));
}

// Issue 18: a round whose robust rule gets too few results (Krum with
// f = 1 needs 5; Bernoulli(0.35) participation of 11 clients often gives
// fewer) leaves the model unchanged, and its valid results are counted as
// what they were: cancelled (task_cancelled, run_end.tasks_cancelled), not
// aggregated and not dropped; every issued task is reconciled.
TEST(RobustAggregationTest, RoundsTheRuleCannotAggregateCancelTheirResults) {
  // Config()'s run without its adversary, with Bernoulli participation and
  // 40 rounds.
  std::string yaml = Config("{rule: krum, byzantine: 1}");
  const auto replace = [&yaml](const std::string& from, const std::string& to) {
    ASSERT_NE(yaml.find(from), std::string::npos) << from;
    yaml.replace(yaml.find(from), from.size(), to);
  };
  replace("participation: {client_fraction: 1}", "participation: {model: bernoulli, p_mean: 0.35}");
  replace("rounds: 60", "rounds: 40");
  replace("adversary: {clients: [3, 8], attack: sign_flip, scale: 100}\n", "");
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string dir = ::testing::TempDir() + "/robust_cancelled";
  absl::StatusOr<CoordinatorRun> run = PrepareRun(*config, dir, "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_TRUE(RunEmbedded(*run, nullptr).ok());
  std::ifstream in(dir + "/events.jsonl");
  std::int64_t failed_rounds = 0, failed_results = 0, cancelled_events = 0,
               aggregated = 0;
  nlohmann::json end;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json e = nlohmann::json::parse(line);
    if (e["event"] == "aggregation_failed") {
      ++failed_rounds;
      failed_results += e["results"].get<std::int64_t>();
    }
    if (e["event"] == "task_cancelled") {
      ++cancelled_events;
      EXPECT_NE(e["reason"].get<std::string>().find("aggregation_failed"), std::string::npos);
    }
    if (e["event"] == "round_end") aggregated += e["participants"].size();
    if (e["event"] == "run_end") end = e;
  }
  ASSERT_FALSE(end.is_null());
  EXPECT_GT(failed_rounds, 3);       // the case happened, several times
  EXPECT_LT(failed_rounds, 37);      // and rounds that could aggregate did
  EXPECT_GT(failed_results, 0);
  EXPECT_EQ(cancelled_events, failed_results);
  EXPECT_EQ(end["tasks_cancelled"], failed_results);
  EXPECT_EQ(end["tasks_dropped"], 0);
  EXPECT_EQ(end["tasks_aggregated"], aggregated);
  EXPECT_EQ(end["tasks_issued"], aggregated + failed_results);
  EXPECT_EQ(end["tasks_unreconciled"], 0);
}

}  // namespace
}  // namespace robust_test
}  // namespace fedsim
