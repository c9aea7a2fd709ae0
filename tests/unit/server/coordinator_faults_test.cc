// Fault handling of the distributed coordinator, in-process with fake
// workers on threads (no gRPC): dead-worker detection and re-issue,
// heartbeats, quorum and fail-fast rounds, rejected results ending their
// task, graceful stop with a checkpoint of the last completed round, and
// the task reconciliation (RELIABILITY 1, 3, 12, 25).
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "common/config/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/coordinator.h"
#include "tests/testing/coordinator_harness.h"

namespace fedsim {
namespace coordinator_faults_test {
namespace {

constexpr char kConfig[] = R"(
seed: 2
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 10, dim: 3}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
local: {epochs: 1, batch_size: 0, lr: 0.1}
)";

CoordinatorRun Prepare(const std::string& name, const std::string& extra = "",
                       int rounds = 3) {
  return test::PrepareDistributedRun(
      std::string(kConfig) + extra + "rounds: " + std::to_string(rounds) + "\n",
      "coordinator_faults_" + name);
}

absl::StatusOr<PullReply> Pull(Coordinator& c, WorkerId w,
                               absl::Duration wait = absl::Seconds(5)) {
  return test::PullSync(c, w, wait);
}

ClientResult ResultFor(const CoordinatorRun& run, const Task& t) {
  return test::ConstantResult(run, t);
}

CoordinatorOptions FastOptions() {
  CoordinatorOptions o = test::FastCoordinatorOptions(absl::Seconds(60));
  o.heartbeat_interval = absl::Milliseconds(50);
  o.heartbeat_patience = 2;
  return o;
}

// A worker that pulls, pushes a constant update, until the run ends.
// Pushes that are refused (stale rounds) are fine; it stops on kNotFound.
void Work(Coordinator& c, const CoordinatorRun& run, WorkerId w) {
  for (;;) {
    absl::StatusOr<PullReply> reply = Pull(c, w);
    if (!reply.ok() || reply->run_finished) return;
    if (!reply->task) continue;
    (void)c.PushResult(w, ResultFor(run, *reply->task));
  }
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

void ExpectReconciled(const CoordinatorRun& run) {
  const TaskTally& t = run.engine->tally();
  EXPECT_EQ(t.issued, t.aggregated + t.timed_out + t.dropped + t.cancelled)
      << "issued " << t.issued << " aggregated " << t.aggregated << " timed_out "
      << t.timed_out << " dropped " << t.dropped << " cancelled " << t.cancelled;
  std::vector<nlohmann::json> end = Events(run, "run_end");
  if (!end.empty()) {
    EXPECT_EQ(end.back()["tasks_unreconciled"], 0);
  }
}

TEST(CoordinatorFaultsTest, SilentWorkerIsDeclaredDeadAndItsTaskReissued) {
  CoordinatorRun run = Prepare("dead");
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  absl::StatusOr<RunSummary> summary;
  std::thread round_thread([&] { summary = c.Run(); });
  // Worker a takes a task and falls silent (a SIGSTOP, seen in-process).
  absl::StatusOr<PullReply> taken = Pull(c, a);
  ASSERT_TRUE(taken.ok() && taken->task.has_value());
  const Task stalled = *taken->task;
  const WorkerId b = *c.Join("b");
  Work(c, run, b);
  round_thread.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  // Every task, the re-issued one included, was aggregated once: the model
  // moved by exactly the common update in each of the 3 rounds.
  EXPECT_EQ(run.engine->model(), FlatVector::Constant(3, 3 * 0.125));
  EXPECT_EQ(run.engine->tally().issued, 12);
  EXPECT_EQ(run.engine->tally().aggregated, 12);
  ExpectReconciled(run);
  std::vector<nlohmann::json> dead = Events(run, "worker_dead");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["worker"], a.value);
  EXPECT_EQ(dead[0]["requeued_tasks"], 1);
  // Declared after patience x interval (100 ms) of silence, within a tick.
  EXPECT_GE(dead[0]["detection_latency_s"].get<double>(), 0.1);
  // Back from the dead: unknown, logged, and it must join again.
  absl::StatusOr<bool> late = c.PushResult(a, ResultFor(run, stalled));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.Heartbeat(a).code(), absl::StatusCode::kNotFound);
  std::vector<nlohmann::json> rejected = Events(run, "result_rejected");
  ASSERT_FALSE(rejected.empty());
  EXPECT_EQ(rejected.back()["code"], "NOT_FOUND");
}

TEST(CoordinatorFaultsTest, HeartbeatsKeepASlowWorkerAlive) {
  CoordinatorRun run = Prepare("slow");
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  absl::StatusOr<RunSummary> summary;
  std::thread round_thread([&] { summary = c.Run(); });
  int slow_tasks = 0;
  for (;;) {
    absl::StatusOr<PullReply> reply = Pull(c, a);
    ASSERT_TRUE(reply.ok()) << reply.status();
    if (reply->run_finished) break;
    if (!reply->task) continue;
    if (slow_tasks++ < 2) {
      // Trains for 6x the patience, with a heartbeat every interval.
      for (int i = 0; i < 12; ++i) {
        absl::SleepFor(absl::Milliseconds(50));
        ASSERT_TRUE(c.Heartbeat(a).ok());
      }
    }
    absl::StatusOr<bool> pushed = c.PushResult(a, ResultFor(run, *reply->task));
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    EXPECT_FALSE(*pushed);
  }
  round_thread.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_TRUE(Events(run, "worker_dead").empty());
  EXPECT_EQ(run.engine->tally().aggregated, 12);
  ExpectReconciled(run);
}

TEST(CoordinatorFaultsTest, DeadWorkerWithNoOneLeftFailsTheRoundAtOnce) {
  // min_quorum 4 of 4 tasks: losing one task makes the quorum unreachable.
  CoordinatorRun run = Prepare("alone", "distributed: {min_quorum: 4}\n", 1);
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  absl::StatusOr<RunSummary> summary;
  const absl::Time start = absl::Now();
  std::thread round_thread([&] { summary = c.Run(); });
  absl::StatusOr<PullReply> taken = Pull(c, a);
  ASSERT_TRUE(taken.ok() && taken->task.has_value());
  round_thread.join();  // a never speaks again
  ASSERT_TRUE(summary.ok()) << summary.status();
  // Ended by the failure, not by the 60 s round deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  std::vector<nlohmann::json> failed = Events(run, "round_failed");
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0]["quorum"], 4);
  EXPECT_EQ(failed[0]["valid_results"], 0);
  EXPECT_EQ(Events(run, "worker_dead")[0]["dropped_tasks"], 1);
  EXPECT_EQ(run.engine->model(), FlatVector::Zero(3));  // unchanged
  EXPECT_EQ(run.engine->tally().aggregated, 0);
  EXPECT_EQ(run.engine->tally().dropped, 1);
  EXPECT_EQ(run.engine->tally().timed_out, 3);
  ExpectReconciled(run);
}

TEST(CoordinatorFaultsTest, RejectedResultMakesQuorumUnreachable) {
  CoordinatorRun run = Prepare("rejected", "distributed: {min_quorum: 4}\n");
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  absl::StatusOr<RunSummary> summary;
  const absl::Time start = absl::Now();
  std::thread round_thread([&] { summary = c.Run(); });
  bool sent_bad = false;
  int accepted_in_round0 = 0;
  for (;;) {
    absl::StatusOr<PullReply> reply = Pull(c, a);
    ASSERT_TRUE(reply.ok()) << reply.status();
    if (reply->run_finished) break;
    if (!reply->task) continue;
    ClientResult r = ResultFor(run, *reply->task);
    if (reply->task->round == 0 && !sent_bad && reply->task->client.value == 1) {
      sent_bad = true;
      r.update = FlatVector::Zero(7);
      EXPECT_EQ(c.PushResult(a, r).status().code(), absl::StatusCode::kInvalidArgument);
      // The task is over: a corrected push is too late.
      EXPECT_EQ(c.PushResult(a, ResultFor(run, *reply->task)).status().code(),
                absl::StatusCode::kFailedPrecondition);
      continue;
    }
    absl::StatusOr<bool> pushed = c.PushResult(a, r);
    if (reply->task->round == 0 && pushed.ok()) ++accepted_in_round0;
  }
  round_thread.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  ASSERT_TRUE(sent_bad);
  ASSERT_EQ(Events(run, "round_failed").size(), 1u);
  EXPECT_EQ(Events(run, "round_failed")[0]["round"], 0);
  // Round 0 changed nothing; rounds 1 and 2 moved the model once each.
  EXPECT_EQ(run.engine->model(), FlatVector::Constant(3, 2 * 0.125));
  const TaskTally& t = run.engine->tally();
  EXPECT_EQ(t.issued, 12);
  EXPECT_EQ(t.aggregated, 8);
  // The rejected task is dropped; the round's accepted results cancelled.
  EXPECT_EQ(t.dropped, 1);
  EXPECT_EQ(t.cancelled, accepted_in_round0);
  EXPECT_EQ(Events(run, "task_cancelled").size(),
            static_cast<std::size_t>(accepted_in_round0));
  ExpectReconciled(run);
}

TEST(CoordinatorFaultsTest, RequestStopSavesTheLastCompletedRound) {
  CoordinatorRun run = Prepare("stop", "checkpoint: {every: 2, min_interval_s: 0}\n");
  Coordinator c(FastOptions(), &run);
  const WorkerId a = *c.Join("a");
  absl::StatusOr<RunSummary> summary;
  std::thread round_thread([&] { summary = c.Run(); });
  for (;;) {
    absl::StatusOr<PullReply> reply = Pull(c, a);
    ASSERT_TRUE(reply.ok()) << reply.status();
    if (!reply->task) continue;
    if (reply->task->round == 1) break;  // round 1 is in progress
    ASSERT_TRUE(c.PushResult(a, ResultFor(run, *reply->task)).ok());
  }
  c.RequestStop();
  round_thread.join();
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(c.Join("late").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Pull(c, a).status().code(), absl::StatusCode::kUnavailable);
  // checkpoint.every = 2: round 0's state was not on disk yet.
  absl::StatusOr<std::string> path = c.CheckpointLastCompletedRound();
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_TRUE(absl::EndsWith(*path, "round-00000001.ckpt")) << *path;
  absl::StatusOr<CheckpointData> data = ReadCheckpoint(*path);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->engine.next_round, 1);
  EXPECT_EQ(data->engine.model, FlatVector::Constant(3, 0.125));
  EXPECT_EQ(data->engine.tally.issued, 4);
  EXPECT_EQ(data->engine.tally.aggregated, 4);
}

// Issue 18: task ids carry the run's incarnation. A run stopped in round 1
// and resumed from its checkpoint redoes round 1 with the same sequence
// numbers but new ids; a result computed for the first incarnation's task
// (a worker that rejoined the restarted coordinator with it) is refused
// with kAborted, logged with its own code, and never taken for the new
// task of the same client.
TEST(CoordinatorFaultsTest, PushesOfAnEarlierIncarnationAreAborted) {
  const std::string yaml = std::string(kConfig) + "rounds: 3\n";
  CoordinatorRun first = test::PrepareDistributedRun(yaml, "coordinator_faults_incarnation");
  EXPECT_EQ(first.incarnation, 0);
  Task held;
  {
    Coordinator c(FastOptions(), &first);
    const WorkerId a = *c.Join("a");
    absl::StatusOr<RunSummary> summary;
    std::thread round_thread([&] { summary = c.Run(); });
    for (;;) {
      absl::StatusOr<PullReply> reply = Pull(c, a);
      ASSERT_TRUE(reply.ok()) << reply.status();
      if (!reply->task) continue;
      // A fresh run's ids are its sequence numbers.
      EXPECT_EQ(TaskIncarnation(reply->task->id), 0);
      if (reply->task->round == 1) {
        held = *reply->task;  // computed, never delivered before the stop
        break;
      }
      ASSERT_TRUE(c.PushResult(a, ResultFor(first, *reply->task)).ok());
    }
    c.RequestStop();
    round_thread.join();
    EXPECT_EQ(summary.status().code(), absl::StatusCode::kCancelled);
    ASSERT_TRUE(c.CheckpointLastCompletedRound().ok());
  }
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  ASSERT_TRUE(config.ok());
  absl::StatusOr<CoordinatorRun> second = PrepareOrResumeRun(
      *config, first.log->dir(), "distributed");
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE(second->resumed);
  EXPECT_EQ(second->incarnation, 1);
  Coordinator c(FastOptions(), &*second);
  const WorkerId b = *c.Join("b");
  absl::StatusOr<RunSummary> summary;
  std::thread round_thread([&] { summary = c.Run(); });
  bool checked = false;
  for (;;) {
    absl::StatusOr<PullReply> reply = Pull(c, b);
    ASSERT_TRUE(reply.ok()) << reply.status();
    if (reply->run_finished) break;
    if (!reply->task) continue;
    const Task& t = *reply->task;
    EXPECT_EQ(TaskIncarnation(t.id), 1);
    if (t.round == 1 && t.client == held.client) {
      // The redone round numbers its tasks as the first incarnation did.
      EXPECT_EQ(TaskSequence(t.id), TaskSequence(held.id));
      EXPECT_NE(t.id, held.id);
      absl::StatusOr<bool> old = c.PushResult(b, ResultFor(*second, held));
      EXPECT_EQ(old.status().code(), absl::StatusCode::kAborted) << old.status();
      EXPECT_THAT(std::string(old.status().message()),
                  ::testing::AllOf(::testing::HasSubstr("incarnation 0"),
                                   ::testing::HasSubstr("incarnation 1")));
      // Chunked fetches of the old task are refused the same way.
      EXPECT_EQ(c.IssuedTask(b, held.id.value).status().code(), absl::StatusCode::kAborted);
      checked = true;
    }
    ASSERT_TRUE(c.PushResult(b, ResultFor(*second, t)).ok());
  }
  round_thread.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_TRUE(checked);
  std::vector<nlohmann::json> rejected = Events(*second, "result_rejected");
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0]["code"], "ABORTED");
  EXPECT_EQ(rejected[0]["task"], held.id.value);
  std::vector<nlohmann::json> resumed = Events(*second, "run_resumed");
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_EQ(resumed[0]["incarnation"], 1);
  ExpectReconciled(*second);
}

}  // namespace
}  // namespace coordinator_faults_test
}  // namespace fedsim
