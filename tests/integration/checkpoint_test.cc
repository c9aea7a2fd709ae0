// Checkpoints and resume (RELIABILITY 8-9): a run resumed from the
// checkpoint of any round ends bit-identical to the uninterrupted run, for
// algorithms with server state (FedAU, Markov participation), client state
// (SCAFFLSA with a Markov oracle, DiceSGD) and a privacy ledger, in both
// runtimes. Real
// SIGKILLs of `fedsim run` and `fedsim-server` are in
// tests/e2e/resume_test.sh.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/config/config.h"
#include "gtest/gtest.h"
#include "runtime/distributed.h"
#include "common/base/build_info.h"
#include "runtime/embedded.h"
#include "server/coordinator/checkpoint.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace checkpoint_test {
namespace {

using test::ReadFile;
using test::Column;

namespace fs = std::filesystem;

v1::ExperimentConfig Config(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : v1::ExperimentConfig();
}

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/ckpt_" + name;
  fs::remove_all(dir);
  return dir;
}

void RunFresh(const v1::ExperimentConfig& config, const std::string& dir) {
  absl::StatusOr<CoordinatorRun> run = PrepareRun(config, dir, "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  absl::StatusOr<RunSummary> summary = RunEmbedded(*run);
  ASSERT_TRUE(summary.ok()) << summary.status();
}

// Resumes `dir` with `config`; returns false (with a failure) on error.
void Resume(const v1::ExperimentConfig& config, const std::string& dir,
            std::int64_t expected_round) {
  absl::StatusOr<CoordinatorRun> run = PrepareOrResumeRun(config, dir, "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_TRUE(run->resumed);
  EXPECT_EQ(run->engine->steps_done(), expected_round);
  absl::StatusOr<RunSummary> summary = RunEmbedded(*run);
  ASSERT_TRUE(summary.ok()) << summary.status();
}

// Checkpoint files of a run directory, by next round.
std::vector<std::pair<std::int64_t, std::string>> Checkpoints(const std::string& dir) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  for (const auto& e : fs::directory_iterator(CheckpointDir(dir))) {
    const std::string name = e.path().filename().string();
    out.emplace_back(std::stoll(name.substr(6, 8)), e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Simulates a crash after round `crash_after`'s metrics row was written
// but before its checkpoint: the run directory of the finished reference
// run, with the checkpoints of later rounds removed.
std::string CrashedCopy(const std::string& reference, std::int64_t crash_after,
                        const std::string& name) {
  const std::string dir = Dir(name);
  fs::copy(reference, dir, fs::copy_options::recursive);
  fs::remove(fs::path(dir) / "model.bin");
  for (const auto& [round, path] : Checkpoints(dir)) {
    if (round > crash_after) {
      fs::remove(fs::path(CheckpointDir(dir)) / fs::path(path).filename());
    }
  }
  return dir;
}

void ExpectResumedEqualsReference(const std::string& yaml, const std::string& name,
                                  const std::vector<std::int64_t>& crash_rounds) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(yaml, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  const std::string reference = Dir(name + "_ref");
  RunFresh(config, reference);
  const std::vector<std::string> hashes = Column(reference, "model_hash");
  ASSERT_EQ(static_cast<std::int64_t>(hashes.size()), config.rounds());
  ASSERT_NE(hashes.front(), hashes.back());
  for (std::int64_t crash : crash_rounds) {
    SCOPED_TRACE(absl::StrCat(name, ": crash after round ", crash));
    const std::string dir =
        CrashedCopy(reference, crash, absl::StrCat(name, "_", crash));
    // The crash lost round `crash`'s checkpoint: resume redoes that round.
    Resume(config, dir, crash);
    EXPECT_EQ(Column(dir, "model_hash"), hashes);
    EXPECT_EQ(Column(dir, "epsilon_max"), Column(reference, "epsilon_max"));
    EXPECT_EQ(Column(dir, "test_loss"), Column(reference, "test_loss"));
    EXPECT_EQ(ReadFile(dir + "/model.bin"), ReadFile(reference + "/model.bin"));
    const std::string events = ReadFile(dir + "/events.jsonl");
    EXPECT_NE(events.find("\"event\":\"run_resumed\""), std::string::npos);
  }
}

// FedAU's estimator, Markov participation and the privacy ledger carry
// state across rounds on the server.
constexpr char kFedAu[] = R"(
seed: 5
rounds: 8
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 20, dim: 4, heterogeneity: 1}}
clients: {count: 10}
model: {objective: least_squares}
algorithm: {name: fedau}
participation: {model: markov, probabilities: list, p: [0.2, 0.3, 0.5, 0.7, 0.9, 0.2, 0.3, 0.5, 0.7, 0.9], markov_a: 0.3}
local: {epochs: 1, batch_size: 5, lr: 0.05, dp: {mode: clip, clip: 1, noise_multiplier: 1.1}}
)";

TEST(CheckpointTest, FedAuMarkovDpResumesBitIdentically) {
  ExpectResumedEqualsReference(kFedAu, "fedau", {1, 4, 7});
}

// SCAFFLSA's control variates and the Markov oracle's chain state live on
// the clients; the embedded runtime checkpoints them.
constexpr char kScaffLsa[] = R"(
seed: 3
rounds: 10
data: {source: lsa}
clients: {count: 5}
algorithm: {name: scafflsa}
local: {lr: 0.1, max_steps: 5}
lsa: {problem: garnet, oracle: markov, kernel_heterogeneity: 10}
)";

TEST(CheckpointTest, ScaffLsaClientStateResumesBitIdentically) {
  ExpectResumedEqualsReference(kScaffLsa, "scafflsa", {2, 6});
}

// EXTENSION: SCAFFLSA with partial participation; the server's anchors are
// strategy state, xi_c and the pending iterates client state.
constexpr char kScaffLsaPartial[] = R"(
seed: 3
rounds: 10
data: {source: lsa}
clients: {count: 5}
participation: {client_fraction: 0.4}
algorithm: {name: scafflsa}
local: {lr: 0.1, max_steps: 5}
lsa: {problem: garnet, oracle: iid, kernel_heterogeneity: 10}
)";

TEST(CheckpointTest, ScaffLsaPartialParticipationResumesBitIdentically) {
  ExpectResumedEqualsReference(kScaffLsaPartial, "scafflsa_pp", {2, 6});
}

// DiceSGD's error buffers live on the clients.
constexpr char kDice[] = R"(
seed: 11
rounds: 6
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 16, dim: 3}}
clients: {count: 6}
model: {objective: least_squares}
participation: {client_fraction: 0.5}
local: {epochs: 1, batch_size: 4, lr: 0.1, dp: {mode: dicesgd, clip: 0.1, noise_multiplier: 0.5}}
)";

TEST(CheckpointTest, DiceSgdErrorBufferResumesBitIdentically) {
  ExpectResumedEqualsReference(kDice, "dice", {3});
}

// SCAFFOLD: the server's c in the strategy state, every c_i with its
// client; FedAdam: the server optimiser's moments.
constexpr char kScaffold[] = R"(
seed: 2
rounds: 8
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 12, dim: 3, heterogeneity: 1}}
clients: {count: 8}
model: {objective: least_squares}
participation: {client_fraction: 0.5}
algorithm: {name: scaffold, scaffold_option: ii}
local: {epochs: 2, batch_size: 4, lr: 0.05}
)";

TEST(CheckpointTest, ScaffoldResumesBitIdentically) {
  ExpectResumedEqualsReference(kScaffold, "scaffold", {3, 6});
}

constexpr char kFedAdam[] = R"(
seed: 4
rounds: 8
data: {source: synthetic_least_squares, least_squares: {examples_per_client: 12, dim: 3, heterogeneity: 1}}
clients: {count: 8}
model: {objective: least_squares}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg, server_lr: 0.1, server_optimizer: {kind: adam}}
local: {epochs: 1, batch_size: 4, lr: 0.05}
)";

TEST(CheckpointTest, FedAdamMomentsResumeBitIdentically) {
  ExpectResumedEqualsReference(kFedAdam, "fedadam", {2, 5});
}

TEST(CheckpointTest, KeepsTheFirstAndTheNewest) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(kDice, "checkpoint: {every: 2, keep: 2, min_interval_s: 0}\n"));
  const std::string dir = Dir("keep");
  RunFresh(config, dir);
  std::vector<std::int64_t> rounds;
  for (const auto& [round, path] : Checkpoints(dir)) rounds.push_back(round);
  // Written after rounds 2, 4, 6 (next round 2, 4, 6); the first stays.
  EXPECT_EQ(rounds, (std::vector<std::int64_t>{2, 4, 6}));
  v1::ExperimentConfig every3 =
      Config(absl::StrCat(kDice, "checkpoint: {every: 3, keep: 1, min_interval_s: 0}\n"));
  every3.set_rounds(7);
  const std::string dir3 = Dir("keep3");
  RunFresh(every3, dir3);
  rounds.clear();
  for (const auto& [round, path] : Checkpoints(dir3)) rounds.push_back(round);
  // After rounds 3 and 6, and after the last: first (3) and newest (7).
  EXPECT_EQ(rounds, (std::vector<std::int64_t>{3, 7}));
}

TEST(CheckpointTest, OffWritesNone) {
  const std::string dir = Dir("off");
  RunFresh(Config(absl::StrCat(kDice, "checkpoint: {every: 0}\n")), dir);
  EXPECT_FALSE(fs::exists(CheckpointDir(dir)));
}

TEST(CheckpointTest, CorruptedNewestFallsBackToTheOneBefore) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(kFedAu, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  const std::string reference = Dir("corrupt_ref");
  RunFresh(config, reference);
  const std::string dir = CrashedCopy(reference, 5, "corrupt");
  // Flip one byte in the middle of the newest checkpoint (next round 5).
  const auto files = Checkpoints(dir);
  ASSERT_EQ(files.back().first, 5);
  {
    std::fstream f(files.back().second, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const std::streamoff size = f.tellg();
    f.seekg(size / 2);
    char c;
    f.read(&c, 1);
    f.seekp(size / 2);
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  absl::StatusOr<CheckpointData> bad = ReadCheckpoint(files.back().second);
  EXPECT_FALSE(bad.ok());
  Resume(config, dir, 4);
  EXPECT_EQ(Column(dir, "model_hash"), Column(reference, "model_hash"));
  EXPECT_EQ(ReadFile(dir + "/model.bin"), ReadFile(reference + "/model.bin"));
  EXPECT_NE(ReadFile(dir + "/events.jsonl").find("\"event\":\"checkpoint_skipped\""),
            std::string::npos);
}

TEST(CheckpointTest, ResumeRefusesAnotherConfigButTakesOtherThreads) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(kFedAu, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  const std::string reference = Dir("mismatch_ref");
  RunFresh(config, reference);
  const std::string dir = CrashedCopy(reference, 3, "mismatch");
  v1::ExperimentConfig other = config;
  other.mutable_local()->set_lr(0.06);
  absl::StatusOr<CoordinatorRun> run = PrepareOrResumeRun(other, dir, "embedded");
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(run.status().message().find("lr"), std::string::npos) << run.status();
  // Threads, deadlines and checkpoint settings do not change results.
  v1::ExperimentConfig threads = config;
  threads.mutable_runtime()->set_threads(2);
  threads.mutable_checkpoint()->set_keep(7);
  Resume(threads, dir, 3);
  EXPECT_EQ(Column(dir, "model_hash"), Column(reference, "model_hash"));
}

// Issue 20: builds for different vector ISA levels differ in their last
// bits, so a checkpoint records its build's level and --resume refuses
// another; run_start records it too.
TEST(CheckpointTest, ResumeRefusesACheckpointOfAnotherIsaLevel) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(kDice, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  const std::string dir = Dir("isa");
  RunFresh(config, dir);
  EXPECT_NE(ReadFile(dir + "/events.jsonl")
                .find(absl::StrCat("\"build\":{\"isa\":\"", BuildIsa(), "\"")),
            std::string::npos);
  const auto files = Checkpoints(dir);
  ASSERT_FALSE(files.empty());
  absl::StatusOr<CheckpointData> data = ReadCheckpoint(files.back().second);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->build_isa, BuildIsa());
  data->build_isa = "x86-64-v9";
  ASSERT_TRUE(WriteCheckpoint(dir, *data, 1000).ok());
  absl::StatusOr<CoordinatorRun> run = PrepareOrResumeRun(config, dir, "embedded");
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StartsWith(
      run.status().message(),
      absl::StrCat("--resume: checkpoint '", files.back().second,
                   "' comes from a build for x86-64-v9 and this one is for ", BuildIsa(), ";")))
      << run.status();
}

// Runs `config` to the end in `name`_ref, then makes `name` a copy crashed
// after round 3 whose newest checkpoint has no model.precision and no
// eval.train_rows, as a fedsim from before the keys wrote it (after
// checking it read as float64). Returns {the reference's directory, the crashed copy's}.
std::pair<std::string, std::string> CrashedCopyWithoutPrecision(
    const v1::ExperimentConfig& config, const std::string& name) {
  const std::string reference = Dir(name + "_ref");
  RunFresh(config, reference);
  const std::string dir = CrashedCopy(reference, 3, name);
  const auto files = Checkpoints(dir);
  EXPECT_FALSE(files.empty());
  if (files.empty()) return {reference, dir};
  absl::StatusOr<CheckpointData> data = ReadCheckpoint(files.back().second);
  EXPECT_TRUE(data.ok()) << data.status();
  if (!data.ok()) return {reference, dir};
  EXPECT_EQ(data->config.model().precision(), v1::ModelConfig::PRECISION_FLOAT64);
  data->config.mutable_model()->clear_precision();
  data->config.mutable_eval()->clear_train_rows();  // nor eval.train_rows
  EXPECT_TRUE(WriteCheckpoint(dir, *data, 1000).ok());
  return {reference, dir};
}

// model.precision: a checkpoint from before the key (none in its config)
// was computed in float64 and reads as such, so it resumes under float64
// (least_squares' default here) and is refused under float32.
TEST(CheckpointTest, ACheckpointWithoutPrecisionResumesAsFloat64) {
  const v1::ExperimentConfig float64 =
      Config(absl::StrCat(kFedAu, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  ASSERT_EQ(float64.model().precision(), v1::ModelConfig::PRECISION_FLOAT64);
  v1::ExperimentConfig float32 = float64;
  float32.mutable_model()->set_precision(v1::ModelConfig::PRECISION_FLOAT32);
  const auto [reference, dir] = CrashedCopyWithoutPrecision(float64, "precision");
  absl::StatusOr<CoordinatorRun> refused = PrepareOrResumeRun(float32, dir, "embedded");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("precision"), std::string::npos) << refused.status();
  // Nor eval.train_rows: such a checkpoint computed train_loss over every
  // row, and resumes with eval.train_rows: 0, not with the sample.
  refused = PrepareOrResumeRun(float64, dir, "embedded");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("train_rows"), std::string::npos)
      << refused.status();
  v1::ExperimentConfig every_row = float64;
  every_row.mutable_eval()->set_train_rows(0);
  Resume(every_row, dir, 3);
  EXPECT_EQ(Column(dir, "model_hash"), Column(reference, "model_hash"));
}

// The same for an LSA run (no objective; precision resolves to float64 so
// that its checkpoints from before the key resume with the config as is).
TEST(CheckpointTest, AnLsaCheckpointWithoutPrecisionResumesWithTheSameConfig) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(kScaffLsa, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  ASSERT_EQ(config.model().precision(), v1::ModelConfig::PRECISION_FLOAT64);
  const auto [reference, dir] = CrashedCopyWithoutPrecision(config, "precision_lsa");
  Resume(config, dir, 3);
  EXPECT_EQ(Column(dir, "model_hash"), Column(reference, "model_hash"));
}

// The coordinator owns the clients' state in a distributed run too, so
// its checkpoints hold it: a distributed run resumed from a mid-run
// checkpoint (3 worker processes) ends bit-identical to the uninterrupted
// distributed run and to the embedded one.
void RunLaunchedForCheckpointTest(const v1::ExperimentConfig& config,
                                  const std::string& dir, bool resume,
                                  std::int64_t expected_round) {
  absl::StatusOr<CoordinatorRun> run =
      resume ? PrepareOrResumeRun(config, dir, "distributed")
             : PrepareRun(config, dir, "distributed");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->resumed, resume);
  EXPECT_EQ(run->engine->steps_done(), expected_round);
  LaunchOptions options;
  options.workers = 3;
  options.client_binary = FEDSIM_BINARY_DIR "/bin/fedsim-client";
  absl::StatusOr<RunSummary> summary = LaunchRun(*run, options);
  ASSERT_TRUE(summary.ok()) << summary.status();
}

void ExpectDistributedResumeEqualsReference(const std::string& yaml,
                                            const std::string& name,
                                            std::int64_t crash,
                                            bool client_state = true) {
  const v1::ExperimentConfig config =
      Config(absl::StrCat(yaml, "checkpoint: {every: 1, keep: 1000, min_interval_s: 0}\n"));
  const std::string embedded = Dir(name + "_emb");
  RunFresh(config, embedded);
  const std::string reference = Dir(name + "_dref");
  RunLaunchedForCheckpointTest(config, reference, /*resume=*/false, 0);
  const std::vector<std::string> hashes = Column(reference, "model_hash");
  ASSERT_EQ(static_cast<std::int64_t>(hashes.size()), config.rounds());
  ASSERT_NE(hashes.front(), hashes.back());
  EXPECT_EQ(Column(embedded, "model_hash"), hashes);
  // The checkpoint of round `crash` holds every participating client's state.
  absl::StatusOr<CheckpointData> mid = ReadCheckpoint(
      absl::StrCat(CheckpointDir(reference), "/round-",
                   std::string(8 - std::to_string(crash).size(), '0'), crash, ".ckpt"));
  ASSERT_TRUE(mid.ok()) << mid.status();
  EXPECT_EQ(mid->runtime, "distributed");
  if (client_state) {
    ASSERT_FALSE(mid->clients.empty());
  }
  const std::string dir = CrashedCopy(reference, crash, name + "_dres");
  RunLaunchedForCheckpointTest(config, dir, /*resume=*/true, crash);
  EXPECT_EQ(Column(dir, "model_hash"), hashes);
  EXPECT_EQ(Column(dir, "epsilon_max"), Column(reference, "epsilon_max"));
  EXPECT_EQ(ReadFile(dir + "/model.bin"), ReadFile(reference + "/model.bin"));
  EXPECT_EQ(ReadFile(dir + "/model.bin"), ReadFile(embedded + "/model.bin"));
  EXPECT_NE(ReadFile(dir + "/events.jsonl").find("\"event\":\"run_resumed\""),
            std::string::npos);
}

// A CNN with Dropout and momentum (docs/networks.md): the masks come from
// the tasks' streams, so a resumed run draws the same ones.
constexpr char kCnn[] = R"(
seed: 6
rounds: 5
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 12, partition: natural}
model:
  input_shape: [1, 6, 10]
  layers:
    - {type: conv2d, out: 3, kernel: 3, padding: 1}
    - {type: relu}
    - {type: maxpool2d, kernel: 2}
    - {type: dropout, p: 0.2}
    - {type: flatten}
    - {type: linear, out: 10}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg}
local: {epochs: 1, batch_size: 10, lr: 0.05, momentum: 0.5}
)";

TEST(CheckpointTest, CnnResumesBitIdentically) {
  ExpectResumedEqualsReference(kCnn, "cnn", {1, 3});
}

TEST(CheckpointTest, DistributedCnnResumesBitIdentically) {
  ExpectDistributedResumeEqualsReference(kCnn, "dist_cnn", 2, /*client_state=*/false);
}

TEST(CheckpointTest, DistributedScaffLsaResumesBitIdentically) {
  ExpectDistributedResumeEqualsReference(kScaffLsa, "dist_scafflsa", 4);
}

TEST(CheckpointTest, DistributedDiceSgdResumesBitIdentically) {
  ExpectDistributedResumeEqualsReference(kDice, "dist_dice", 3);
}

TEST(CheckpointTest, ResumeWithoutCheckpointStartsAfresh) {
  const v1::ExperimentConfig config = Config(kDice);
  const std::string dir = Dir("fresh");
  absl::StatusOr<CoordinatorRun> run = PrepareOrResumeRun(config, dir, "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_FALSE(run->resumed);
  EXPECT_EQ(run->engine->steps_done(), 0);
}

TEST(CheckpointTest, ReopenDropsRedoneRowsAndATornLine) {
  const std::string dir = Dir("reopen");
  RunFresh(Config(kDice), dir);
  {
    std::ofstream metrics(dir + "/metrics.csv", std::ios::app);
    metrics << "6,1.5,0.1";  // a torn row of a round that never finished
    std::ofstream events(dir + "/events.jsonl", std::ios::app);
    events << "{\"event\":\"round_e";
  }
  absl::StatusOr<std::unique_ptr<RunLog>> log = RunLog::Reopen(dir, 4);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Event({{"event", "probe"}}).ok());
  const std::vector<std::string> rounds = Column(dir, "round");
  EXPECT_EQ(rounds, (std::vector<std::string>{"0", "1", "2", "3"}));
  const std::string events = ReadFile(dir + "/events.jsonl");
  EXPECT_NE(events.find("{\"event\":\"round_e\n{\"event\":\"probe\"}\n"),
            std::string::npos);
}

}  // namespace
}  // namespace checkpoint_test
}  // namespace fedsim
