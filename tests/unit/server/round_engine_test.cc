// The synchronous round engine: which results it accepts, which it rejects
// with which status, and that every issued task is accounted for.
#include "server/coordinator/round_engine.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/engine_harness.h"
#include "server/participation/participation.h"
#include "server/strategy/fedavg.h"
#include "server/strategy/scaffold.h"

namespace fedsim {
namespace round_engine_test {
namespace {

using ::testing::HasSubstr;

class RoundEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RoundEngineOptions options;
    options.rounds = 3;
    EngineInputs in;
    in.client_sizes = {3, 5, 8};
    in.train = &train_;  // no objective: nothing is evaluated
    in.test = &test_;
    FedAvgOptions fo;
    engine_ = std::make_unique<RoundEngine>(
        options, in, std::make_unique<UniformCohort>(1, 3, 1.0),
        std::make_unique<FedAvg>(fo, in.client_sizes), FlatVector::Zero(2));
  }

  ClientResult ResultFor(const Task& t, double value = 1.0) {
    ClientResult r;
    r.task = t.id;
    r.client = t.client;
    r.update = FlatVector::Constant(2, value);
    r.num_examples = sizes_[t.client.value];
    return r;
  }

  const std::vector<std::int64_t> sizes_ = {3, 5, 8};
  Dataset train_, test_;
  std::unique_ptr<RoundEngine> engine_;
};

TEST_F(RoundEngineTest, FullRoundAggregatesWithExampleWeights) {
  const std::vector<Task> tasks = engine_->TakeTasks();
  ASSERT_EQ(tasks.size(), 3u);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    EXPECT_EQ(tasks[i].client, ClientId(static_cast<std::int64_t>(i)));
    EXPECT_EQ(tasks[i].round, 0);
    ASSERT_TRUE(engine_->Submit(ResultFor(tasks[i], i + 1.0), 0).ok());
  }
  EXPECT_TRUE(engine_->AllTasksResolved());
  const absl::StatusOr<MetricsRow> row = test::FinishOne(*engine_, 0.5);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->participants, 3);
  // (3*1 + 5*2 + 8*3) / 16
  EXPECT_DOUBLE_EQ(engine_->model()[0], 37.0 / 16.0);
  EXPECT_EQ(engine_->round(), 1);
}

TEST_F(RoundEngineTest, RejectionsCarryTheRightCodes) {
  const std::vector<Task> tasks = engine_->TakeTasks();
  ClientResult unknown = ResultFor(tasks[0]);
  unknown.task = TaskId(999);
  EXPECT_EQ(engine_->Submit(unknown, 0).code(), absl::StatusCode::kNotFound);

  ClientResult foreign = ResultFor(tasks[0]);
  foreign.client = ClientId(1);
  foreign.num_examples = 5;
  const absl::Status st = engine_->Submit(foreign, 0);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("issued to client 0"));

  ClientResult wrong_size = ResultFor(tasks[0]);
  wrong_size.update = FlatVector::Zero(3);
  EXPECT_THAT(engine_->Submit(wrong_size, 0).message(),
              HasSubstr("update has 3 values, expected 2"));

  ClientResult nan = ResultFor(tasks[0]);
  nan.update[1] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(engine_->Submit(nan, 0).message(), HasSubstr("NaN"));
  ClientResult inf = ResultFor(tasks[0]);
  inf.update[0] = std::numeric_limits<double>::infinity();
  EXPECT_EQ(engine_->Submit(inf, 0).code(),
            absl::StatusCode::kInvalidArgument);

  ClientResult lying = ResultFor(tasks[0]);
  lying.num_examples = 1000;
  EXPECT_THAT(engine_->Submit(lying, 0).message(),
              HasSubstr("num_examples = 1000"));

  // None of the rejections consumed the task: the good result still lands,
  // and a second push of it is a duplicate.
  EXPECT_TRUE(engine_->Submit(ResultFor(tasks[0]), 0).ok());
  EXPECT_EQ(engine_->Submit(ResultFor(tasks[0]), 0).code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(engine_->tally().rejected_pushes, 6);
  EXPECT_EQ(engine_->tally().duplicate_pushes, 1);
}

TEST_F(RoundEngineTest, StaleAndDroppedTasksAreRefusedAndAccountedFor) {
  const std::vector<Task> round0 = engine_->TakeTasks();
  engine_->Drop(round0[1].id, "worker crashed", 0);
  EXPECT_EQ(engine_->Submit(ResultFor(round0[1]), 0).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(engine_->Submit(ResultFor(round0[0], 2.0), 0).ok());
  EXPECT_FALSE(engine_->AllTasksResolved());  // task 2 still open
  const absl::StatusOr<MetricsRow> row = test::FinishOne(*engine_, 1.0);
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->participants, 1);
  // Only client 0 returned: its update is the mean update.
  EXPECT_DOUBLE_EQ(engine_->model()[0], 2.0);

  engine_->TakeTasks();
  const absl::Status stale = engine_->Submit(ResultFor(round0[2]), 0);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.message(), HasSubstr("stale"));

  const TaskTally& t = engine_->tally();
  EXPECT_EQ(t.issued, 6);
  EXPECT_EQ(t.dropped, 1);
  EXPECT_EQ(t.timed_out, 1);
  EXPECT_EQ(t.aggregated, 1);
}

TEST_F(RoundEngineTest, RunEndsAfterTheConfiguredRounds) {
  for (int t = 0; t < 3; ++t) {
    ASSERT_FALSE(engine_->done());
    for (const Task& task : engine_->TakeTasks()) {
      ASSERT_TRUE(engine_->Submit(ResultFor(task, 0.0), 0).ok());
    }
    ASSERT_TRUE(test::FinishOne(*engine_, t).ok());
  }
  EXPECT_TRUE(engine_->done());
  EXPECT_EQ(engine_->tally().issued, 9);
  EXPECT_EQ(engine_->tally().aggregated, 9);
}

}  // namespace
}  // namespace round_engine_test
}  // namespace fedsim

namespace fedsim {
namespace round_engine_test {
namespace {

// Local DP accounting in the engine: accepted results charge the steps they
// report, tasks that never returned their planned steps; the metrics row
// carries the ledger's max and mean.
TEST(RoundEnginePrivacyTest, ChargesReportedAndUnreturnedSteps) {
  Dataset train, test;
  RoundEngineOptions options;
  options.rounds = 2;
  EngineInputs in;
  in.client_sizes = {3, 5, 8};
  in.train = &train;
  in.test = &test;
  PrivacyLedgerOptions lo;
  lo.orders = RdpOrders(32, false);
  lo.noise_multiplier = 1.0;
  lo.sampling_rates = {0.5, 0.2, 0.125};
  lo.steps_per_task = {2, 5, 8};
  in.privacy = std::make_shared<PrivacyLedger>(lo);
  FedAvgOptions fo;
  RoundEngine engine(options, in, std::make_unique<UniformCohort>(1, 3, 1.0),
                     std::make_unique<FedAvg>(fo, in.client_sizes),
                     FlatVector::Zero(2));
  const std::vector<Task> tasks = engine.TakeTasks();
  ASSERT_EQ(tasks.size(), 3u);
  for (int i : {0, 1}) {
    ClientResult r;
    r.task = tasks[i].id;
    r.client = tasks[i].client;
    r.update = FlatVector::Zero(2);
    r.num_examples = in.client_sizes[i];
    r.num_steps = 2 + i;  // client 0: 2 steps, client 1: 3
    ASSERT_TRUE(engine.Submit(r, 0).ok());
  }
  // Client 2's task times out: it is charged its planned 8 steps.
  absl::StatusOr<MetricsRow> row = test::FinishOne(engine, 0.0);
  ASSERT_TRUE(row.ok()) << row.status();
  const PrivacyLedger& ledger = *engine.privacy();
  EXPECT_EQ(ledger.steps(0), 2);
  EXPECT_EQ(ledger.steps(1), 3);
  EXPECT_EQ(ledger.steps(2), 8);
  const double e[] = {ledger.Epsilon(0), ledger.Epsilon(1), ledger.Epsilon(2)};
  EXPECT_GT(e[2], 0.0);
  EXPECT_EQ(row->epsilon_max, std::max({e[0], e[1], e[2]}));
  EXPECT_DOUBLE_EQ(row->epsilon_mean, (e[0] + e[1] + e[2]) / 3.0);
  EXPECT_FALSE(engine.done());
}

// A robust rule without enough results (Krum, f = 1, needs 5; 3 arrive):
// the model stays and the results are cancelled, like a failed quorum, so
// the reconciliation counts them dropped, not aggregated.
TEST(RoundEngineRobustTest, FailedRobustAggregationCancelsTheResults) {
  Dataset train, test;
  RoundEngineOptions options;
  options.rounds = 2;
  EngineInputs in;
  in.client_sizes = {3, 5, 8};
  in.train = &train;
  in.test = &test;
  FedAvgOptions fo;
  fo.robust.rule = RobustRule::kKrum;
  fo.robust.byzantine = 1;
  RoundEngine engine(options, in, std::make_unique<UniformCohort>(1, 3, 1.0),
                     std::make_unique<FedAvg>(fo, in.client_sizes),
                     FlatVector::Constant(2, 7.0));
  const std::vector<Task> tasks = engine.TakeTasks();
  ASSERT_EQ(tasks.size(), 3u);
  for (const Task& t : tasks) {
    ClientResult r;
    r.task = t.id;
    r.client = t.client;
    r.update = FlatVector::Constant(2, 1.0);
    r.num_examples = in.client_sizes[t.client.value];
    r.train_loss = 0.5;
    ASSERT_TRUE(engine.Submit(r, 0).ok());
  }
  absl::StatusOr<MetricsRow> row = test::FinishOne(engine, 0.0);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(engine.model()[0], 7.0);
  EXPECT_EQ(engine.model()[1], 7.0);
  EXPECT_EQ(row->participants, 0);
  EXPECT_TRUE(std::isnan(row->client_loss));
  EXPECT_EQ(engine.tally().issued, 3);
  EXPECT_EQ(engine.tally().aggregated, 0);
  EXPECT_EQ(engine.tally().dropped, 0);
  EXPECT_EQ(engine.tally().cancelled, 3);
  EXPECT_EQ(engine.round(), 1);
}

TEST(RoundEnginePrivacyTest, NoLedgerNoEpsilon) {
  Dataset train, test;
  EngineInputs in;
  in.client_sizes = {3};
  in.train = &train;
  in.test = &test;
  FedAvgOptions fo;
  RoundEngine engine(RoundEngineOptions{}, in,
                     std::make_unique<UniformCohort>(1, 1, 1.0),
                     std::make_unique<FedAvg>(fo, in.client_sizes),
                     FlatVector::Zero(2));
  engine.TakeTasks();
  absl::StatusOr<MetricsRow> row = test::FinishOne(engine, 0.0);
  ASSERT_TRUE(row.ok());
  EXPECT_TRUE(std::isnan(row->epsilon_max));
  EXPECT_TRUE(std::isnan(row->epsilon_mean));
  EXPECT_EQ(engine.privacy(), nullptr);
}

// The algorithm's own check of a result is the strategy's (CheckResult):
// SCAFFOLD needs Delta c_i of d finite values; no other algorithm takes
// one. SCAFFOLD's tasks carry c: twice the payload each way.
TEST_F(RoundEngineTest, TheStrategyChecksItsOwnResultFields) {
  const std::vector<Task> plain = engine_->TakeTasks();
  ClientResult extra = ResultFor(plain[0]);
  extra.control_delta = FlatVector::Zero(2);
  const absl::Status refused = engine_->Submit(extra, 0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(refused.message(),
            "round 0, client 0: the result has a control_delta the task did not ask for");

  RoundEngineOptions options;
  options.rounds = 1;
  EngineInputs in;
  in.client_sizes = sizes_;
  in.train = &train_;
  in.test = &test_;
  ScaffoldOptions so;
  RoundEngine scaffold(options, in, std::make_unique<UniformCohort>(1, 3, 1.0),
                       std::make_unique<Scaffold>(so, 3, 2), FlatVector::Zero(2));
  const std::vector<Task> tasks = scaffold.TakeTasks();
  ASSERT_EQ(tasks.size(), 3u);
  ASSERT_TRUE(tasks[0].scaffold.has_value());
  EXPECT_EQ(ExtraVectors(tasks[0]), 1);
  ClientResult none = ResultFor(tasks[0]);
  EXPECT_EQ(scaffold.Submit(none, 0).message(),
            "round 0, client 0: the result has no control_delta (SCAFFOLD needs one)");
  ClientResult short_delta = ResultFor(tasks[1]);
  short_delta.control_delta = FlatVector::Zero(1);
  EXPECT_EQ(scaffold.Submit(short_delta, 0).message(),
            "round 0, client 1: control_delta has 1 values, expected 2");
  ClientResult nan = ResultFor(tasks[2]);
  nan.control_delta = FlatVector::Constant(2, std::nan(""));
  EXPECT_EQ(scaffold.Submit(nan, 0).message(),
            "round 0, client 2: control_delta has NaN or infinite values");
}

TEST_F(RoundEngineTest, ScaffoldRoundsCountTheControlVariatesInTheBytes) {
  RoundEngineOptions options;
  options.rounds = 1;
  EngineInputs in;
  in.client_sizes = sizes_;
  in.train = &train_;
  in.test = &test_;
  ScaffoldOptions so;
  RoundEngine scaffold(options, in, std::make_unique<UniformCohort>(1, 3, 1.0),
                       std::make_unique<Scaffold>(so, 3, 2), FlatVector::Zero(2));
  for (const Task& t : scaffold.TakeTasks()) {
    ClientResult r = ResultFor(t);
    r.control_delta = FlatVector::Constant(2, 0.5);
    ASSERT_TRUE(scaffold.Submit(r, 0).ok());
  }
  const absl::StatusOr<MetricsRow> row = test::FinishOne(scaffold);
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->bytes_down, 3 * 2 * 2 * 8);  // 3 tasks x (x, c) x 2 values x 8 bytes
  EXPECT_EQ(row->bytes_up, 3 * 2 * 2 * 8);    // 3 results x (Delta y, Delta c)
}

}  // namespace
}  // namespace round_engine_test
}  // namespace fedsim

namespace fedsim {
namespace round_engine_test {
namespace {

// local.lr_schedule: StepLR and CosineAnnealingLR stepped once a round.
TEST(LrScheduleTest, ClosedForms) {
  LrSchedule constant;
  EXPECT_EQ(constant.LrAt(0.1, 7, 10), 0.1);
  LrSchedule step;
  step.kind = LrSchedule::Kind::kStep;
  step.step_rounds = 3;
  step.gamma = 0.5;
  EXPECT_EQ(step.LrAt(0.8, 0, 10), 0.8);
  EXPECT_EQ(step.LrAt(0.8, 2, 10), 0.8);
  EXPECT_EQ(step.LrAt(0.8, 3, 10), 0.4);
  EXPECT_EQ(step.LrAt(0.8, 9, 10), 0.1);
  LrSchedule cosine;
  cosine.kind = LrSchedule::Kind::kCosine;
  cosine.lr_min = 0.01;
  EXPECT_DOUBLE_EQ(cosine.LrAt(0.1, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(cosine.LrAt(0.1, 5, 10), 0.01 + 0.09 * 0.5);
  EXPECT_NEAR(cosine.LrAt(0.1, 10, 10), 0.01, 1e-15);
}

// The engine gives every task of round r the schedule's rate.
TEST(LrScheduleTest, TasksCarryTheRoundsRate) {
  RoundEngineOptions options;
  options.rounds = 4;
  options.lr_schedule.kind = LrSchedule::Kind::kStep;
  options.lr_schedule.step_rounds = 2;
  options.lr_schedule.gamma = 0.1;
  Dataset train, test;
  EngineInputs in;
  in.client_sizes = {3, 5};
  in.train = &train;
  in.test = &test;
  FedAvgOptions fo;
  fo.local.lr = 0.5;
  RoundEngine engine(options, in, std::make_unique<UniformCohort>(1, 2, 1.0),
                     std::make_unique<FedAvg>(fo, in.client_sizes), FlatVector::Zero(2));
  const std::vector<double> want = {0.5, 0.5, 0.05, 0.05};
  for (int r = 0; r < 4; ++r) {
    for (const Task& task : engine.TakeTasks()) {
      EXPECT_DOUBLE_EQ(task.local.lr, want[static_cast<std::size_t>(r)]) << "round " << r;
      ClientResult result;
      result.task = task.id;
      result.client = task.client;
      result.update = FlatVector::Zero(2);
      result.num_examples = in.client_sizes[static_cast<std::size_t>(task.client.value)];
      ASSERT_TRUE(engine.Submit(result, 0).ok());
    }
    ASSERT_TRUE(test::FinishOne(engine, r).ok());
  }
}

}  // namespace
}  // namespace round_engine_test
}  // namespace fedsim
