// Neural networks in whole runs (docs/networks.md): a CNN with Dropout and
// momentum, an LSTM on token ids, and FedAU's MNIST CNN on Fashion-MNIST
// end on the same model_hash column embedded on 1 and 2 threads and over 3
// worker processes; model.init_file starts a run from given parameters;
// networks that do not fit the data fail with one line naming the key.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/config/config.h"
#include "common/runlog/run_log.h"
#include "gtest/gtest.h"
#include "gmock/gmock.h"
#include "runtime/distributed.h"
#include "runtime/embedded.h"
#include "server/coordinator/run_builder.h"
#include "tests/testing/run_config.h"
#include "tests/testing/run_dir.h"

namespace fedsim {
namespace network_run_test {
namespace {

using test::Column;
using test::Hashes;
using test::ReadFile;
namespace fs = std::filesystem;

enum class Mode { kEmbedded, kLaunch };

v1::ExperimentConfig Config(const std::string& yaml) {
  absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(yaml);
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : v1::ExperimentConfig();
}

std::string RunIt(const std::string& yaml, Mode mode, const std::string& name) {
  return test::RunConfig(yaml, ::testing::TempDir() + "/network_" + name,
                         mode == Mode::kEmbedded ? 0 : 3);
}

void ExpectSameEverywhere(const std::string& yaml, const std::string& name) {
  const std::string one = RunIt(absl::StrCat(yaml, "runtime: {threads: 1}\n"), Mode::kEmbedded,
                                name + "_1");
  const std::string two = RunIt(absl::StrCat(yaml, "runtime: {threads: 2}\n"), Mode::kEmbedded,
                                name + "_2");
  const std::string dist = RunIt(yaml, Mode::kLaunch, name + "_dist");
  const std::vector<std::string> h = Hashes(one);
  ASSERT_FALSE(h.empty());
  EXPECT_NE(h.front(), h.back()) << "the run did not move the model";
  EXPECT_EQ(Hashes(two), h);
  EXPECT_EQ(Hashes(dist), h);
  EXPECT_TRUE(ReadFile(one + "/model.bin") == ReadFile(dist + "/model.bin"))
      << "model.bin differs";
  EXPECT_EQ(Column(dist, "test_loss"), Column(one, "test_loss"));
}

// A CNN on the 60 features of the FedProx data seen as 1 x 6 x 10 images,
// with Dropout (masks from the tasks' streams) and momentum.
constexpr char kCnn[] = R"(
seed: 3
rounds: 5
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 12, partition: natural}
model:
  input_shape: [1, 6, 10]
  layers:
    - {type: conv2d, out: 4, kernel: 3, padding: 1, init: kaiming_normal}
    - {type: relu}
    - {type: maxpool2d, kernel: 2}
    - {type: dropout, p: 0.25}
    - {type: flatten}
    - {type: linear, out: 10}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg}
local: {epochs: 1, batch_size: 10, lr: 0.05, momentum: 0.9}
)";

TEST(NetworkRunTest, CnnWithDropoutIsBitIdenticalAcrossThreadsAndProcesses) {
  ExpectSameEverywhere(kCnn, "cnn");
}

// Every algorithm that trains by local SGD takes a network: the same
// small CNN under FedProx, SCAFFOLD, FedAU, FedAdam, a robust rule, DP-SGD,
// DiceSGD (with per-example gradients and with ghost clipping), and FedFix
// and FedBuff on the virtual clock; each moves the model and gives the same
// bits on 1 and 2 threads (FedFix and ghost-clipped DiceSGD also over 3
// worker processes).
constexpr char kSmallCnn[] = R"(
seed: 8
data: {source: fedprox_synthetic, fedprox_synthetic: {alpha: 0.5, beta: 0.5}}
clients: {count: 12, partition: natural}
model:
  input_shape: [1, 6, 10]
  layers:
    - {type: conv2d, out: 3, kernel: 3, padding: 1}
    - {type: relu}
    - {type: maxpool2d, kernel: 2}
    - {type: flatten}
    - {type: linear, out: 10}
)";

TEST(NetworkRunTest, EveryLocalSgdAlgorithmTrainsANetwork) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"fedprox", "rounds: 4\nalgorithm: {name: fedprox, prox_mu: 0.1}\n"
                  "participation: {client_fraction: 0.5}\nlocal: {epochs: 1, batch_size: 10}\n"},
      {"scaffold", "rounds: 4\nalgorithm: {name: scaffold}\n"
                   "participation: {client_fraction: 0.5}\nlocal: {epochs: 1, batch_size: 10}\n"},
      {"fedau", "rounds: 4\nalgorithm: {name: fedau}\n"
                "participation: {model: bernoulli, p_mean: 0.5}\n"
                "local: {max_steps: 3, batch_size: 10}\n"},
      {"fedadam", "rounds: 4\nalgorithm: {name: fedavg, server_optimizer: {kind: adam}, "
                  "server_lr: 0.01}\nparticipation: {client_fraction: 0.5}\n"
                  "local: {epochs: 1, batch_size: 10}\n"},
      {"median", "rounds: 4\nalgorithm: {name: fedavg}\naggregation: {rule: coordinate_median}\n"
                 "participation: {client_fraction: 0.5}\nlocal: {epochs: 1, batch_size: 10}\n"},
      {"dp", "rounds: 3\nalgorithm: {name: fedavg}\nparticipation: {client_fraction: 0.5}\n"
             "local: {epochs: 1, batch_size: 10, dp: {mode: clip, clip: 1, "
             "noise_multiplier: 1}}\n"},
      {"dice", "rounds: 3\nalgorithm: {name: fedavg}\nparticipation: {client_fraction: 0.5}\n"
               "local: {epochs: 1, batch_size: 10, dp: {mode: dicesgd, clip: 1, "
               "noise_multiplier: 1}}\n"},
      {"dp_ghost", "rounds: 3\nalgorithm: {name: fedavg}\n"
                   "participation: {client_fraction: 0.5}\n"
                   "local: {epochs: 1, batch_size: 10, dp: {mode: clip, clip: 1, "
                   "noise_multiplier: 1, ghost_clipping: true}}\n"},
      {"dice_ghost", "rounds: 3\nalgorithm: {name: fedavg}\n"
                     "participation: {client_fraction: 0.5}\n"
                     "local: {epochs: 1, batch_size: 10, dp: {mode: dicesgd, clip: 1, "
                     "noise_multiplier: 1, ghost_clipping: true}}\n"},
      {"fedfix", "algorithm: {name: fedfix, window: 0.5}\nparticipation: {client_fraction: 1}\n"
                 "local: {max_steps: 3, batch_size: 10, momentum: 0.9, fresh_batches: true}\n"
                 "async: {compute_time: fx, fx_percent: 80, horizon: 3, eval_interval: 1}\n"},
      {"fedbuff", "algorithm: {name: fedbuff, buffer_size: 3}\nparticipation: {client_fraction: 1}\n"
                  "local: {max_steps: 3, batch_size: 10}\n"
                  "async: {compute_time: fx, fx_percent: 80, horizon: 3, eval_interval: 1}\n"},
  };
  for (const auto& [name, extra] : cases) {
    SCOPED_TRACE(name);
    const std::string yaml = absl::StrCat(kSmallCnn, extra);
    const std::string one =
        RunIt(absl::StrCat(yaml, "runtime: {threads: 1}\n"), Mode::kEmbedded, "alg_" + name + "_1");
    const std::string two =
        RunIt(absl::StrCat(yaml, "runtime: {threads: 2}\n"), Mode::kEmbedded, "alg_" + name + "_2");
    const std::vector<std::string> h = Hashes(one);
    ASSERT_GE(h.size(), 2u);
    EXPECT_NE(h.front(), h.back());
    EXPECT_EQ(Hashes(two), h);
    if (name == "fedfix" || name == "dice_ghost") {
      EXPECT_EQ(Hashes(RunIt(yaml, Mode::kLaunch, "alg_" + name + "_dist")), h);
    }
  }
}

// Token sequences: 6 ids in [0, 8), labelled by their last id mod 4 (an
// LSTM learns it), as CSV files.
std::string TokenData() {
  const std::string dir = ::testing::TempDir() + "/network_tokens";
  fs::create_directories(dir);
  RngStream rng(11, RngPurpose::kTest, -1, -1);
  for (const auto& [name, rows] : {std::pair<const char*, int>{"train.csv", 600},
                                   std::pair<const char*, int>{"test.csv", 200}}) {
    std::ofstream out(dir + "/" + name);
    for (int r = 0; r < rows; ++r) {
      int last = 0;
      for (int t = 0; t < 6; ++t) {
        last = static_cast<int>(rng.UniformInt(8));
        out << last << ",";
      }
      out << last % 4 << "\n";
    }
  }
  return dir;
}

TEST(NetworkRunTest, LstmIsBitIdenticalAcrossThreadsAndProcesses) {
  const std::string data = TokenData();
  const std::string yaml = absl::StrCat(R"(
seed: 4
rounds: 6
data: {source: csv, train_file: )", data, R"(/train.csv, test_file: )", data, R"(/test.csv}
clients: {count: 6, partition: iid}
model:
  layers:
    - {type: embedding, vocab: 8, out: 5}
    - {type: lstm, out: 8, num_layers: 2}
    - {type: linear, out: 4}
participation: {client_fraction: 0.5}
algorithm: {name: fedavg}
local: {epochs: 2, batch_size: 16, lr: 0.5}
)");
  ExpectSameEverywhere(yaml, "lstm");
}

// The preset of the FedAU paper's MNIST experiments, on Fashion-MNIST.
TEST(NetworkRunTest, FedAuCnnOnFashionMnistIsBitIdenticalAcrossThreadsAndProcesses) {
#if defined(__SANITIZE_ADDRESS__)
  // 9 s in the release build, 178 s in the sanitizer build (-O1: Eigen's
  // GEMM barely optimised); the small CNN and LSTM tests above run every
  // layer kind under the sanitizers.
  GTEST_SKIP() << "too slow under AddressSanitizer; covered by the small networks";
#endif
  constexpr char kPreset[] = R"(
seed: 2
rounds: 3
data: {source: fashion_mnist}
clients: {count: 100, partition: dirichlet, dirichlet_alpha: 0.5}
model: {architecture: fedau_cnn_mnist}
participation: {client_fraction: 0.05}
algorithm: {name: fedavg}
local: {max_steps: 5, batch_size: 32, lr: 0.05}
eval: {every: 3, train_loss: false}
)";
  ExpectSameEverywhere(kPreset, "fedau_cnn");
  const std::vector<std::string> acc = Column(::testing::TempDir() + "/network_fedau_cnn_1",
                                              "test_accuracy");
  ASSERT_FALSE(acc.empty());
  // 3 rounds of 5 clients x 5 steps already beat chance (0.1) by far.
  EXPECT_GT(std::stod(acc.back()), 0.4);
}

TEST(NetworkRunTest, InitFileStartsTheRunFromItsParameters) {
  const std::string first = RunIt(kCnn, Mode::kEmbedded, "init_source");
  absl::StatusOr<FlatVector> trained = ReadModelFile(first + "/model.bin");
  ASSERT_TRUE(trained.ok()) << trained.status();
  v1::ExperimentConfig with_init = Config(kCnn);
  with_init.mutable_model()->set_init_file(first + "/model.bin");
  absl::StatusOr<CoordinatorRun> run =
      PrepareRun(with_init, ::testing::TempDir() + "/network_init_run", "embedded");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->engine->model(), *trained);

  // A file of another size is refused with one line.
  absl::StatusOr<FlatVector> small = FlatVector::Zero(7).eval();
  ASSERT_TRUE(WriteModelFile(::testing::TempDir() + "/network_small.bin", *small).ok());
  with_init.mutable_model()->set_init_file(::testing::TempDir() + "/network_small.bin");
  run = PrepareRun(with_init, ::testing::TempDir() + "/network_init_bad", "embedded");
  ASSERT_FALSE(run.ok());
  EXPECT_THAT(std::string(run.status().message()),
              testing::HasSubstr("network_small.bin holds 7 parameters; the model has 650"));
}

// A network that does not fit the data, or a config that mixes keys,
// fails before the run with one line naming the key.
TEST(NetworkRunTest, NetworksThatDoNotFitFailWithOneLine) {
  const auto error = [](const std::string& model) {
    absl::StatusOr<v1::ExperimentConfig> config = LoadConfigText(absl::StrCat(
        "rounds: 1\ndata: {source: fedprox_synthetic}\nclients: {count: 4, partition: natural}\n",
        model));
    if (!config.ok()) return std::string(config.status().message());
    absl::StatusOr<CoordinatorRun> run =
        PrepareRun(*config, ::testing::TempDir() + "/network_error", "embedded");
    EXPECT_FALSE(run.ok());
    return run.ok() ? std::string() : std::string(run.status().message());
  };
  EXPECT_EQ(error("model: {architecture: fedau_cnn_mnist}\n"),
            "model.architecture = fedau_cnn_mnist takes rows of 784 features (1x28x28); the "
            "data's rows have 60");
  EXPECT_THAT(error("model: {architecture: fedau_cnn_mnist, dropout: 0.5}\n"),
              testing::HasSubstr("which has no Dropout layers"));
  EXPECT_THAT(error("model: {architecture: vgg16}\n"),
              testing::HasSubstr("model.architecture = vgg16: not a preset; one of "
                                 "fedau_cnn_mnist, "));
  EXPECT_THAT(error("model: {objective: softmax, architecture: fedau_cnn_mnist}\n"),
              testing::HasSubstr("model.objective = softmax with model.architecture"));
  EXPECT_THAT(error("model: {layers: [{type: linear, out: 3}]}\n"),
              testing::HasSubstr("model.layers has 3 outputs; the data has 10 classes"));
  EXPECT_THAT(error("model: {input_shape: [1, 6, 10], layers: [{type: linear, out: 10}]}\n"),
              testing::HasSubstr("model layer 0 (linear(10)) gets input shape 1x6x10: linear "
                                 "needs a flat input (add flatten before it)"));
  EXPECT_THAT(error("model: {input_shape: [2, 6, 10], layers: [{type: flatten}, {type: "
                    "linear, out: 10}]}\n"),
              testing::HasSubstr("model.layers takes rows of 120 features (2x6x10); the "
                                 "data's rows have 60"));
  EXPECT_THAT(error("model: {layers: [{type: embedding, vocab: 5, out: 2}, {type: lstm, out: 3},"
                    " {type: linear, out: 10}]}\n"),
              testing::HasSubstr("the network starts with an embedding, whose inputs are token "
                                 "ids, integers in [0, 5)"));
  EXPECT_THAT(error("model: {layers: [{kernel: 3}]}\n"),
              testing::HasSubstr("model.layers[0].type is missing"));
  EXPECT_EQ(error("model: {input_shape: [1, 6, 10], layers: [{type: maxpool2d, kernel: 2, "
                  "padding: 1}, {type: flatten}, {type: linear, out: 10}]}\n"),
            "model.layers[0].padding = 1 does not apply to maxpool2d");
  EXPECT_THAT(error("model: {input_shape: [1, 6, 10], layers: [{type: conv2d, out: 2, kernel: 3, "
                    "padding: 1, same: true}, {type: flatten}, {type: linear, out: 10}]}\n"),
              testing::HasSubstr("give padding or same, not both"));
  EXPECT_EQ(error("model: {layers: [{type: linear, out: 10, init: kaiming_normal}, {type: relu, "
                  "init: kaiming_normal}]}\n"),
            "model.layers[1].init = kaiming_normal does not apply to relu");
  EXPECT_THAT(error("model: {input_shape: [1, 6, 10], layers: [{type: conv2d, out: 65536, "
                    "kernel: 1, padding: 1000}, {type: flatten}, {type: linear, out: 10}]}\n"),
              testing::HasSubstr("at most 2^30"));
  EXPECT_THAT(error("model: {layers: [{type: linear, out: 10, colour: red}]}\n"),
              testing::HasSubstr("colour"));
  for (const std::string& e : {error("model: {architecture: fedau_cnn_mnist}\n"),
                               error("model: {layers: [{kernel: 3}]}\n")}) {
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace network_run_test
}  // namespace fedsim
