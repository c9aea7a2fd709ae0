// WallEngine (async.clock = wall, docs/async.md "The wall clock"), driven
// with explicit ticks so that every schedule and weight is exact: FedFix
// windows close on their multiples and include arrivals at their end; the
// `weight` variants' tau_i and f_i are estimated from the arrivals seen so
// far, exactly as documented; bad, duplicate, stale and late results get
// their statuses; a dropped or overdue task is an arrival without an
// update; the horizon and `rounds` end the run. On heterogeneous quadratics
// with fixed task times, the `weight` variants converge to the p-weighted
// optimum and the `identical` ones to the speed-biased surrogate (§4.3).
#include "server/coordinator/wall_engine.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "common/data/dataset.h"
#include "gtest/gtest.h"

namespace fedsim {
namespace wall_engine_test {
namespace {

constexpr std::int64_t kRows = 10;  // every client's n_k

class Harness {
 public:
  Harness(AsyncScheme scheme, int n, bool weight_variant, FlatVector initial,
          std::int64_t window = 10, std::int64_t buffer = 1,
          std::int64_t max_steps = 1000000, Tick horizon = -1, double server_lr = 1.0) {
    WallEngineOptions o;
    o.scheme = scheme;
    o.weight_variant = weight_variant;
    o.importance_mass.assign(static_cast<std::size_t>(n), 1.0);
    o.window_ticks = window;
    o.buffer_size = buffer;
    o.max_steps = max_steps;
    o.horizon = horizon;
    o.ticks_per_unit = 1;  // ticks are the time units here
    o.server_lr = server_lr;
    o.name = "test";
    EngineInputs in;
    in.train = &train_;
    in.test = &test_;
    in.client_sizes.assign(static_cast<std::size_t>(n), kRows);
    AsyncSchedulerOptions so;
    so.scheme = scheme;
    so.num_clients = n;
    so.window_ticks = window;
    so.buffer_size = buffer;
    engine_ = std::make_unique<WallEngine>(o, in, MakeAsyncScheduler(so), std::move(initial));
    Collect();
  }

  WallEngine& engine() { return *engine_; }

  // The open task of every client, updated after every call.
  const Task& task(std::int64_t client) { return tasks_.at(client); }

  absl::Status Push(std::int64_t client, const FlatVector& update, Tick now) {
    return PushTask(task(client), update, now);
  }
  absl::Status PushTask(const Task& t, const FlatVector& update, Tick now) {
    ClientResult r;
    r.task = t.id;
    r.client = t.client;
    r.update = update;
    r.num_examples = kRows;
    absl::Status s = engine_->Submit(std::move(r), now);
    Collect();
    return s;
  }
  void Advance(Tick now) {
    engine_->AdvanceThrough(now);
    Collect();
  }
  void Drop(std::int64_t client, Tick now) {
    engine_->Drop(task(client).id, "test", now);
    Collect();
  }
  // Clients whose task started at the last call.
  const std::vector<std::int64_t>& restarted() const { return restarted_; }
  std::vector<StepReport> Steps() { return *engine_->Close(); }

 private:
  void Collect() {
    restarted_.clear();
    for (Task& t : engine_->TakeTasks()) {
      restarted_.push_back(t.client.value);
      tasks_[t.client.value] = std::move(t);
    }
  }

  Dataset train_, test_;
  std::unique_ptr<WallEngine> engine_;
  std::map<std::int64_t, Task> tasks_;
  std::vector<std::int64_t> restarted_;
};

FlatVector Vec(std::initializer_list<double> v) {
  FlatVector out(static_cast<Eigen::Index>(v.size()));
  Eigen::Index i = 0;
  for (double x : v) out[i++] = x;
  return out;
}

std::vector<std::int64_t> Clients(const nlohmann::json& contributors) {
  std::vector<std::int64_t> out;
  for (const nlohmann::json& c : contributors) out.push_back(c["client"].get<std::int64_t>());
  return out;
}

TEST(WallEngineTest, FedFixWindowsCloseOnTheirMultiplesAndIncludeArrivalsAtTheirEnd) {
  Harness h(AsyncScheme::kFedFix, 3, /*weight_variant=*/false, Vec({0.0}), /*window=*/10);
  EXPECT_EQ(h.restarted(), (std::vector<std::int64_t>{0, 1, 2}));
  EXPECT_EQ(h.engine().NextDeadline(), std::optional<Tick>(10));
  ASSERT_TRUE(h.Push(0, Vec({3.0}), 4).ok());
  ASSERT_TRUE(h.Push(2, Vec({6.0}), 7).ok());
  h.Advance(9);
  EXPECT_TRUE(h.Steps().empty());
  // The coordinator's loop at the window's end leaves it open...
  h.engine().AdvanceBefore(10);
  EXPECT_TRUE(h.Steps().empty());
  // ...for a result that arrives at its end.
  ASSERT_TRUE(h.Push(1, Vec({9.0}), 10).ok());
  EXPECT_TRUE(h.Steps().empty());
  h.Advance(10);
  std::vector<StepReport> steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].snapshot->wall_tick, 10);
  EXPECT_EQ(steps[0].row.round, 0);
  EXPECT_EQ(steps[0].row.participants, 3);
  EXPECT_EQ(Clients(steps[0].event["contributors"]), (std::vector<std::int64_t>{0, 1, 2}));
  // identical FedFix: d_i = p_i = 1/3.
  EXPECT_DOUBLE_EQ((*steps[0].model)[0], (3.0 + 9.0 + 6.0) / 3.0);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["task_time"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][1]["arrival"].get<double>(), 10.0);
  EXPECT_EQ(h.restarted(), (std::vector<std::int64_t>{0, 1, 2}));
  for (std::int64_t k = 0; k < 3; ++k) {
    EXPECT_EQ(h.task(k).round, 1);  // task index 1
    EXPECT_DOUBLE_EQ((*h.task(k).params)[0], 6.0);
  }

  // Window (10, 20]: only client 0 (staleness 0); (20, 30]: nobody, still a
  // step; a result at 31 belongs to (30, 40].
  ASSERT_TRUE(h.Push(0, Vec({3.0}), 15).ok());
  h.Advance(30);
  ASSERT_TRUE(h.Push(1, Vec({30.0}), 31).ok());
  h.Advance(39);
  steps = h.Steps();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].snapshot->wall_tick, 20);
  EXPECT_EQ(Clients(steps[0].event["contributors"]), (std::vector<std::int64_t>{0}));
  EXPECT_EQ(steps[0].event["contributors"][0]["staleness"], 0);
  EXPECT_DOUBLE_EQ((*steps[0].model)[0], 7.0);
  EXPECT_EQ(steps[1].snapshot->wall_tick, 30);
  EXPECT_EQ(steps[1].row.participants, 0);
  EXPECT_DOUBLE_EQ((*steps[1].model)[0], 7.0);
  h.Advance(40);
  steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(Clients(steps[0].event["contributors"]), (std::vector<std::int64_t>{1}));
  // Client 1's task started from version 1 at tick 10; aggregated at step 3.
  EXPECT_EQ(steps[0].event["contributors"][0]["base_version"], 1);
  EXPECT_EQ(steps[0].event["contributors"][0]["staleness"], 2);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["task_time"].get<double>(), 21.0);
  const TaskTally t = h.engine().tally();
  EXPECT_EQ(t.issued, 3 + 3 + 1 + 1);
  EXPECT_EQ(t.aggregated, 5);
  EXPECT_EQ(t.in_flight(), 3);
}

TEST(WallEngineTest, AsyncFedAvgWeightsComeFromTheMeasuredTaskTimes) {
  Harness h(AsyncScheme::kAsyncFedAvg, 2, /*weight_variant=*/true, Vec({0.0}));
  // Client 0 after 10 ticks; client 1 has no time yet and takes the mean of
  // the known ones: tau = (10, 10), d_0 = 1/2 * 10 * (1/10 + 1/10) = 1.
  ASSERT_TRUE(h.Push(0, Vec({1.0}), 10).ok());
  std::vector<StepReport> steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["weight"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ((*steps[0].model)[0], 1.0);
  EXPECT_EQ(h.restarted(), (std::vector<std::int64_t>{0}));
  // Client 0's second task (issued at 10) after 15: tau_0 = 12.5, and
  // client 1 still takes the mean: d_0 = 1/2 * 12.5 * (2 / 12.5) = 1.
  ASSERT_TRUE(h.Push(0, Vec({1.0}), 25).ok());
  steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["weight"].get<double>(), 1.0);
  EXPECT_EQ(steps[0].event["contributors"][0]["base_version"], 1);
  // Client 1 after 30: d_1 = 1/2 * 30 * (1/12.5 + 1/30) = 1.7, from
  // version 0 (staleness 2).
  ASSERT_TRUE(h.Push(1, Vec({1.0}), 30).ok());
  steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["weight"].get<double>(), 1.7);
  EXPECT_EQ(steps[0].event["contributors"][0]["staleness"], 2);
  EXPECT_DOUBLE_EQ((*steps[0].model)[0], 3.7);
  // Time never runs backwards: a call with an earlier tick counts as now.
  ASSERT_TRUE(h.Push(0, Vec({0.0}), 20).ok());
  EXPECT_DOUBLE_EQ(h.Steps()[0].event["contributors"][0]["task_time"].get<double>(), 5.0);
  const std::vector<double> tau = h.engine().MeanTaskSeconds();
  EXPECT_DOUBLE_EQ(tau[0], (10.0 + 15.0 + 5.0) / 3.0);
  EXPECT_DOUBLE_EQ(tau[1], 30.0);
}

TEST(WallEngineTest, FedBuffWeightsComeFromTheStepsSoFar) {
  Harness h(AsyncScheme::kFedBuff, 3, /*weight_variant=*/true, Vec({0.0}), 10, /*buffer=*/2);
  ASSERT_TRUE(h.Push(0, Vec({1.0}), 1).ok());
  EXPECT_TRUE(h.Steps().empty());
  ASSERT_TRUE(h.Push(1, Vec({1.0}), 2).ok());
  std::vector<StepReport> steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  // f = (1, 1, 0) after one step: d_i = p_i / f_i = 1/3.
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["weight"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][1]["weight"].get<double>(), 1.0 / 3.0);
  ASSERT_TRUE(h.Push(0, Vec({1.0}), 3).ok());
  ASSERT_TRUE(h.Push(2, Vec({1.0}), 4).ok());
  steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  // f = (2/2, 1/2, 1/2): d_0 = 1/3, d_2 = 2/3.
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][0]["weight"].get<double>(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(steps[0].event["contributors"][1]["weight"].get<double>(), 2.0 / 3.0);
  EXPECT_EQ(h.engine().StepFractions(), (std::vector<double>{1.0, 0.5, 0.5}));
}

TEST(WallEngineTest, BadDuplicateStaleAndLateResultsGetTheirStatus) {
  Harness h(AsyncScheme::kFedFix, 2, /*weight_variant=*/false, Vec({0.0, 0.0}), 10, 1,
            /*max_steps=*/2);
  const Task first = h.task(0);
  Task foreign = first;
  foreign.id = TaskId(99);
  EXPECT_TRUE(absl::IsNotFound(h.PushTask(foreign, Vec({1.0, 1.0}), 1)));
  Task other = h.task(1);
  other.client = ClientId(0);  // client 1's task pushed as client 0's
  EXPECT_TRUE(absl::IsFailedPrecondition(h.PushTask(other, Vec({1.0, 1.0}), 1)));
  EXPECT_TRUE(absl::IsInvalidArgument(h.Push(0, Vec({1.0}), 1)));
  EXPECT_TRUE(absl::IsInvalidArgument(h.Push(0, Vec({NAN, 1.0}), 1)));
  EXPECT_TRUE(h.engine().TaskOpen(first.id));  // rejected results leave it open
  ASSERT_TRUE(h.Push(0, Vec({1.0, 1.0}), 2).ok());
  EXPECT_FALSE(h.engine().TaskOpen(first.id));
  EXPECT_TRUE(absl::IsAlreadyExists(h.PushTask(first, Vec({1.0, 1.0}), 3)));
  h.Advance(10);  // step 0 aggregates it
  EXPECT_TRUE(absl::IsAlreadyExists(h.PushTask(first, Vec({1.0, 1.0}), 11)));
  const Task second = h.task(0);
  ASSERT_TRUE(h.Push(0, Vec({1.0, 1.0}), 12).ok());
  h.Advance(20);  // step 1, the last (rounds = 2)
  EXPECT_TRUE(h.engine().done());
  EXPECT_TRUE(absl::IsFailedPrecondition(h.Push(1, Vec({1.0, 1.0}), 21)));
  // The first task is now neither open nor the last aggregated: stale.
  EXPECT_NE(second.id, first.id);
  const TaskTally t = h.engine().tally();
  EXPECT_EQ(t.duplicate_pushes, 2);
  EXPECT_EQ(t.rejected_pushes, 5);
  EXPECT_EQ(t.aggregated, 2);
}

TEST(WallEngineTest, DroppedAndOverdueTasksArriveWithoutAnUpdate) {
  Harness h(AsyncScheme::kAsyncFedAvg, 3, /*weight_variant=*/false, Vec({0.0}));
  h.Drop(1, 5);
  std::vector<StepReport> steps = h.Steps();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].row.participants, 0);
  EXPECT_EQ(steps[0].event["dropped"], nlohmann::json::array({1}));
  EXPECT_EQ(h.restarted(), (std::vector<std::int64_t>{1}));
  // Tasks open for more than 56 ticks at 60: clients 0 and 2 (issued at 0),
  // not client 1 (issued at 5).
  h.engine().DropOverdue(60, 56);
  steps = h.Steps();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[0].event["dropped"], nlohmann::json::array({0}));
  EXPECT_EQ(steps[1].event["dropped"], nlohmann::json::array({2}));
  const TaskTally t = h.engine().tally();
  EXPECT_EQ(t.dropped, 3);
  EXPECT_EQ(t.issued, 6);
  EXPECT_EQ(t.issued, t.aggregated + t.dropped + t.in_flight());
}

// A resumed engine: versions, task ids and time go on from the
// checkpoint, and task indices start at the version (past every index
// whose result was aggregated), so clients draw fresh batches.
TEST(WallEngineTest, AResumedEngineContinuesVersionsIdsIndicesAndTime) {
  Dataset train, test;
  WallEngineOptions o;
  o.scheme = AsyncScheme::kFedFix;
  o.weight_variant = false;
  o.importance_mass = {1.0, 1.0};
  o.window_ticks = 10;
  o.ticks_per_unit = 1;
  o.max_steps = 100;
  EngineInputs in;
  in.train = &train;
  in.test = &test;
  in.client_sizes = {kRows, kRows};
  AsyncSchedulerOptions so;
  so.scheme = o.scheme;
  so.num_clients = 2;
  so.window_ticks = 10;
  WallEngine engine(o, in, MakeAsyncScheduler(so), Vec({0.0}));
  // The checkpoint of step 6 (version 7), taken at run time 1000; 6 tasks
  // were in flight when the run stopped.
  EngineSnapshot before;
  before.kind = EngineKind::kWallClock;
  before.next_round = 7;
  before.model = Vec({2.0});
  before.next_task_id = 500;
  before.wall_tick = 1000;
  before.tally.issued = 30;
  before.tally.aggregated = 24;
  ASSERT_TRUE(engine.Restore(before).ok());
  EXPECT_EQ(engine.tally().dropped, 6);
  const std::vector<Task> tasks = engine.TakeTasks();
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].id, TaskId(500));
  EXPECT_EQ(tasks[1].id, TaskId(501));
  EXPECT_EQ(tasks[0].round, 7);
  EXPECT_EQ(engine.version(), 7);
  ClientResult r;
  r.task = tasks[0].id;
  r.client = tasks[0].client;
  r.update = Vec({1.0});
  r.num_examples = kRows;
  ASSERT_TRUE(engine.Submit(r, 3).ok());
  engine.AdvanceThrough(10);
  const std::vector<StepReport> steps = *engine.Close();
  ASSERT_EQ(steps.size(), 1u);
  EXPECT_EQ(steps[0].row.round, 7);
  EXPECT_EQ(steps[0].snapshot->wall_tick, 1010);
  EXPECT_DOUBLE_EQ(steps[0].row.virtual_time, 1010.0);
  EXPECT_EQ(steps[0].snapshot->next_task_id, 503);
  EXPECT_EQ(engine.TakeTasks()[0].round, 8);
  const TaskTally t = engine.tally();
  EXPECT_EQ(t.issued, 33);
  EXPECT_EQ(t.aggregated, 25);
  EXPECT_EQ(t.issued, t.aggregated + t.dropped + t.in_flight());
}

TEST(WallEngineTest, NoStepAfterTheHorizon) {
  Harness h(AsyncScheme::kFedFix, 2, /*weight_variant=*/false, Vec({0.0}), /*window=*/10,
            1, 1000000, /*horizon=*/25);
  ASSERT_TRUE(h.Push(0, Vec({1.0}), 22).ok());
  EXPECT_FALSE(h.engine().done());
  h.Advance(40);
  const std::vector<StepReport> steps = h.Steps();
  ASSERT_EQ(steps.size(), 2u);  // at 10 and 20; 30 is past the horizon
  EXPECT_EQ(steps[1].snapshot->wall_tick, 20);
  EXPECT_TRUE(h.engine().done());
  EXPECT_EQ(h.engine().version(), 2);
}

// Quadratics f_i(theta) = |theta - c_i|^2 / 2 with fixed task times tau_i:
// K local gradient steps of size eta give Delta_i = a (c_i - theta_base),
// a = 1 - (1 - eta)^K. The driver runs the real-time events in order.
struct Quadratic {
  std::vector<double> c = {4.0, -2.0, 1.0, 30.0};
  std::vector<Tick> tau = {10, 20, 50, 100};
  double a = 1.0 - std::pow(0.9, 5);
};

double Drive(AsyncScheme scheme, bool weight_variant, double server_lr, Tick end) {
  const Quadratic q;
  const int n = static_cast<int>(q.c.size());
  Harness h(scheme, n, weight_variant, Vec({0.0}), /*window=*/15, /*buffer=*/2,
            1000000, -1, server_lr);
  std::map<std::int64_t, Tick> due;  // client -> arrival of its open task
  auto schedule = [&](Tick now) {
    for (std::int64_t k : h.restarted()) due[k] = now + q.tau[static_cast<std::size_t>(k)];
  };
  schedule(0);
  // Average the model over the last half (the schedule is periodic, so the
  // iterate cycles around its limit).
  double sum = 0.0;
  std::int64_t count = 0;
  Tick now = 0;
  while (now < end) {
    Tick next_arrival = end;
    std::int64_t who = -1;
    for (const auto& [k, t] : due) {
      if (t < next_arrival) {
        next_arrival = t;
        who = k;
      }
    }
    const std::optional<Tick> deadline = h.engine().NextDeadline();
    if (deadline.has_value() && *deadline < next_arrival) {
      now = *deadline;
      h.Advance(now);
    } else if (who >= 0) {
      now = next_arrival;
      const double base = (*h.task(who).params)[0];
      due.erase(who);
      EXPECT_TRUE(h.Push(who, Vec({q.a * (q.c[static_cast<std::size_t>(who)] - base)}), now)
                      .ok());
    } else {
      break;
    }
    schedule(now);
    for (const StepReport& s : h.Steps()) {
      if (s.snapshot->wall_tick >= end / 2) {
        sum += (*s.model)[0];
        ++count;
      }
    }
  }
  return count > 0 ? sum / static_cast<double>(count) : NAN;
}

TEST(WallEngineTest, WeightVariantsConvergeToTheTrueOptimumIdenticalToTheSpeedBiasedOne) {
  const Quadratic q;
  // p uniform: theta_p = mean(c). Contributions at rate 1/tau_i with equal
  // weights: theta_q = sum (c_i / tau_i) / sum (1 / tau_i).
  double theta_p = 0.0, num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < q.c.size(); ++i) {
    theta_p += q.c[i] / static_cast<double>(q.c.size());
    num += q.c[i] / static_cast<double>(q.tau[i]);
    den += 1.0 / static_cast<double>(q.tau[i]);
  }
  const double theta_q = num / den;
  const double gap = std::abs(theta_p - theta_q);
  ASSERT_GT(gap, 2.0);
  const Tick end = 200000;
  struct Case {
    AsyncScheme scheme;
    double server_lr;
  };
  for (const Case& c : {Case{AsyncScheme::kAsyncFedAvg, 0.05}, Case{AsyncScheme::kFedFix, 0.2}}) {
    SCOPED_TRACE(std::string(AsyncSchemeName(c.scheme)));
    const double weight = Drive(c.scheme, true, c.server_lr, end);
    const double identical = Drive(c.scheme, false, c.server_lr, end);
    EXPECT_LT(std::abs(weight - theta_p), 0.05 * gap) << weight << " vs " << theta_p;
    // FedFix's identical weights count a window, not an arrival rate: its
    // surrogate weighs client i by 1 / ceil(tau_i / dt) windows.
    double target = theta_q;
    if (c.scheme == AsyncScheme::kFedFix) {
      double n2 = 0.0, d2 = 0.0;
      for (std::size_t i = 0; i < q.c.size(); ++i) {
        const double windows = std::ceil(static_cast<double>(q.tau[i]) / 15.0);
        n2 += q.c[i] / windows;
        d2 += 1.0 / windows;
      }
      target = n2 / d2;
    }
    EXPECT_LT(std::abs(identical - target), 0.05 * gap) << identical << " vs " << target;
  }
  // FedBuff (c = 2): the f_i of the steps so far undo the speed bias.
  const double fedbuff = Drive(AsyncScheme::kFedBuff, true, 0.1, end);
  EXPECT_LT(std::abs(fedbuff - theta_p), 0.05 * gap) << fedbuff << " vs " << theta_p;
}

}  // namespace
}  // namespace wall_engine_test
}  // namespace fedsim
