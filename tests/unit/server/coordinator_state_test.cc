// Client state owned by the distributed coordinator (docs/reliability.md,
// "Where client state lives") and workers identified by name, in-process
// with the test as the worker (no gRPC): a task carries its client's state,
// the result brings it back, it is checked and committed only for an open
// task; a worker that joins again under its name replaces its earlier
// registration and its open task is re-issued, with the same state, and
// counted once.
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "common/config/config.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/coordinator/coordinator.h"
#include "tests/testing/coordinator_harness.h"

namespace fedsim {
namespace coordinator_state_test {
namespace {

// SCAFFOLD keeps c_i per client: 3 parameters, 2 clients, both every round.
constexpr char kStateConfig[] = R"(
seed: 2
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 10, dim: 3}
clients: {count: 2, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
algorithm: {name: scaffold, scaffold_option: ii}
local: {epochs: 1, batch_size: 0, lr: 0.1}
distributed: {min_quorum: 1}
rounds: 2
)";

CoordinatorRun PrepareStateRun(const std::string& name) {
  return test::PrepareDistributedRun(kStateConfig, "coordinator_state_" + name);
}

CoordinatorOptions StateTestOptions() { return test::FastCoordinatorOptions(absl::Seconds(60)); }

// Pulls until a task comes (or the run ends / an error).
absl::StatusOr<PullReply> PullTaskForStateTest(Coordinator& c, WorkerId w) {
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<PullReply> reply = test::PullSync(c, w, absl::Seconds(1));
    if (!reply.ok() || reply->run_finished || reply->task.has_value()) return reply;
  }
  return absl::DeadlineExceededError("no task");
}

// SCAFFOLD's result: a constant update and a zero Delta c_i.
ClientResult StateTestResult(const CoordinatorRun& run, const Task& t) {
  ClientResult r = test::ConstantResult(run, t);
  r.control_delta = FlatVector::Constant(t.params->size(), 0.0);
  return r;
}

ClientState StateWith(const std::string& name, FlatVector v) {
  ClientState s;
  s.vectors[name] = std::move(v);
  return s;
}

std::vector<nlohmann::json> StateTestEvents(const CoordinatorRun& run,
                                            const std::string& name) {
  std::ifstream in(run.log->dir() + "/events.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    nlohmann::json e = nlohmann::json::parse(line);
    if (e.value("event", "") == name) out.push_back(e);
  }
  return out;
}

TEST(CoordinatorStateTest, StateTravelsWithTasksAndOnlyValidStateIsCommitted) {
  CoordinatorRun run = PrepareStateRun("commit");
  Coordinator c(StateTestOptions(), &run);
  const WorkerId w = *c.Join("w");
  absl::StatusOr<RunSummary> summary;
  std::thread round_thread([&] { summary = c.Run(); });
  const FlatVector c0 = (FlatVector(3) << 1.0, 2.0, 3.0).finished();

  // Round 0: both clients start with an empty state.
  absl::StatusOr<PullReply> t0 = PullTaskForStateTest(c, w);
  ASSERT_TRUE(t0.ok() && t0->task.has_value());
  ASSERT_NE(t0->task->client_state, nullptr);
  EXPECT_TRUE(t0->task->client_state->vectors.empty());
  ASSERT_EQ(t0->task->client.value, 0);
  ClientResult r0 = StateTestResult(run, *t0->task);
  r0.client_state = StateWith(kScaffoldControl, c0);
  EXPECT_TRUE(c.PushResult(w, r0).ok());
  // A duplicate with another state changes nothing.
  r0.client_state = StateWith(kScaffoldControl, FlatVector::Constant(3, 9.0));
  EXPECT_TRUE(*c.PushResult(w, r0));

  absl::StatusOr<PullReply> t1 = PullTaskForStateTest(c, w);
  ASSERT_TRUE(t1.ok() && t1->task.has_value());
  ASSERT_EQ(t1->task->client.value, 1);
  ClientResult r1 = StateTestResult(run, *t1->task);
  r1.client_state = StateWith(kScaffoldControl, FlatVector::Constant(2, 1.0));
  absl::StatusOr<bool> bad = c.PushResult(w, r1);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(bad.status().message()),
            "result of task 2, client 1: client_state vector 'scaffold.c' has 2 values; "
            "must have 3");

  // Round 1: client 0 got its committed state back, client 1 none.
  absl::StatusOr<PullReply> u0 = PullTaskForStateTest(c, w);
  ASSERT_TRUE(u0.ok() && u0->task.has_value());
  ASSERT_EQ(u0->task->client.value, 0);
  ASSERT_NE(u0->task->client_state, nullptr);
  ASSERT_TRUE(u0->task->client_state->Has(kScaffoldControl));
  EXPECT_EQ(u0->task->client_state->vectors.at(kScaffoldControl), c0);
  ClientResult s0 = StateTestResult(run, *u0->task);
  s0.client_state = StateWith("scaffold.x", c0);
  EXPECT_EQ(c.PushResult(w, s0).status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<PullReply> u1 = PullTaskForStateTest(c, w);
  ASSERT_TRUE(u1.ok() && u1->task.has_value());
  ASSERT_EQ(u1->task->client.value, 1);
  EXPECT_TRUE(u1->task->client_state->vectors.empty());
  ClientResult s1 = StateTestResult(run, *u1->task);  // no state at all
  absl::StatusOr<bool> missing = c.PushResult(w, s1);
  ASSERT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(missing.status().message()).find("has no client_state"),
            std::string::npos);
  round_thread.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  // Only the valid state was committed; the rejected results ended their
  // tasks (dropped), counted once each.
  ASSERT_EQ(run.client_states.count(0), 1u);
  EXPECT_EQ(run.client_states.at(0).vectors.at(kScaffoldControl), c0);
  EXPECT_TRUE(run.client_states[1].vectors.empty());
  const TaskTally& tally = run.engine->tally();
  EXPECT_EQ(tally.issued, 4);
  EXPECT_EQ(tally.dropped, 3);
  EXPECT_EQ(tally.aggregated, 1);
}

TEST(CoordinatorStateTest, WorkerRejoiningUnderItsNameGetsItsTaskAgainWithTheState) {
  CoordinatorRun run = PrepareStateRun("rejoin");
  Coordinator c(StateTestOptions(), &run);
  const WorkerId first = *c.Join("w1");
  absl::StatusOr<RunSummary> summary;
  std::thread round_thread([&] { summary = c.Run(); });
  const FlatVector c0 = (FlatVector(3) << 4.0, 5.0, 6.0).finished();
  // Round 0, done by the first process.
  for (int k = 0; k < 2; ++k) {
    absl::StatusOr<PullReply> t = PullTaskForStateTest(c, first);
    ASSERT_TRUE(t.ok() && t->task.has_value());
    ClientResult r = StateTestResult(run, *t->task);
    r.client_state = StateWith(kScaffoldControl, c0 * (k + 1));
    ASSERT_TRUE(c.PushResult(first, r).ok());
  }
  // Round 1: the process takes client 0's task and crashes; it restarts
  // and joins under the same name.
  absl::StatusOr<PullReply> held = PullTaskForStateTest(c, first);
  ASSERT_TRUE(held.ok() && held->task.has_value());
  const Task lost = *held->task;
  ASSERT_EQ(lost.client.value, 0);
  const WorkerId second = *c.Join("w1");
  EXPECT_NE(second, first);
  EXPECT_EQ(c.num_workers(), 1);
  // The old id is gone: its calls get kNotFound.
  EXPECT_EQ(c.PushResult(first, StateTestResult(run, lost)).status().code(),
            absl::StatusCode::kNotFound);
  // The task comes again, the same task with the same state.
  absl::StatusOr<PullReply> again = PullTaskForStateTest(c, second);
  ASSERT_TRUE(again.ok() && again->task.has_value());
  EXPECT_EQ(again->task->id, lost.id);
  ASSERT_NE(again->task->client_state, nullptr);
  EXPECT_EQ(again->task->client_state->vectors.at(kScaffoldControl), c0);
  for (const Task& t : {*again->task}) {
    ClientResult r = StateTestResult(run, t);
    r.client_state = StateWith(kScaffoldControl, c0 * 3);
    ASSERT_TRUE(c.PushResult(second, r).ok());
  }
  absl::StatusOr<PullReply> other = PullTaskForStateTest(c, second);
  ASSERT_TRUE(other.ok() && other->task.has_value());
  ClientResult r = StateTestResult(run, *other->task);
  r.client_state = *other->task->client_state;
  ASSERT_TRUE(c.PushResult(second, r).ok());
  round_thread.join();
  ASSERT_TRUE(summary.ok()) << summary.status();
  const std::vector<nlohmann::json> rejoined = StateTestEvents(run, "worker_rejoined");
  ASSERT_EQ(rejoined.size(), 1u);
  EXPECT_EQ(rejoined[0]["name"], "w1");
  EXPECT_EQ(rejoined[0]["previous_worker"], first.value);
  EXPECT_EQ(rejoined[0]["worker"], second.value);
  EXPECT_EQ(rejoined[0]["requeued_tasks"], 1);
  EXPECT_EQ(StateTestEvents(run, "worker_joined").size(), 1u);
  // Every task counted once: 4 issued, 4 aggregated, nothing dropped.
  const TaskTally& tally = run.engine->tally();
  EXPECT_EQ(tally.issued, 4);
  EXPECT_EQ(tally.aggregated, 4);
  EXPECT_EQ(tally.dropped + tally.timed_out, 0);
  EXPECT_EQ(run.client_states.at(0).vectors.at(kScaffoldControl), FlatVector(c0 * 3));
}

TEST(CoordinatorStateTest, AnotherNameIsAnotherWorker) {
  CoordinatorRun run = PrepareStateRun("names");
  Coordinator c(StateTestOptions(), &run);
  const WorkerId a = *c.Join("host", "a");
  const WorkerId b = *c.Join("host", "b");
  EXPECT_NE(a, b);
  EXPECT_EQ(c.num_workers(), 2);
  // The same certificate identity and requested name: the same worker.
  const WorkerId a2 = *c.Join("host", "a");
  EXPECT_EQ(c.num_workers(), 2);
  EXPECT_NE(a2, a);
}

}  // namespace
}  // namespace coordinator_state_test
}  // namespace fedsim
