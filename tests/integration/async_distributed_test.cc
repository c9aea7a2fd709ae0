// Asynchronous FL in the distributed runtime and async checkpoints
// (docs/async.md): on the virtual clock, coordinator + worker processes over
// gRPC (`fedsim launch`) end bit-identical to the embedded runtime (model
// hashes, model.bin, every async_step record); async.max_staleness drops
// exactly the updates staler than the bound, in both runtimes; a run
// resumed from the checkpoint of any step ends bit-identical to the
// uninterrupted one.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace async_distributed_test {
namespace {

namespace fs = std::filesystem;

using test::Events;
using test::Hashes;
using test::ReadFile;

// The events of kind `kind`, serialised (they hold no wall time).
std::vector<std::string> EventDumps(const std::string& dir, const std::string& kind) {
  std::vector<std::string> out;
  for (const nlohmann::json& e : Events(dir, kind)) out.push_back(e.dump());
  return out;
}

nlohmann::json RunEnd(const std::string& dir) {
  const std::vector<nlohmann::json> ends = Events(dir, "run_end");
  return ends.empty() ? nlohmann::json() : ends.back();
}

v1::ExperimentConfig Config(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : v1::ExperimentConfig();
}

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/asyncdist_" + name;
  fs::remove_all(dir);
  return dir;
}

// Runs `config` (fresh, or resuming `dir` if `resume`) embedded or with 3
// worker processes.
void RunIt(const v1::ExperimentConfig& config, const std::string& dir,
                  bool distributed, bool resume = false,
                  std::int64_t expected_step = 0) {
  const std::string runtime = distributed ? "distributed" : "embedded";
  absl::StatusOr<CoordinatorRun> run =
      resume ? PrepareOrResumeRun(config, dir, runtime)
             : PrepareRun(config, dir, runtime);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->engine->kind(), EngineKind::kVirtualClock);
  if (resume) {
    EXPECT_TRUE(run->resumed);
    EXPECT_EQ(run->engine->steps_done(), expected_step);
  }
  absl::StatusOr<RunSummary> summary;
  if (distributed) {
    LaunchOptions options;
    options.workers = 3;
    options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
    summary = LaunchRun(*run, options);
  } else {
    summary = RunEmbedded(*run);
  }
  ASSERT_TRUE(summary.ok()) << summary.status();
}

// Heterogeneous least squares, 4 clients of F-80 speeds (tau = 1, 0.73,
// 0.47, 0.2): the slow clients' updates arrive stale.
std::string Yaml(const std::string& algorithm,
                          const std::string& async = "async: {fx_percent: 80}") {
  return absl::StrCat(R"(
seed: 21
rounds: 12
data:
  source: synthetic_least_squares
  least_squares: {examples_per_client: 24, dim: 4, noise_std: 0.3, heterogeneity: 1.0}
clients: {count: 4, partition: natural}
model: {objective: least_squares}
participation: {client_fraction: 1}
local: {max_steps: 3, batch_size: 6, lr: 0.05}
)", algorithm, "\n", async, "\n");
}

void ExpectIdentical(const std::string& a, const std::string& b) {
  const std::vector<std::string> ha = Hashes(a);
  ASSERT_FALSE(ha.empty()) << a;
  EXPECT_EQ(ha, Hashes(b)) << a << " vs " << b;
  EXPECT_NE(ha.front(), ha.back());
  EXPECT_EQ(ReadFile(a + "/model.bin"), ReadFile(b + "/model.bin"));
  const std::vector<std::string> steps = EventDumps(a, "async_step");
  EXPECT_EQ(steps.size(), ha.size());
  EXPECT_EQ(steps, EventDumps(b, "async_step"));
  EXPECT_EQ(EventDumps(a, "stale_update"), EventDumps(b, "stale_update"));
}

TEST(AsyncDistributedTest, FedFixVirtualClockOverWorkersEqualsEmbedded) {
  const v1::ExperimentConfig config =
      Config(Yaml("algorithm: {name: fedfix, window: 0.3}"));
  const std::string embedded = Dir("fedfix_e");
  const std::string dist = Dir("fedfix_d");
  RunIt(config, embedded, false);
  RunIt(config, dist, true);
  ExpectIdentical(embedded, dist);
  const nlohmann::json end = RunEnd(dist);
  EXPECT_EQ(end["tasks_issued"].get<std::int64_t>(),
            end["tasks_aggregated"].get<std::int64_t>() +
                end["tasks_dropped"].get<std::int64_t>() +
                end["tasks_in_flight"].get<std::int64_t>());
  EXPECT_EQ(end["tasks_dropped"], 0);
}

TEST(AsyncDistributedTest, FedBuffVirtualClockOverWorkersEqualsEmbedded) {
  const v1::ExperimentConfig config = Config(Yaml(
      "algorithm: {name: fedbuff, buffer_size: 2, async_weights: weight}"));
  const std::string embedded = Dir("fedbuff_e");
  const std::string dist = Dir("fedbuff_d");
  RunIt(config, embedded, false);
  RunIt(config, dist, true);
  ExpectIdentical(embedded, dist);
}

// max_staleness = 2: the stale_update records are exactly the updates the
// unbounded run aggregated with staleness > 2 (the schedule does not depend
// on the model), none of them is aggregated, they count as dropped, and
// the distributed run drops the same ones.
TEST(AsyncDistributedTest, MaxStalenessDropsExactlyTheStalerUpdates) {
  const std::string algorithm = "algorithm: {name: async_fedavg}";
  const v1::ExperimentConfig unbounded =
      Config(Yaml(algorithm));
  const v1::ExperimentConfig bounded = Config(
      Yaml(algorithm, "async: {fx_percent: 80, max_staleness: 2}"));
  ASSERT_EQ(bounded.async().max_staleness(), 2);
  const std::string free_dir = Dir("stale_free");
  const std::string bounded_dir = Dir("stale_bounded");
  const std::string bounded_dist = Dir("stale_bounded_d");
  RunIt(unbounded, free_dir, false);
  RunIt(bounded, bounded_dir, false);
  RunIt(bounded, bounded_dist, true);

  // (step, client) of every update staler than 2, and of every one kept.
  std::set<std::pair<int, int>> stale, fresh;
  for (const std::string& s : EventDumps(free_dir, "async_step")) {
    const nlohmann::json e = nlohmann::json::parse(s);
    for (const nlohmann::json& c : e["contributors"]) {
      (c["staleness"].get<int>() > 2 ? stale : fresh)
          .insert({e["step"].get<int>(), c["client"].get<int>()});
    }
  }
  ASSERT_FALSE(stale.empty()) << "the config must produce stale updates";
  ASSERT_FALSE(fresh.empty());
  std::set<std::pair<int, int>> dropped, kept;
  for (const std::string& s : EventDumps(bounded_dir, "stale_update")) {
    const nlohmann::json e = nlohmann::json::parse(s);
    EXPECT_GT(e["staleness"].get<int>(), 2);
    EXPECT_EQ(e["max_staleness"], 2);
    dropped.insert({e["step"].get<int>(), e["client"].get<int>()});
  }
  for (const std::string& s : EventDumps(bounded_dir, "async_step")) {
    const nlohmann::json e = nlohmann::json::parse(s);
    for (const nlohmann::json& c : e["contributors"]) {
      EXPECT_LE(c["staleness"].get<int>(), 2);
      kept.insert({e["step"].get<int>(), c["client"].get<int>()});
    }
  }
  EXPECT_EQ(dropped, stale);
  EXPECT_EQ(kept, fresh);
  const nlohmann::json end = RunEnd(bounded_dir);
  EXPECT_EQ(end["tasks_stale_dropped"].get<std::size_t>(), stale.size());
  EXPECT_EQ(end["tasks_dropped"].get<std::size_t>(), stale.size());
  EXPECT_EQ(end["tasks_issued"].get<std::int64_t>(),
            end["tasks_aggregated"].get<std::int64_t>() +
                end["tasks_dropped"].get<std::int64_t>() +
                end["tasks_in_flight"].get<std::int64_t>());
  // Dropping them changed the model; the distributed run drops the same.
  EXPECT_NE(Hashes(free_dir).back(), Hashes(bounded_dir).back());
  ExpectIdentical(bounded_dir, bounded_dist);
}

// Checkpoint files of a run directory, by step reached.
std::vector<std::pair<std::int64_t, fs::path>> Checkpoints(
    const std::string& dir) {
  std::vector<std::pair<std::int64_t, fs::path>> out;
  for (const auto& e : fs::directory_iterator(CheckpointDir(dir))) {
    out.emplace_back(std::stoll(e.path().filename().string().substr(6, 8)), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A crash after step `crash`'s metrics row and before its checkpoint: the
// finished reference run's directory without model.bin and later
// checkpoints; the resumed run redoes step `crash`.
void ExpectResumeIdentical(const std::string& yaml, const std::string& name,
                                bool distributed,
                                const std::vector<std::int64_t>& crashes) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(yaml, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  const std::string reference = Dir(name + "_ref");
  RunIt(config, reference, distributed);
  const std::vector<std::string> hashes = Hashes(reference);
  ASSERT_EQ(static_cast<std::int64_t>(hashes.size()), config.rounds());
  if (config.async().max_staleness() > 0) {
    EXPECT_GT(RunEnd(reference)["tasks_stale_dropped"].get<int>(), 0);
  }
  for (std::int64_t crash : crashes) {
    SCOPED_TRACE(absl::StrCat(name, ": crash after step ", crash));
    const std::string dir = Dir(absl::StrCat(name, "_", crash));
    fs::copy(reference, dir, fs::copy_options::recursive);
    fs::remove(fs::path(dir) / "model.bin");
    for (const auto& [step, path] : Checkpoints(dir)) {
      if (step > crash) fs::remove(path);
    }
    RunIt(config, dir, distributed, /*resume=*/true, crash);
    EXPECT_EQ(Hashes(dir), hashes);
    EXPECT_EQ(ReadFile(dir + "/model.bin"),
              ReadFile(reference + "/model.bin"));
    // The steps after the crash are logged again, as in the reference.
    const std::vector<std::string> ref_steps = EventDumps(reference, "async_step");
    const std::vector<std::string> steps = EventDumps(dir, "async_step");
    ASSERT_EQ(steps.size(), ref_steps.size() + (ref_steps.size() - crash));
    EXPECT_EQ(std::vector<std::string>(steps.end() - static_cast<long>(ref_steps.size()) + crash,
                                       steps.end()),
              std::vector<std::string>(ref_steps.begin() + crash, ref_steps.end()));
    const nlohmann::json end = RunEnd(dir), ref_end = RunEnd(reference);
    for (const char* key : {"tasks_issued", "tasks_aggregated", "tasks_dropped",
                            "tasks_stale_dropped", "tasks_in_flight", "model_hash"}) {
      EXPECT_EQ(end[key], ref_end[key]) << key;
    }
  }
}

TEST(AsyncDistributedTest, FedBuffResumesBitIdenticallyEmbedded) {
  // Stale tasks in flight when the checkpoint is taken start from older
  // versions, which the checkpoint must hold; with max_staleness the
  // stale-drop count is restored too.
  ExpectResumeIdentical(
      Yaml("algorithm: {name: fedbuff, buffer_size: 2, async_weights: weight}",
                    "async: {fx_percent: 80, max_staleness: 1}"),
      "resume_fedbuff", /*distributed=*/false, {2, 7});
}

TEST(AsyncDistributedTest, FedFixResumesBitIdenticallyDistributed) {
  ExpectResumeIdentical(
      Yaml("algorithm: {name: fedfix, window: 0.3}"), "resume_fedfix",
      /*distributed=*/true, {3, 9});
}

// checkpoint.min_interval_s: a due checkpoint within the interval of the
// previous one is skipped; the first step's and the last step's are written.
TEST(AsyncDistributedTest, MinIntervalSkipsCheckpointsButNotTheLast) {
  const std::string dir = Dir("min_interval");
  RunIt(Config(absl::StrCat(Yaml("algorithm: {name: async_fedavg}"),
                            "checkpoint: {every: 1, keep: 1000, min_interval_s: 3600}\n")),
        dir, /*distributed=*/false);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/checkpoints")) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"round-00000001.ckpt", "round-00000012.ckpt"}));
}

// A run bounded by async.horizon has rounds = INT_MAX: progress reports
// the steps estimated from the share of the horizon covered, in both
// runtimes, and the exact count at the end.
TEST(AsyncDistributedTest, HorizonRunsReportAnEstimatedTotal) {
  for (const bool distributed : {false, true}) {
    SCOPED_TRACE(distributed ? "distributed" : "embedded");
    v1::ExperimentConfig config =
        Config(Yaml("algorithm: {name: fedfix, window: 0.5}", "async: {fx_percent: 80, horizon: 6}"));
    // Yaml() sets rounds: 12; a horizon alone leaves rounds unbounded
    // (ConfigTest.AsyncDefaultsAndRules).
    config.set_rounds(2147483647);
    const std::string dir = Dir(distributed ? "horizon_dist" : "horizon_emb");
    absl::StatusOr<CoordinatorRun> run =
        PrepareRun(config, dir, distributed ? "distributed" : "embedded");
    ASSERT_TRUE(run.ok()) << run.status();
    std::vector<std::pair<std::int64_t, std::int64_t>> reports;  // (round, total)
    ProgressFn progress = [&](const MetricsRow& row, std::int64_t total) {
      reports.emplace_back(row.round, total);
    };
    absl::StatusOr<RunSummary> summary;
    if (distributed) {
      LaunchOptions options;
      options.workers = 2;
      options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
      options.progress = progress;
      summary = LaunchRun(*run, options);
    } else {
      summary = RunEmbedded(*run, progress);
    }
    ASSERT_TRUE(summary.ok()) << summary.status();
    // FedFix with window 0.5 up to time 6: steps at 0.5, 1, ..., 6.
    ASSERT_EQ(summary->rounds, 12);
    ASSERT_EQ(reports.size(), 12u);
    for (const auto& [round, total] : reports) {
      EXPECT_GE(total, round + 1);
      EXPECT_LE(total, 12) << "round " << round;
    }
    EXPECT_EQ(reports.back(), std::make_pair(std::int64_t{11}, std::int64_t{12}));
  }
}

}  // namespace
}  // namespace async_distributed_test
}  // namespace fedsim
