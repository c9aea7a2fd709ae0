// The distributed coordinator driven in-process by fake workers on threads
// (no gRPC): task hand-out, ownership, idempotent pushes, workers leaving,
// client pinning. Runs under TSan in the suite.
#include "server/coordinator/coordinator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/codec/flat_bytes.h"
#include "common/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/coordinator_harness.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace coordinator_test {
namespace {

using ::testing::HasSubstr;

constexpr char kConfig[] = R"(
seed: 2
rounds: 3
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 10, dim: 3}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
local: {epochs: 1, batch_size: 0, lr: 0.1}
)";

CoordinatorRun Prepare(const std::string& name) {
  return test::PrepareDistributedRun(kConfig, "coordinator_" + name);
}

absl::StatusOr<PullReply> Pull(Coordinator& c, WorkerId w) { return test::PullSync(c, w); }

ClientResult ResultFor(const CoordinatorRun& run, const Task& t) {
  return test::ConstantResult(run, t);
}

CoordinatorOptions FastOptions() { return test::FastCoordinatorOptions(); }

// A worker loop: pull, run (a constant update), push, until the run ends.
// Records the clients it served. Every push is accepted, except, on the
// wall clock (`wall`), those of tasks still in flight when the run ends
// (kFailedPrecondition, "the run has ended").
void WorkUntilEnd(Coordinator& c, const CoordinatorRun& run, WorkerId w,
                  std::set<std::int64_t>* clients, bool wall) {
  for (;;) {
    absl::StatusOr<PullReply> reply = Pull(c, w);
    ASSERT_TRUE(reply.ok()) << reply.status();
    if (reply->run_finished) return;
    if (!reply->task) continue;
    if (clients) clients->insert(reply->task->client.value);
    absl::StatusOr<bool> dup = c.PushResult(w, ResultFor(run, *reply->task));
    if (wall && !dup.ok()) {
      EXPECT_THAT(dup.status().message(), HasSubstr("the run has ended")) << dup.status();
      continue;
    }
    ASSERT_TRUE(dup.ok()) << dup.status();
    EXPECT_FALSE(*dup);
  }
}

void Work(Coordinator& c, const CoordinatorRun& run, WorkerId w,
          std::set<std::int64_t>* clients) {
  WorkUntilEnd(c, run, w, clients, /*wall=*/false);
}

void WallWork(Coordinator& c, const CoordinatorRun& run, WorkerId w,
              std::set<std::int64_t>* clients) {
  WorkUntilEnd(c, run, w, clients, /*wall=*/true);
}

TEST(CoordinatorTest, TwoWorkersFinishTheRun) {
  CoordinatorRun run = Prepare("two");
  Coordinator c(FastOptions(), &run);
  absl::StatusOr<WorkerId> a = c.Join("a");
  absl::StatusOr<WorkerId> b = c.Join("b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  std::thread ta(Work, std::ref(c), std::cref(run), *a, nullptr);
  std::thread tb(Work, std::ref(c), std::cref(run), *b, nullptr);
  absl::StatusOr<RunSummary> summary = c.Run();
  ta.join();
  tb.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->rounds, 3);
  EXPECT_EQ(summary->last.participants, 4);
  // Every round moved every parameter by exactly the common update.
  EXPECT_EQ(run.engine->model(), FlatVector::Constant(3, 3 * 0.125));
  EXPECT_EQ(run.engine->tally().issued, 12);
  EXPECT_EQ(run.engine->tally().aggregated, 12);
  // The run is over: nobody can join any more.
  EXPECT_EQ(c.Join("late").status().code(), absl::StatusCode::kUnavailable);
}

// async.clock = wall: the coordinator keeps every client working, pins
// clients to workers, takes a step per arrival (async FedAvg), evaluates and
// logs steps off the lock while pushes go on; worker_slowdown's factors go
// to workers in join order, cyclically, and a rejoin keeps its factor.
TEST(CoordinatorTest, WallClockRunKeepsClientsPinnedAndWorking) {
  std::string yaml = kConfig;
  yaml.replace(yaml.find("rounds: 3"), 9, "rounds: 40");
  CoordinatorRun run = test::PrepareDistributedRun(
      absl::StrCat(yaml, "algorithm: {name: async_fedavg, async_weights: identical}\n"
                         "async: {clock: wall}\n"),
      "coordinator_wall");
  ASSERT_EQ(run.engine->kind(), EngineKind::kWallClock);
  CoordinatorOptions options = FastOptions();
  options.pin_clients = true;
  options.worker_slowdown = {1.0, 3.0};
  Coordinator c(options, &run);
  absl::StatusOr<WorkerId> a = c.Join("a");
  absl::StatusOr<WorkerId> b = c.Join("b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(c.WorkerSlowdown(*a), 1.0);
  EXPECT_EQ(c.WorkerSlowdown(*b), 3.0);
  absl::StatusOr<WorkerId> b2 = c.Join("b");  // b restarted: keeps 3
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(c.WorkerSlowdown(*b2), 3.0);
  std::set<std::int64_t> served_a, served_b;
  std::thread ta(WallWork, std::ref(c), std::cref(run), *a, &served_a);
  std::thread tb(WallWork, std::ref(c), std::cref(run), *b2, &served_b);
  absl::StatusOr<RunSummary> summary = c.Run();
  ta.join();
  tb.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->rounds, 40);
  // Pinned: a serves only clients 0 and 2, b only 1 and 3. (Which of them
  // a worker got to within 40 steps depends on thread scheduling: one busy
  // worker can take every step while the other waits for the CPU.)
  for (std::int64_t k : served_a) EXPECT_TRUE(k == 0 || k == 2) << k;
  for (std::int64_t k : served_b) EXPECT_TRUE(k == 1 || k == 3) << k;
  EXPECT_FALSE(served_a.empty());
  EXPECT_FALSE(served_b.empty());
  // identical async FedAvg: d_i = 1, every step adds one update of 0.125.
  EXPECT_EQ(run.engine->model(), FlatVector::Constant(3, 40 * 0.125));
  const TaskTally t = run.engine->tally();
  EXPECT_EQ(t.aggregated, 40);
  EXPECT_EQ(t.issued, 44);
  EXPECT_EQ(t.in_flight(), 4);
  EXPECT_EQ(test::Hashes(run.log->dir()).size(), 40u);
}

// On the wall clock a client's speed is its worker's: a worker restarted
// mid-run keeps its clients and its slowdown factor; a worker that stops
// polling while it holds no task (its clients' tasks wait in the queue for
// it) is declared dead and its clients go to the others; coming back after
// that, it still gets its factor.
TEST(CoordinatorTest, WallClockWorkersKeepClientsAndFactorsAcrossRejoinsAndDeath) {
  std::string yaml = kConfig;
  yaml.replace(yaml.find("rounds: 3"), 9, "rounds: 100000000");
  CoordinatorRun run = test::PrepareDistributedRun(
      absl::StrCat(yaml, "algorithm: {name: async_fedavg, async_weights: identical}\n"
                         "async: {clock: wall, horizon: 3}\neval: {every: 1000}\n"),
      "coordinator_wall_rejoin");
  CoordinatorOptions options = FastOptions();
  options.pin_clients = true;
  options.worker_slowdown = {1.0, 3.0};
  options.heartbeat_interval = absl::Milliseconds(100);
  options.heartbeat_patience = 2;
  Coordinator c(options, &run);
  absl::StatusOr<WorkerId> a = c.Join("a");
  absl::StatusOr<WorkerId> b = c.Join("b");
  ASSERT_TRUE(a.ok() && b.ok());
  std::mutex mu;
  std::set<std::int64_t> served_a, served_b2;
  std::atomic<bool> b2_stop{false};
  // Serves until the run ends (or `stop`), recording its clients.
  const auto work = [&](WorkerId w, std::set<std::int64_t>* served,
                        const std::atomic<bool>* stop) {
    while (stop == nullptr || !stop->load()) {
      absl::StatusOr<PullReply> reply = Pull(c, w);
      if (!reply.ok() || reply->run_finished) return;
      if (!reply->task) continue;
      {
        std::lock_guard<std::mutex> lock(mu);
        served->insert(reply->task->client.value);
      }
      (void)c.PushResult(w, ResultFor(run, *reply->task));
    }
  };
  const auto served = [&](const std::set<std::int64_t>& s, std::int64_t client) {
    std::lock_guard<std::mutex> lock(mu);
    return s.count(client) > 0;
  };
  std::thread ta(work, *a, &served_a, nullptr);
  auto summary = std::async(std::launch::async, [&] { return c.Run(); });
  // Bounded waits: if the run ends first, the expectations below fail.
  const auto wait_until_served = [&](const std::set<std::int64_t>& s, std::int64_t client) {
    while (!served(s, client) &&
           summary.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
    }
  };
  wait_until_served(served_a, 0);
  // b restarts: the new registration takes over b's clients, at factor 3.
  absl::StatusOr<WorkerId> b2 = c.Join("b");
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(c.WorkerSlowdown(*b2), 3.0);
  std::thread tb(work, *b2, &served_b2, &b2_stop);
  wait_until_served(served_b2, 1);
  wait_until_served(served_b2, 3);
  // b2 goes silent; a gets its clients once it is declared dead.
  b2_stop = true;
  tb.join();
  wait_until_served(served_a, 1);
  absl::StatusOr<WorkerId> b3 = c.Join("b");  // back after its death: still 3
  if (b3.ok()) {
    EXPECT_EQ(c.WorkerSlowdown(*b3), 3.0);
  }
  const absl::StatusOr<RunSummary> result = summary.get();
  ta.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(b3.ok()) << b3.status();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(served_b2, (std::set<std::int64_t>{1, 3}));
    EXPECT_EQ(served_a, (std::set<std::int64_t>{0, 1, 2, 3}));
  }
  const std::vector<nlohmann::json> dead = test::Events(run.log->dir(), "worker_dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["worker"], b2->value);
  EXPECT_EQ(test::Events(run.log->dir(), "clients_reassigned").size(), 1u);
  const TaskTally t = run.engine->tally();
  EXPECT_EQ(t.issued, t.aggregated + t.dropped + t.in_flight());
}

// A graceful stop of a wall-clock run saves the last step it logged, which
// no due checkpoint held (checkpoint.every far away), for --resume.
TEST(CoordinatorTest, WallClockStopCheckpointsTheLastLoggedStep) {
  std::string yaml = kConfig;
  yaml.replace(yaml.find("rounds: 3"), 9, "rounds: 1000000");
  CoordinatorRun run = test::PrepareDistributedRun(
      absl::StrCat(yaml, "algorithm: {name: async_fedavg}\nasync: {clock: wall}\n"
                         "checkpoint: {every: 100000}\n"),
      "coordinator_wall_stop");
  Coordinator c(FastOptions(), &run);
  absl::StatusOr<WorkerId> a = c.Join("a");
  ASSERT_TRUE(a.ok());
  std::thread worker([&] {
    for (;;) {
      absl::StatusOr<PullReply> reply = Pull(c, *a);
      if (!reply.ok() || reply->run_finished) return;
      if (reply->task) (void)c.PushResult(*a, ResultFor(run, *reply->task));
    }
  });
  auto summary = std::async(std::launch::async, [&] { return c.Run(); });
  // Let it log some steps (complete lines only: the file is being written).
  const auto rows = [&] {
    const std::string text = test::ReadFile(run.log->dir() + "/metrics.csv");
    return std::count(text.begin(), text.end(), '\n') - 1;
  };
  while (rows() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  c.RequestStop();
  const absl::StatusOr<RunSummary> result = summary.get();
  worker.join();
  EXPECT_TRUE(absl::IsCancelled(result.status())) << result.status();
  absl::StatusOr<std::string> path = c.CheckpointLastCompletedRound();
  ASSERT_TRUE(path.ok()) << path.status();
  ASSERT_FALSE(path->empty());
  absl::StatusOr<LoadedCheckpoint> loaded = LoadLatestCheckpoint(run.log->dir());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->data.engine.kind, EngineKind::kWallClock);
  const std::vector<std::string> hashes = test::Hashes(run.log->dir());
  EXPECT_EQ(loaded->data.engine.next_round, static_cast<std::int64_t>(hashes.size()));
  EXPECT_EQ(ModelHash(loaded->data.engine.model), hashes.back());
}

TEST(CoordinatorTest, PushesAreCheckedForOwnerAndIdempotent) {
  CoordinatorRun run = Prepare("owner");
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  const WorkerId b = *c.Join("b");
  std::thread round_thread([&] { (void)c.Run(); });

  absl::StatusOr<PullReply> reply = Pull(c, a);
  ASSERT_TRUE(reply.ok() && reply->task.has_value());
  const Task task = *reply->task;

  absl::StatusOr<bool> foreign = c.PushResult(b, ResultFor(run, task));
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kPermissionDenied);
  absl::StatusOr<bool> stranger = c.PushResult(WorkerId(99), ResultFor(run, task));
  EXPECT_EQ(stranger.status().code(), absl::StatusCode::kNotFound);
  ClientResult bad = ResultFor(run, task);
  bad.update = FlatVector::Zero(7);
  absl::StatusOr<bool> wrong_size = c.PushResult(a, bad);
  EXPECT_EQ(wrong_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong_size.status().message(), HasSubstr("expected 3"));

  // A rejected result ends its task (RELIABILITY 25: rejected, with a
  // reason), so a later push for it is refused.
  EXPECT_EQ(c.PushResult(a, ResultFor(run, task)).status().code(),
            absl::StatusCode::kFailedPrecondition);

  absl::StatusOr<PullReply> next = Pull(c, a);
  ASSERT_TRUE(next.ok() && next->task.has_value());
  const Task other = *next->task;
  absl::StatusOr<bool> first = c.PushResult(a, ResultFor(run, other));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(*first);
  absl::StatusOr<bool> again = c.PushResult(a, ResultFor(run, other));
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);  // a retried push is a no-op, not an error

  c.Shutdown();
  round_thread.join();
  EXPECT_EQ(Pull(c, a).status().code(), absl::StatusCode::kUnavailable);
}

TEST(CoordinatorTest, TasksOfAWorkerThatLeavesGoToAnother) {
  CoordinatorRun run = Prepare("leave");
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  std::thread round_thread([&] {
    absl::StatusOr<RunSummary> s = c.Run();
    EXPECT_TRUE(s.ok()) << s.status();
  });
  // Worker a takes a task and disappears without pushing.
  absl::StatusOr<PullReply> reply = Pull(c, a);
  ASSERT_TRUE(reply.ok() && reply->task.has_value());
  const std::int64_t abandoned = reply->task->client.value;
  ASSERT_TRUE(c.Leave(a).ok());
  EXPECT_EQ(c.PushResult(a, ResultFor(run, *reply->task)).status().code(),
            absl::StatusCode::kNotFound);
  // Worker b does everything, including the abandoned client's task.
  const WorkerId b = *c.Join("b");
  std::set<std::int64_t> served;
  Work(c, run, b, &served);
  round_thread.join();
  EXPECT_TRUE(served.count(abandoned));
  EXPECT_EQ(run.engine->tally().aggregated, 12);
  EXPECT_EQ(run.engine->model(), FlatVector::Constant(3, 3 * 0.125));
}

TEST(CoordinatorTest, PinnedClientsAlwaysGoToTheSameWorker) {
  CoordinatorRun run = Prepare("pinned");
  CoordinatorOptions o = FastOptions();
  o.pin_clients = true;
  o.min_workers = 2;
  Coordinator c(o, &run);
  const WorkerId a = *c.Join("a");
  const WorkerId b = *c.Join("b");
  std::set<std::int64_t> served_a, served_b;
  std::thread ta(Work, std::ref(c), std::cref(run), a, &served_a);
  std::thread tb(Work, std::ref(c), std::cref(run), b, &served_b);
  absl::StatusOr<RunSummary> summary = c.Run();
  ta.join();
  tb.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  // Client k is pinned to the (k mod 2)-th worker by id.
  EXPECT_EQ(served_a, (std::set<std::int64_t>{0, 2}));
  EXPECT_EQ(served_b, (std::set<std::int64_t>{1, 3}));
}

}  // namespace
}  // namespace coordinator_test
}  // namespace fedsim
