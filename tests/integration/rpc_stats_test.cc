// The rpc_stats record of a launched run (docs/run-directory.md): its call
// counts per method and status code agree with what the run itself logged.
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/distributed.h"
#include "server/coordinator/run_builder.h"

namespace fedsim::rpc_stats_test {
namespace {

std::vector<nlohmann::json> ReadEventsOfRpcStatsRun(const std::string& dir) {
  std::vector<nlohmann::json> events;
  std::ifstream in(dir + "/events.jsonl");
  EXPECT_TRUE(in.good()) << dir;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) events.push_back(nlohmann::json::parse(line));
  }
  return events;
}

// Sets an environment variable for the lifetime of the object (the worker
// processes inherit it).
class ScopedEnvForRpcStats {
 public:
  ScopedEnvForRpcStats(const char* name, const char* value) : name_(name) {
    ::setenv(name, value, 1);
  }
  ~ScopedEnvForRpcStats() { ::unsetenv(name_); }

 private:
  const char* const name_;
};

constexpr char kRpcStatsConfig[] = R"(
seed: 7
rounds: 5
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 12, partition: natural}
model: {objective: softmax}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg}
local: {epochs: 1, batch_size: 10, lr: 0.05}
)";

// Every worker sends each result twice (FEDSIM_FAULT_DUPLICATE_PUSH): the
// second push is answered OK (duplicate) while its round is open and
// FAILED_PRECONDITION (stale) once it has closed, which happens at least for
// the push that completes a round. (The model is far below the chunk size:
// no FetchChunk or UploadChunk, so every duplicate reaches PushResult.)
TEST(RpcStatsLaunchTest, CallCountsMatchTheRun) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(kRpcStatsConfig);
  ASSERT_TRUE(config.ok()) << config.status();
  const std::string dir = ::testing::TempDir() + "/rpc_stats_launch";
  absl::StatusOr<CoordinatorRun> run = PrepareRun(*config, dir, "distributed");
  ASSERT_TRUE(run.ok()) << run.status();
  constexpr int kWorkers = 3;
  {
    ScopedEnvForRpcStats duplicate("FEDSIM_FAULT_DUPLICATE_PUSH", "1");
    LaunchOptions options;
    options.workers = kWorkers;
    options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
    absl::StatusOr<RunSummary> summary = LaunchRun(*run, options);
    ASSERT_TRUE(summary.ok()) << summary.status();
  }
  const std::vector<nlohmann::json> events = ReadEventsOfRpcStatsRun(dir);
  const nlohmann::json* run_end = nullptr;
  const nlohmann::json* stats = nullptr;
  std::map<std::string, int> rejected_by_code;  // result_rejected events
  for (const nlohmann::json& e : events) {
    const std::string kind = e.value("event", "");
    if (kind == "run_end") run_end = &e;
    if (kind == "rpc_stats") {
      EXPECT_EQ(stats, nullptr) << "two rpc_stats records";
      EXPECT_NE(run_end, nullptr) << "rpc_stats before run_end";
      stats = &e;
    }
    if (kind == "result_rejected") ++rejected_by_code[e.value("code", "")];
  }
  ASSERT_NE(run_end, nullptr);
  ASSERT_NE(stats, nullptr);
  const nlohmann::json& m = (*stats)["methods"];
  auto code = [&](const char* method, const char* name) -> std::int64_t {
    return m[method]["codes"].value(name, std::int64_t{0});
  };

  // Every worker joined once and left once.
  EXPECT_EQ(m["Join"]["calls"], kWorkers);
  EXPECT_EQ(code("Join", "OK"), kWorkers);
  EXPECT_EQ(m["Leave"]["calls"], kWorkers);
  EXPECT_EQ(code("Leave", "OK"), kWorkers);

  // PushResult: OK = aggregated + answered as duplicates; every non-OK code
  // matches the result_rejected events with that code; two pushes per task.
  const std::int64_t issued = (*run_end)["tasks_issued"];
  const std::int64_t aggregated = (*run_end)["tasks_aggregated"];
  const std::int64_t duplicates = (*run_end)["pushes_duplicate"];
  EXPECT_EQ(issued, 5 * 6);
  EXPECT_EQ(aggregated, issued);
  EXPECT_EQ(code("PushResult", "OK"), aggregated + duplicates);
  std::int64_t not_ok = 0;
  for (const auto& [name, n] : m["PushResult"]["codes"].items()) {
    if (name == "OK") continue;
    not_ok += n.get<std::int64_t>();
    EXPECT_EQ(n.get<int>(), rejected_by_code[name]) << name;
  }
  for (const auto& [name, n] : rejected_by_code) {
    EXPECT_EQ(code("PushResult", name.c_str()), n) << name;
  }
  EXPECT_GE(code("PushResult", "FAILED_PRECONDITION"), 1);
  EXPECT_EQ(m["PushResult"]["calls"].get<std::int64_t>(), 2 * issued);
  EXPECT_EQ(duplicates + not_ok, issued);

  // Every task was handed out by an OK PullTask, with the model: at least
  // 600 float64 values each way (d = 60 x 10 weights).
  EXPECT_GE(code("PullTask", "OK"), issued);
  EXPECT_EQ(m["FetchChunk"]["calls"], 0);
  EXPECT_EQ(m["UploadChunk"]["calls"], 0);
  EXPECT_GE(m["PushResult"]["request_bytes"].get<std::int64_t>(), 2 * issued * 600 * 8);
  EXPECT_GE(m["PullTask"]["response_bytes"].get<std::int64_t>(), issued * 600 * 8);
  for (const char* method : {"Join", "PullTask", "PushResult", "Leave"}) {
    const nlohmann::json& l = m[method]["latency_ms"];
    EXPECT_GT(l["p50"].get<double>(), 0.0) << method;
    EXPECT_LE(l["p50"].get<double>(), l["p95"].get<double>()) << method;
    EXPECT_LE(l["p95"].get<double>(), l["p99"].get<double>()) << method;
    EXPECT_LE(l["p99"].get<double>(), l["max"].get<double>()) << method;
    std::int64_t in_buckets = 0;
    for (const nlohmann::json& b : m[method]["latency_buckets"]) {
      in_buckets += b[1].get<std::int64_t>();
    }
    EXPECT_EQ(in_buckets, m[method]["calls"].get<std::int64_t>()) << method;
  }
}

}  // namespace
}  // namespace fedsim::rpc_stats_test
