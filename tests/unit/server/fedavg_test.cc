// FedAvg's server side (ALGORITHMS.md §1, Decision 1): the plan hands every
// participant the same local spec; aggregation weights are n_k / m_t over
// the clients that returned, scaled by the server step size.
#include "server/strategy/fedavg.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace fedavg_test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

ClientResult Result(std::int64_t client, std::int64_t n,
                    std::vector<double> update) {
  ClientResult r;
  r.task = TaskId(client + 100);
  r.client = ClientId(client);
  r.num_examples = n;
  r.update = Eigen::Map<const FlatVector>(update.data(), update.size());
  return r;
}

FedAvgOptions Options(double server_lr) {
  FedAvgOptions o;
  o.server_lr = server_lr;
  o.local.epochs = 3;
  o.local.batch_size = 16;
  o.local.lr = 0.25;
  return o;
}

TEST(FedAvgTest, PlanGivesEveryParticipantTheLocalSpec) {
  FedAvg fedavg(Options(1.0), {10, 30, 60});
  const std::vector<ClientId> who = {ClientId(0), ClientId(2)};
  const std::vector<TaskSpec> plan = fedavg.Plan(0, who);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].client, ClientId(0));
  EXPECT_EQ(plan[1].client, ClientId(2));
  for (const TaskSpec& t : plan) {
    EXPECT_EQ(t.local.epochs, 3);
    EXPECT_EQ(t.local.batch_size, 16);
    EXPECT_EQ(t.local.lr, 0.25);
  }
}

TEST(FedAvgTest, WeightsAreExampleCountsOverTheClientsThatReturned) {
  FedAvg fedavg(Options(1.0), {10, 30, 60});
  const std::vector<ClientId> who = {ClientId(0), ClientId(1), ClientId(2)};
  fedavg.Plan(0, who);
  // Client 1 dropped: weights renormalise over clients 0 and 2 (m_t = 70).
  const std::vector<ClientResult> results = {Result(0, 10, {7.0, 0.0}),
                                             Result(2, 60, {0.0, 7.0})};
  FlatVector global(2);
  global << 1.0, -1.0;
  const absl::StatusOr<AggregationReport> report =
      fedavg.Aggregate(0, results, global);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_THAT(report->weights, ElementsAre(Pair(ClientId(0), 10.0 / 70.0),
                                           Pair(ClientId(2), 60.0 / 70.0)));
  EXPECT_DOUBLE_EQ(global[0], 1.0 + 1.0);
  EXPECT_DOUBLE_EQ(global[1], -1.0 + 6.0);
}

TEST(FedAvgTest, ServerStepSizeScalesTheMeanUpdate) {
  FedAvg fedavg(Options(0.5), {4, 4});
  const std::vector<ClientId> who = {ClientId(0), ClientId(1)};
  fedavg.Plan(3, who);
  const std::vector<ClientResult> results = {Result(0, 4, {2.0}),
                                             Result(1, 4, {4.0})};
  FlatVector global = FlatVector::Constant(1, 10.0);
  ASSERT_TRUE(fedavg.Aggregate(3, results, global).ok());
  EXPECT_DOUBLE_EQ(global[0], 10.0 + 0.5 * 3.0);
}

TEST(FedAvgTest, NobodyReturningLeavesTheModelUnchanged) {
  FedAvg fedavg(Options(1.0), {5});
  const std::vector<ClientId> who = {ClientId(0)};
  fedavg.Plan(0, who);
  FlatVector global = FlatVector::Constant(3, 2.5);
  const absl::StatusOr<AggregationReport> report =
      fedavg.Aggregate(0, {}, global);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->weights.empty());
  EXPECT_EQ(global, FlatVector::Constant(3, 2.5));
}

TEST(FedAvgTest, ResultOfAnUnplannedClientIsRejected) {
  FedAvg fedavg(Options(1.0), {5, 5, 5});
  const std::vector<ClientId> who = {ClientId(0)};
  fedavg.Plan(0, who);
  const std::vector<ClientResult> results = {Result(1, 5, {1.0})};
  FlatVector global = FlatVector::Zero(1);
  const absl::StatusOr<AggregationReport> report =
      fedavg.Aggregate(0, results, global);
  EXPECT_EQ(report.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(report.status().message(), HasSubstr("1"));
  EXPECT_EQ(global[0], 0.0);
}

}  // namespace
}  // namespace fedavg_test
}  // namespace fedsim
