// File: tests/testing/coordinator_harness.h
//
// Driving a Coordinator in-process, without gRPC, as the coordinator unit
// tests do: a distributed run prepared from YAML, a blocking PullTask, a
// constant result for a task, and options with test-sized timings.
// Header-only; test binaries link fedsim_testing.
#ifndef FEDSIM_TESTS_TESTING_COORDINATOR_HARNESS_H_
#define FEDSIM_TESTS_TESTING_COORDINATOR_HARNESS_H_

#include <future>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/run_builder.h"

namespace fedsim::test {

// A distributed-runtime run of `yaml` in TempDir()/NAME (a fresh directory).
inline CoordinatorRun PrepareDistributedRun(const std::string& yaml,
                                            const std::string& name) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(*config, ::testing::TempDir() + "/" + name, "distributed");
  EXPECT_TRUE(run.ok()) << run.status();
  return *std::move(run);
}

// One PullTask, waited for (at most `wait` of long poll).
inline absl::StatusOr<PullReply> PullSync(Coordinator& c, WorkerId w,
                                          absl::Duration wait = absl::Seconds(5)) {
  // std::promise, not absl::Notification: Debian's Abseil is not built with
  // TSan, so its synchronisation is invisible to the TSan run of these tests.
  std::promise<absl::StatusOr<PullReply>> promise;
  std::future<absl::StatusOr<PullReply>> future = promise.get_future();
  c.PullTask(w, absl::Now() + wait, [&](absl::StatusOr<PullReply> r) {
    promise.set_value(std::move(r));
  });
  return future.get();
}

// The result of `t` as a worker would push it: every update value `value`,
// the client's true example count.
inline ClientResult ConstantResult(const CoordinatorRun& run, const Task& t,
                                   double value = 0.125) {
  ClientResult r;
  r.task = t.id;
  r.client = t.client;
  r.update = FlatVector::Constant(t.params->size(), value);
  r.num_examples = run.experiment->client_sizes[t.client.value];
  return r;
}

// Test-sized timings: 5 ms ticks, 1 s long polls, 20 s to start, rounds of
// at most `round_deadline`.
inline CoordinatorOptions FastCoordinatorOptions(
    absl::Duration round_deadline = absl::Seconds(20)) {
  CoordinatorOptions o;
  o.tick = absl::Milliseconds(5);
  o.long_poll = absl::Seconds(1);
  o.start_timeout = absl::Seconds(20);
  o.round_deadline = round_deadline;
  return o;
}

}  // namespace fedsim::test

#endif  // FEDSIM_TESTS_TESTING_COORDINATOR_HARNESS_H_
