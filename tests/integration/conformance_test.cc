// The conformance suite: every registered algorithm (algorithms/list.inc),
// found through the registry, so that a new registration is tested without
// a line here, runs on a small problem of its family in every runtime:
//
//   embedded, 1 thread       (the reference)
//   embedded, 2 threads
//   in-process gRPC          the coordinator's gRPC service and 2 workers
//                            in this process over
//                            CoordinatorServer::InProcessChannel
//   launch, 3 processes      the coordinator and 3 fedsim-client processes
//                            on loopback (`fedsim launch`)
//
// and every runtime gives the reference's model_hash after every round
// (step) and its model.bin, with every task accounted for in run_end. A
// run resumed from a checkpoint (a crash after round 2 lost its
// checkpoint) in the other runtime, with 3 worker processes, ends as the
// reference, bit for bit.
//
// The problems: FAMILY_ROUNDS least squares with heterogeneous Bernoulli
// participation; FAMILY_LSA a Garnet TD(0) problem with a Markovian
// oracle; FAMILY_ASYNC least squares on the virtual clock with F-80 speeds.
// An algorithm with keys of its own that have no default gets them from
// ExtraKeys.
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "algorithms/registry.h"
#include "client/grpc/grpc_coordinator_client.h"
#include "client/worker/worker.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/coordinator.h"
#include "server/coordinator/run_builder.h"
#include "server/grpc/coordinator_server.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace conformance_test {
namespace {

namespace fs = std::filesystem;
using test::Column;
using test::Events;
using test::Hashes;
using test::ReadFile;

enum class Runtime { kEmbedded1, kEmbedded2, kInProcessGrpc, kLaunch3 };

std::string RuntimeName(Runtime r) {
  switch (r) {
    case Runtime::kEmbedded1: return "embedded1";
    case Runtime::kEmbedded2: return "embedded2";
    case Runtime::kInProcessGrpc: return "inprocess";
    case Runtime::kLaunch3: return "launch3";
  }
  return "?";
}

// Keys an algorithm needs beyond the family's problem (its own options).
std::string ExtraKeys(v1::AlgorithmConfig::Name name) {
  switch (name) {
    case v1::AlgorithmConfig::NAME_FEDPROX: return ", prox_mu: 0.1";
    case v1::AlgorithmConfig::NAME_FEDFIX: return ", window: 0.5";
    case v1::AlgorithmConfig::NAME_FEDBUFF: return ", buffer_size: 2";
    default: return "";
  }
}

std::string Yaml(v1::AlgorithmConfig::Name name) {
  const std::string algorithm =
      absl::StrCat("algorithm: {name: ", AlgorithmConfigName(name), ExtraKeys(name), "}\n");
  switch (AlgorithmTraitsOf(name).family()) {
    case v1::AlgorithmTraits::FAMILY_LSA:
      return absl::StrCat(R"(
seed: 3
rounds: 6
data: {source: lsa}
clients: {count: 5}
local: {lr: 0.1, max_steps: 5}
lsa: {problem: garnet, oracle: markov, kernel_heterogeneity: 10}
)", algorithm);
    case v1::AlgorithmTraits::FAMILY_ASYNC:
      return absl::StrCat(R"(
seed: 21
rounds: 8
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 24, dim: 4, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
local: {max_steps: 3, batch_size: 6, lr: 0.05}
async: {fx_percent: 80}
)", algorithm);
    default:
      return absl::StrCat(R"(
seed: 11
rounds: 6
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 24, dim: 4, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 6, partition: natural}
model: {objective: least_squares}
participation: {model: bernoulli, probabilities: list, p: [0.4, 0.5, 0.6, 0.9, 0.7, 0.8]}
local: {max_steps: 3, batch_size: 6, lr: 0.05}
)", algorithm);
  }
}

v1::ExperimentConfig Config(v1::AlgorithmConfig::Name name, const std::string& more = "") {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(Yaml(name) + more);
  EXPECT_TRUE(config.ok()) << AlgorithmConfigName(name) << ": " << config.status();
  return config.ok() ? *config : v1::ExperimentConfig();
}

// The coordinator's gRPC service in this process, `workers` workers on
// threads, each with its own in-process channel.
absl::StatusOr<RunSummary> RunInProcess(CoordinatorRun& run, int workers) {
  Coordinator coordinator(CoordinatorOptionsFromConfig(run.config), &run);
  CoordinatorServer::Options so;
  so.listen = "";
  so.max_message_bytes = run.config.distributed().max_message_bytes();
  so.run_id = 1;
  so.log = run.log.get();
  absl::StatusOr<std::unique_ptr<CoordinatorServer>> server =
      CoordinatorServer::Start(so, &coordinator, run.config);
  if (!server.ok()) return server.status();
  std::vector<absl::Status> worker_status(static_cast<std::size_t>(workers));
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      GrpcClientOptions co;
      co.channel = (*server)->InProcessChannel(so.max_message_bytes);
      co.max_message_bytes = so.max_message_bytes;
      std::unique_ptr<CoordinatorClient> client = MakeGrpcCoordinatorClient(co);
      WorkerOptions wo;
      wo.name = absl::StrCat("inprocess-", i);
      worker_status[static_cast<std::size_t>(i)] = RunWorker(wo, *client);
    });
  }
  absl::StatusOr<RunSummary> summary = coordinator.Run();
  coordinator.WaitForWorkersToLeave(absl::Seconds(30));
  if (!summary.ok()) coordinator.Shutdown();
  for (std::thread& t : threads) t.join();
  (*server)->Shutdown(absl::Seconds(1));
  for (const absl::Status& s : worker_status) {
    if (!s.ok() && summary.ok()) return s;
  }
  return summary;
}

absl::StatusOr<RunSummary> Execute(CoordinatorRun& run, Runtime runtime) {
  switch (runtime) {
    case Runtime::kInProcessGrpc:
      return RunInProcess(run, 2);
    case Runtime::kLaunch3: {
      LaunchOptions options;
      options.workers = 3;
      options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
      return LaunchRun(run, options);
    }
    default:
      return RunEmbedded(run);
  }
}

// Runs `config` in `runtime` into a fresh directory; returns it.
std::string RunIn(v1::ExperimentConfig config, Runtime runtime, const std::string& name) {
  config.mutable_runtime()->set_threads(runtime == Runtime::kEmbedded2 ? 2 : 1);
  const std::string dir = ::testing::TempDir() + "/conformance_" + name;
  fs::remove_all(dir);
  const bool embedded = runtime == Runtime::kEmbedded1 || runtime == Runtime::kEmbedded2;
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(config, dir, embedded ? "embedded" : "distributed");
  EXPECT_TRUE(run.ok()) << run.status();
  if (!run.ok()) return dir;
  absl::StatusOr<RunSummary> summary = Execute(*run, runtime);
  EXPECT_TRUE(summary.ok()) << name << ": " << summary.status();
  return dir;
}

// The reference of an algorithm: embedded, 1 thread. Each test runs its
// own into a directory named after `tag` (ctest runs every test in its own
// process, two at a time, in one temporary directory).
std::string Reference(v1::AlgorithmConfig::Name name, const std::string& tag) {
  return RunIn(Config(name), Runtime::kEmbedded1,
               absl::StrCat(AlgorithmConfigName(name), "_", tag, "_reference"));
}

std::vector<v1::AlgorithmConfig::Name> Registered() {
  std::vector<v1::AlgorithmConfig::Name> names;
  for (const Algorithm* a : Algorithms()) names.push_back(a->name);
  return names;
}

class ConformanceTest
    : public ::testing::TestWithParam<std::tuple<v1::AlgorithmConfig::Name, Runtime>> {};

TEST_P(ConformanceTest, EveryRuntimeGivesTheReferenceBitForBit) {
  const auto [name, runtime] = GetParam();
  const std::string reference = Reference(name, RuntimeName(runtime));
  const std::vector<std::string> want = Hashes(reference);
  const v1::ExperimentConfig config = Config(name);
  ASSERT_EQ(static_cast<std::int64_t>(want.size()), config.rounds());
  ASSERT_NE(want.front(), want.back()) << "the reference did not move the model";
  for (const std::string& p : Column(reference, "participants")) {
    ASSERT_NE(p, "0") << "a round without participants: pick another seed";
  }
  const std::string dir =
      runtime == Runtime::kEmbedded1
          ? reference
          : RunIn(config, runtime, absl::StrCat(AlgorithmConfigName(name), "_",
                                                RuntimeName(runtime)));
  EXPECT_EQ(Hashes(dir), want);
  EXPECT_EQ(ReadFile(dir + "/model.bin"), ReadFile(reference + "/model.bin"));
  const std::vector<nlohmann::json> end = Events(dir, "run_end");
  ASSERT_EQ(end.size(), 1u);
  // Rounds reconcile every task (tasks_unreconciled); the asynchronous
  // engines end with tasks still in flight (clients keep working).
  EXPECT_EQ(end[0].value("tasks_unreconciled", 0), 0) << end[0].dump();
  EXPECT_GT(end[0].value("tasks_aggregated", 0), 0) << end[0].dump();
  EXPECT_EQ(end[0].value("tasks_issued", -1),
            end[0].value("tasks_aggregated", 0) + end[0].value("tasks_dropped", 0) +
                end[0].value("tasks_timed_out", 0) + end[0].value("tasks_cancelled", 0) +
                end[0].value("tasks_stale_dropped", 0) + end[0].value("tasks_in_flight", 0))
      << end[0].dump();
}

INSTANTIATE_TEST_SUITE_P(
    AllAlgorithms, ConformanceTest,
    ::testing::Combine(::testing::ValuesIn(Registered()),
                       ::testing::Values(Runtime::kEmbedded1, Runtime::kEmbedded2,
                                         Runtime::kInProcessGrpc, Runtime::kLaunch3)),
    [](const auto& p) {
      return absl::StrCat(AlgorithmConfigName(std::get<0>(p.param)), "_",
                          RuntimeName(std::get<1>(p.param)));
    });

class ConformanceResumeTest : public ::testing::TestWithParam<v1::AlgorithmConfig::Name> {};

// A crash after round (step) 2's metrics, before its checkpoint: the run
// is resumed from the checkpoint of round 1 by the coordinator with 3
// worker processes, redoes round 2 and ends as the reference.
TEST_P(ConformanceResumeTest, AResumedRunEndsAsTheReference) {
  const v1::AlgorithmConfig::Name name = GetParam();
  const std::string n = AlgorithmConfigName(name);
  const v1::ExperimentConfig config =
      Config(name, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n");
  const std::string reference = RunIn(config, Runtime::kEmbedded1, n + "_checkpointed");
  EXPECT_EQ(Hashes(reference), Hashes(Reference(name, "resume"))) << "checkpoints changed the run";
  const std::string dir = ::testing::TempDir() + "/conformance_" + n + "_resumed";
  fs::remove_all(dir);
  fs::copy(reference, dir, fs::copy_options::recursive);
  fs::remove(fs::path(dir) / "model.bin");
  for (const auto& e : fs::directory_iterator(CheckpointDir(dir))) {
    const std::string file = e.path().filename().string();
    if (std::stoll(file.substr(6, 8)) > 2) fs::remove(e.path());
  }
  absl::StatusOr<CoordinatorRun> run = PrepareOrResumeRun(config, dir, "distributed");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->resumed);
  EXPECT_EQ(run->engine->steps_done(), 2);
  absl::StatusOr<RunSummary> summary = Execute(*run, Runtime::kLaunch3);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(Hashes(dir), Hashes(reference));
  EXPECT_EQ(ReadFile(dir + "/model.bin"), ReadFile(reference + "/model.bin"));
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, ConformanceResumeTest,
                         ::testing::ValuesIn(Registered()),
                         [](const auto& p) { return AlgorithmConfigName(p.param); });

}  // namespace
}  // namespace conformance_test
}  // namespace fedsim
