// The coordinator on a fake clock (tests/testing/fake_clock.h): time moves
// only when the test advances it, so round deadlines, dead-worker
// detection and wall-clock windows are exercised exactly, and nothing
// sleeps. The engines under the coordinator take time as values (ticks);
// these tests drive them through the coordinator, with fake workers on the
// test's thread pushing results at chosen times. Runs under TSan too.
#include <fstream>
#include <future>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/coordinator/coordinator.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/fake_clock.h"

namespace fedsim {
namespace coordinator_clock_test {
namespace {

constexpr char kConfig[] = R"(
seed: 2
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 10, dim: 3}
clients: {count: 3, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
local: {epochs: 1, batch_size: 0, lr: 0.1}
)";

CoordinatorOptions Options(test::FakeClock& clock) {
  CoordinatorOptions o;
  o.clock = &clock;
  o.round_deadline = absl::Seconds(30);
  o.long_poll = absl::Hours(1);    // polls wait for tasks, not for time
  o.tick = absl::Hours(1);         // the loop wakes on events, not on ticks
  o.start_timeout = absl::Hours(1);
  o.heartbeat_interval = absl::Seconds(10);
  o.heartbeat_patience = 2;
  return o;
}

std::vector<nlohmann::json> Events(const CoordinatorRun& run, const std::string& name) {
  std::ifstream in(run.log->dir() + "/events.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json e = nlohmann::json::parse(line);
    if (e.value("event", "") == name) out.push_back(e);
  }
  return out;
}

// A parked pull, answered later.
struct Pending {
  std::promise<absl::StatusOr<PullReply>> promise;
  std::future<absl::StatusOr<PullReply>> future = promise.get_future();
};

std::unique_ptr<Pending> StartPull(Coordinator& c, WorkerId w, test::FakeClock& clock) {
  auto p = std::make_unique<Pending>();
  Pending* raw = p.get();
  c.PullTask(w, clock.Now() + absl::Hours(1),
             [raw](absl::StatusOr<PullReply> r) { raw->promise.set_value(std::move(r)); });
  return p;
}

// A task for `w`, which the coordinator hands out at once (it has one).
Task PullNow(Coordinator& c, WorkerId w, test::FakeClock& clock) {
  std::unique_ptr<Pending> p = StartPull(c, w, clock);
  absl::StatusOr<PullReply> r = p->future.get();
  EXPECT_TRUE(r.ok() && r->task.has_value()) << (r.ok() ? "no task" : r.status().ToString());
  return r.ok() && r->task.has_value() ? *r->task : Task();
}

// Waits (on the real clock, briefly) until the coordinator's thread is
// parked on the fake clock, so that advancing it is seen.
void WaitUntilIdle(test::FakeClock& clock) {
  while (clock.waiting() == 0) std::this_thread::yield();
}

// A round waits for its deadline, and only for it: two of three results
// come, the third client stays silent (its worker keeps sending
// heartbeats); the round closes when the fake clock passes the deadline,
// with exactly the silent task timed out.
TEST(CoordinatorClockTest, RoundDeadlineClosesTheRoundWhenTheClockPassesIt) {
  CoordinatorRun run = test::PrepareDistributedRun(std::string(kConfig) + "rounds: 2\n",
                                                   "coordinator_clock_deadline");
  test::FakeClock clock;
  Coordinator c(Options(clock), &run);
  const WorkerId a = *c.Join("a");
  std::unique_ptr<Pending> first = StartPull(c, a, clock);  // polled: ready
  absl::StatusOr<RunSummary> summary;
  std::thread runner([&] { summary = c.Run(); });
  std::vector<Task> round0 = {*first->future.get()->task, PullNow(c, a, clock),
                              PullNow(c, a, clock)};
  ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, round0[0])).ok());
  ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, round0[2])).ok());
  // The round is open at fake time 29 s (the worker is alive).
  WaitUntilIdle(clock);
  clock.Advance(absl::Seconds(9));
  ASSERT_TRUE(c.Heartbeat(a).ok());
  clock.Advance(absl::Seconds(9));
  ASSERT_TRUE(c.Heartbeat(a).ok());
  clock.Advance(absl::Seconds(9));
  ASSERT_TRUE(c.Heartbeat(a).ok());
  clock.Advance(absl::Seconds(2));
  ASSERT_TRUE(c.Heartbeat(a).ok());
  EXPECT_TRUE(Events(run, "round_end").empty());
  // One more second: the deadline.
  clock.Advance(absl::Seconds(1));
  // Round 1: every result comes.
  for (int i = 0; i < 3; ++i) {
    const Task t = PullNow(c, a, clock);
    EXPECT_EQ(t.round, 1);
    ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, t)).ok());
  }
  runner.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<nlohmann::json> timed_out = Events(run, "task_timed_out");
  ASSERT_EQ(timed_out.size(), 1u);
  EXPECT_EQ(timed_out[0]["round"], 0);
  EXPECT_EQ(timed_out[0]["client"], round0[1].client.value);
  // The late result is stale now.
  EXPECT_EQ(c.PushResult(a, test::ConstantResult(run, round0[1])).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(run.engine->tally().timed_out, 1);
  EXPECT_EQ(run.engine->tally().aggregated, 5);
  // Run time is the fake clock's.
  EXPECT_DOUBLE_EQ(summary->wall_time_s, 30.0);
}

// A worker that holds a task and goes silent is declared dead exactly when
// heartbeat_interval x heartbeat_patience (20 s) have passed since its last
// sign of life; its task goes to the live worker at once, and the round
// completes long before its 30 s deadline. A duplicate push is idempotent.
TEST(CoordinatorClockTest, SilentWorkerIsDeclaredDeadWhenItsPatienceRunsOut) {
  CoordinatorRun run = test::PrepareDistributedRun(std::string(kConfig) + "rounds: 1\n",
                                                   "coordinator_clock_dead");
  test::FakeClock clock;
  Coordinator c(Options(clock), &run);
  const WorkerId a = *c.Join("a");
  const WorkerId b = *c.Join("b");
  std::unique_ptr<Pending> pa = StartPull(c, a, clock);
  std::unique_ptr<Pending> pb = StartPull(c, b, clock);
  absl::StatusOr<RunSummary> summary;
  std::thread runner([&] { summary = c.Run(); });
  const Task held = *pa->future.get()->task;  // a holds it and goes silent
  Task t = *pb->future.get()->task;
  ASSERT_TRUE(c.PushResult(b, test::ConstantResult(run, t)).ok());
  // Pushed twice: the second is a no-op (duplicate).
  absl::StatusOr<bool> again = c.PushResult(b, test::ConstantResult(run, t));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  t = PullNow(c, b, clock);
  ASSERT_TRUE(c.PushResult(b, test::ConstantResult(run, t)).ok());
  // b keeps polling (a poll is a sign of life); a is silent.
  std::unique_ptr<Pending> next = StartPull(c, b, clock);
  WaitUntilIdle(clock);
  clock.Advance(absl::Seconds(20));
  EXPECT_TRUE(Events(run, "worker_dead").empty());  // exactly the patience: alive
  clock.Advance(absl::Seconds(1));
  absl::StatusOr<PullReply> reissued = next->future.get();
  ASSERT_TRUE(reissued.ok() && reissued->task.has_value());
  EXPECT_EQ(reissued->task->id, held.id);  // the same task, unchanged
  ASSERT_TRUE(c.PushResult(b, test::ConstantResult(run, *reissued->task)).ok());
  runner.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<nlohmann::json> dead = Events(run, "worker_dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["worker"], a.value);
  EXPECT_DOUBLE_EQ(dead[0]["silent_s"].get<double>(), 21.0);
  EXPECT_EQ(dead[0]["requeued_tasks"], 1);
  EXPECT_TRUE(Events(run, "task_timed_out").empty());
  EXPECT_EQ(run.engine->tally().aggregated, 3);
  EXPECT_EQ(run.engine->tally().duplicate_pushes, 1);
  EXPECT_DOUBLE_EQ(summary->wall_time_s, 21.0);
}

// FedFix on the wall clock with a window of 1 s: windows end exactly on
// their multiples of the fake clock, a result received at a window's end
// is in that window, one received just after it is in the next, and an
// empty window is a step. Every step's tick is exact.
TEST(CoordinatorClockTest, WallClockWindowsEndOnTheFakeClocksMultiples) {
  CoordinatorRun run = test::PrepareDistributedRun(
      std::string(kConfig) +
          "rounds: 3\nalgorithm: {name: fedfix, window: 1, async_weights: identical}\n"
          "async: {clock: wall}\n",
      "coordinator_clock_wall");
  ASSERT_EQ(run.engine->kind(), EngineKind::kWallClock);
  test::FakeClock clock;
  Coordinator c(Options(clock), &run);
  const WorkerId a = *c.Join("a");
  std::unique_ptr<Pending> first = StartPull(c, a, clock);
  absl::StatusOr<RunSummary> summary;
  std::thread runner([&] { summary = c.Run(); });
  std::vector<Task> tasks = {*first->future.get()->task, PullNow(c, a, clock),
                             PullNow(c, a, clock)};
  WaitUntilIdle(clock);
  clock.Advance(absl::Milliseconds(400));
  ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, tasks[0])).ok());
  clock.Advance(absl::Milliseconds(600));  // t = 1.000 s: the window's end
  ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, tasks[1])).ok());
  clock.Advance(absl::Microseconds(1));    // t = 1.000001 s
  ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, tasks[2])).ok());
  clock.Advance(absl::Seconds(2));         // past the ends at 2 s and 3 s
  runner.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<nlohmann::json> steps = Events(run, "async_step");
  ASSERT_EQ(steps.size(), 3u);
  const auto clients = [](const nlohmann::json& step) {
    std::vector<std::int64_t> out;
    for (const auto& k : step["contributors"]) out.push_back(k["client"].get<std::int64_t>());
    return out;
  };
  EXPECT_EQ(steps[0]["tick"], 1000000);
  EXPECT_EQ(clients(steps[0]), (std::vector<std::int64_t>{tasks[0].client.value,
                                                          tasks[1].client.value}));
  EXPECT_EQ(steps[1]["tick"], 2000000);
  EXPECT_EQ(clients(steps[1]), (std::vector<std::int64_t>{tasks[2].client.value}));
  EXPECT_EQ(steps[2]["tick"], 3000000);
  EXPECT_TRUE(clients(steps[2]).empty());
}

// A round whose quorum can no longer be reached closes at once, not at its
// deadline: with min_quorum = 3 of 3 clients, a malformed update (NaN) is
// refused and ends its task, and the round fails (round_failed) while the
// fake clock stands still; the next round runs. No time passes in the
// whole run.
TEST(CoordinatorClockTest, UnreachableQuorumClosesTheRoundWithoutWaiting) {
  CoordinatorRun run = test::PrepareDistributedRun(
      std::string(kConfig) + "rounds: 2\ndistributed: {min_quorum: 3}\n",
      "coordinator_clock_quorum");
  test::FakeClock clock;
  const absl::Time start = clock.Now();
  Coordinator c(Options(clock), &run);
  const WorkerId a = *c.Join("a");
  std::unique_ptr<Pending> first = StartPull(c, a, clock);
  absl::StatusOr<RunSummary> summary;
  std::thread runner([&] { summary = c.Run(); });
  std::vector<Task> round0 = {*first->future.get()->task, PullNow(c, a, clock),
                              PullNow(c, a, clock)};
  ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, round0[0])).ok());
  ClientResult bad = test::ConstantResult(run, round0[1]);
  bad.update[0] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(c.PushResult(a, bad).status().code(), absl::StatusCode::kInvalidArgument);
  // Round 1 is handed out without the clock moving.
  for (int i = 0; i < 3; ++i) {
    const Task t = PullNow(c, a, clock);
    EXPECT_EQ(t.round, 1);
    ASSERT_TRUE(c.PushResult(a, test::ConstantResult(run, t)).ok());
  }
  runner.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<nlohmann::json> failed = Events(run, "round_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["round"], 0);
  EXPECT_EQ(failed[0]["valid_results"], 1);
  // At the close: the unanswered task times out, the accepted result is
  // cancelled with its round, the refused one was dropped.
  const std::vector<nlohmann::json> timed_out = Events(run, "task_timed_out");
  ASSERT_EQ(timed_out.size(), 1u);
  EXPECT_EQ(timed_out[0]["task"], round0[2].id.value);
  const TaskTally tally = run.engine->tally();
  EXPECT_EQ(tally.aggregated, 3);
  EXPECT_EQ(tally.cancelled, 1);
  EXPECT_EQ(tally.dropped, 1);
  EXPECT_DOUBLE_EQ(summary->wall_time_s, 0.0);
  EXPECT_EQ(clock.Now(), start);
}

}  // namespace
}  // namespace coordinator_clock_test
}  // namespace fedsim
